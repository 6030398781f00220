// Running wrk and parsing what it prints.
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';

export function haveWrk() {
  return spawnSync('wrk', ['--version'], { stdio: 'ignore' }).error === undefined;
}

/** Install wrk from Debian's packages when it is missing (we run as root in CI). */
export function ensureWrk(log = console.log) {
  if (haveWrk()) return;
  log('bench: wrk not found; installing it with apt-get install -y wrk ...');
  const opts = { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } };
  let r = spawnSync('apt-get', ['install', '-y', 'wrk'], opts);
  if (r.status !== 0) {
    log('bench: apt-get install failed; running apt-get update and retrying ...');
    spawnSync('apt-get', ['update'], opts);
    r = spawnSync('apt-get', ['install', '-y', 'wrk'], opts);
  }
  if (r.status !== 0 || !haveWrk()) throw new Error('could not install wrk (apt-get install -y wrk failed); install it and re-run');
  log('bench: wrk installed.');
}

/**
 * Run wrk against url. Only loopback targets are allowed, and the duration is bounded.
 * Returns the parsed result plus the raw output; the promise rejects only if wrk cannot run.
 */
export function runWrk(url, { duration = 5, connections = 50, threads = 1, headers = [], script, scriptArgs = [], timeout = '4s', onChild } = {}) {
  const u = new URL(url);
  if (u.hostname !== '127.0.0.1') throw new Error(`refusing to load a non-loopback target: ${url}`);
  const secs = Math.max(1, Math.min(Math.round(duration), 120));
  const args = ['-t', String(threads), '-c', String(connections), '-d', `${secs}s`, '--timeout', timeout, '--latency'];
  for (const h of headers) args.push('-H', h);
  if (script) args.push('-s', script);
  args.push(url);
  if (script && scriptArgs.length) args.push('--', ...scriptArgs);
  return runLoadGenerator('wrk', args, secs, onChild).then((out) => ({ ...parseWrk(out), args, raw: out }));
}

/**
 * Run a load generator (wrk, bench/ws-client.mjs) that ends on its own after `secs`; its
 * stdout. Killed if it hangs; rejects when it fails.
 */
export function runLoadGenerator(cmd, args, secs, onChild) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    onChild?.(child);
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const guard = setTimeout(() => child.kill('SIGKILL'), (secs + 15) * 1000);
    child.on('error', (e) => {
      clearTimeout(guard);
      reject(e);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(guard);
      if (code !== 0) return reject(new Error(`${path.basename(cmd === process.execPath ? args[0] : cmd)} exited with ${signal ?? code}: ${(err || out).trim().split('\n').pop()}`));
      resolve(out);
    });
  });
}

const UNITS = { us: 1e-3, ms: 1, s: 1000, m: 60000, h: 3600000 };
function ms(text) {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(text);
  return m ? Number(m[1]) * UNITS[m[2]] : null;
}

/** Parse wrk's text report. */
export function parseWrk(out) {
  const num = (re) => {
    const m = re.exec(out);
    return m ? Number(m[1]) : 0;
  };
  const r = {
    requests: 0,
    seconds: 0,
    rps: num(/Requests\/sec:\s+([\d.]+)/),
    errors: { connect: 0, read: 0, write: 0, timeout: 0 },
    socketErrors: 0,
    non2xx3xx: num(/Non-2xx or 3xx responses:\s+(\d+)/),
    latencyMs: {},
  };
  const done = /(\d+) requests in ([\d.]+)(us|ms|s|m),/.exec(out);
  if (done) {
    r.requests = Number(done[1]);
    r.seconds = ms(done[2] + done[3]) / 1000;
  }
  const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  if (se) r.errors = { connect: +se[1], read: +se[2], write: +se[3], timeout: +se[4] };
  r.socketErrors = r.errors.connect + r.errors.read + r.errors.write + r.errors.timeout;
  const avg = /Latency\s+([\d.]+(?:us|ms|s|m))/.exec(out);
  if (avg) r.latencyMs.avg = ms(avg[1]);
  for (const p of ['50', '90', '99']) {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+(?:us|ms|s|m))`, 'm').exec(out);
    if (m) r.latencyMs[`p${p}`] = ms(m[1]);
  }
  return r;
}
