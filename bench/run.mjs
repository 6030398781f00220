#!/usr/bin/env node
// `npm run bench`: start each server in turn on a free 127.0.0.1 port, load it with wrk,
// and report requests/s and requests per server CPU-second (CPU summed over the server's
// whole process tree), each as a ratio to its group's baseline. See bench/README.md.
//
// Env: BENCH_DURATION (seconds per measured load, default 5), BENCH_WORKERS (N, default 2),
//      BENCH_ONLY (substring, or several separated by commas: run only rows whose
//      "group: name" contains one, e.g. BENCH_ONLY=hono or BENCH_ONLY='plain: bare,plain: arbiter'),
//      BENCH_CONNECTIONS (default 50), BENCH_THREADS (wrk threads, default 1),
//      BENCH_ROUNDS (default 1: repeat the whole list and report medians).
import { mkdirSync, writeFileSync, readFileSync, statSync, readdirSync, existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { ensureWrk, runWrk } from './wrk.mjs';
import { sampleTree, perProcessSeconds, cpuSeconds, selfChildrenTicks, machineBusyTicks, CLK_TCK, isAlive } from './cpu.mjs';
import { freePort, waitUntilAnswers, refreshTracked, killAllTracked, tail } from './proc.mjs';
import { ROWS, GROUPS, N, ROOT } from './rows.mjs';

const DURATION = Math.max(1, Math.min(120, Number(process.env.BENCH_DURATION) || 5));
const WARMUP = 1;
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS) || 50;
// One wrk thread by default. The machine has 2 cores shared by wrk and the server: a single
// wrk thread (one epoll loop) already drives far more hello-world requests than one Node
// process can answer, and a second thread would only take CPU away from the server under
// test (and add scheduling noise). Requests per server CPU-second is the fair metric here
// because the load generator and the server compete for the same cores.
const THREADS = Number(process.env.BENCH_THREADS) || 1;
const ONLY = (process.env.BENCH_ONLY ?? '')
  .toLowerCase()
  .split(',')
  .map((x) => x.trim())
  .filter(Boolean);
const RESULTS = path.join(ROOT, 'bench', 'results');
// Rounds: run the whole row list this many times and report the median of each number (the
// error counts are summed). Helps on a machine where other jobs come and go.
const ROUNDS = Math.max(1, Math.min(10, Number(process.env.BENCH_ROUNDS) || 1));

let currentWrk = null;
function bail(signal) {
  process.stderr.write(`\nbench: ${signal}: stopping every server we started ...\n`);
  killAllTracked();
  const code = signal === 'SIGINT' ? 130 : 143;
  const w = currentWrk;
  if (!w || w.exitCode !== null || w.signalCode !== null) process.exit(code);
  // Reap wrk before leaving so it does not linger as a zombie.
  w.once('exit', () => process.exit(code));
  w.kill('SIGKILL');
  setTimeout(() => process.exit(code), 1000).unref();
}
process.on('SIGINT', () => bail('SIGINT'));
process.on('SIGTERM', () => bail('SIGTERM'));
process.on('SIGHUP', () => bail('SIGHUP'));
process.on('exit', () => killAllTracked());
process.on('uncaughtException', (err) => {
  process.stderr.write(`bench: ${err.stack ?? err}\n`);
  killAllTracked();
  process.exit(1);
});

/** Newest mtime (ms) of files under dir with one of the extensions. */
function newest(dir, exts) {
  let best = 0;
  if (!existsSync(dir)) return 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) best = Math.max(best, newest(p, exts));
    else if (exts.some((x) => e.name.endsWith(x))) best = Math.max(best, statSync(p).mtimeMs);
  }
  return best;
}

function checkBuild() {
  const cli = path.join(ROOT, 'dist', 'src', 'cli.js');
  if (!existsSync(cli)) return 'dist/ is missing: run `npm run build` first (arbiter rows will fail)';
  const src = Math.max(newest(path.join(ROOT, 'src'), ['.ts']), newest(path.join(ROOT, 'workers'), ['.ts']));
  const dist = newest(path.join(ROOT, 'dist'), ['.js']);
  if (src > dist) return 'dist/ is older than src/ or workers/: arbiter rows run the last build (`npm run build` to refresh)';
  return null;
}

const available = new Map();
/** Is this arbiter worker class built in? (`--check-config` loads config and app, binds nothing.) */
function workerClassAvailable(cls) {
  if (!available.has(cls)) {
    const r = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'arbiter'), 'examples/hello.js:handler', '-k', cls, '--check-config'], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 20000,
    });
    const why = (r.stderr || r.stdout || '').trim().split('\n').pop().replace(/^arbiter: error: /, '').replace(/: expected .*/, '');
    available.set(cls, r.status === 0 ? null : why || `exit ${r.status}`);
  }
  return available.get(cls);
}

function wrkVersion() {
  const r = spawnSync('wrk', ['--version'], { encoding: 'utf8' });
  const m = /wrk\s+(\S+)/.exec((r.stdout || '') + (r.stderr || ''));
  return m ? `wrk ${m[1]}` : 'wrk';
}

const windowMs = (a, b) => Number(b.at - a.at) / 1e6;
const round = (x, d = 0) => (x == null || !Number.isFinite(x) ? null : Number(x.toFixed(d)));

async function measureLoad(row, server, url, load) {
  const opts = { connections: CONNECTIONS, threads: THREADS, headers: load.headers, script: load.script, scriptArgs: load.scriptArgs, onChild: (c) => (currentWrk = c) };
  await runWrk(url, { ...opts, duration: WARMUP });
  refreshTracked();
  const machineBefore = machineBusyTicks();
  const selfBefore = selfChildrenTicks();
  const before = sampleTree(server.pid);
  // Loads with work during the window (reloads) may need a longer one than BENCH_DURATION.
  const secs = Math.max(DURATION, load.minDuration ?? 0);
  const during = load.during ? load.during(server, secs).catch((e) => [{ error: String(e) }]) : null;
  const w = await runWrk(url, { ...opts, duration: secs });
  const after = sampleTree(server.pid);
  const selfAfter = selfChildrenTicks();
  const machineAfter = machineBusyTicks();
  currentWrk = null;
  const events = during ? await during : undefined;
  for (const e of events ?? []) if (e.atMs != null && e.atMs + e.tookMs > windowMs(before, after)) e.late = true;
  const cpu = cpuSeconds(before, after);
  const windowS = Number(after.at - before.at) / 1e9;
  const benchChildren = (selfAfter - selfBefore) / CLK_TCK;
  // CPU the rest of the machine used meanwhile (other jobs, kernel threads): a noise gauge.
  const other = (machineAfter - machineBefore) / CLK_TCK - cpu - benchChildren;
  return {
    load: load.name,
    rps: round(w.requests / (w.seconds || secs), 1),
    seconds: secs,
    requests: w.requests,
    wrkSeconds: w.seconds,
    windowSeconds: round(windowS, 3),
    serverCpuSeconds: round(cpu, 2),
    serverCpuShare: round(cpu / windowS, 2), // cores busy on average
    reqPerCpuSecond: cpu > 0 ? round(w.requests / cpu, 0) : null,
    socketErrors: w.socketErrors,
    errors: w.errors,
    non2xx3xx: w.non2xx3xx,
    latencyMs: w.latencyMs,
    benchChildrenCpuSeconds: round(benchChildren, 2), // wrk (+ pm2 CLI calls)
    otherCpuShare: round(other / windowS, 2), // cores used by everything else on the machine
    processesBefore: before.pids.length,
    processesAfter: after.pids.length,
    perProcess: perProcessSeconds(before, after),
    events,
  };
}

async function runRow(row) {
  const result = { name: row.name, group: row.group, loads: [] };
  if (row.requires) {
    const why = workerClassAvailable(row.requires);
    if (why) {
      result.skipped = `-k ${row.requires} not available in this build (${why})`;
      return result;
    }
  }
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/`;
  result.port = port;
  let server;
  const t0 = Date.now();
  try {
    server = await row.start(port);
    result.pid = server.pid;
    await waitUntilAnswers(server, port);
    result.startMs = Date.now() - t0;
  } catch (err) {
    result.error = `failed to start: ${err.message}`;
    if (server?.logFile) result.logTail = tail(server.logFile);
    if (server?.stop) result.stop = await server.stop();
    return result;
  }
  refreshTracked();
  for (const load of row.loads) {
    process.stderr.write(`bench: ${row.group}: ${row.name} [${load.name}] ...\n`);
    try {
      result.loads.push(await measureLoad(row, server, url, load));
    } catch (err) {
      result.loads.push({ load: load.name, error: err.message });
    }
    // A USR2 hand-over row's first master leaves on purpose; its successor serves on.
    if (!row.rootMayExit && !isAlive(server.pid)) {
      result.error = 'server exited during the run';
      result.logTail = tail(server.logFile);
      break;
    }
  }
  const s0 = Date.now();
  const stop = await server.stop();
  result.stop = { ...stop, ms: Date.now() - s0 };
  if (server.exited) {
    const e = await Promise.race([server.exited, new Promise((r) => setTimeout(() => r(null), 100))]);
    if (e) result.stop.exit = e.signal ?? e.code;
  }
  return result;
}

function median(xs) {
  const v = xs.filter((x) => x != null && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
}

/** One result from the same row's results in several rounds: medians, summed errors. */
function combineRounds(rs) {
  const first = rs[0];
  const out = { ...first, rounds: rs, loads: [] };
  out.error = rs.map((r) => r.error).find(Boolean);
  out.skipped = rs.map((r) => r.skipped).find(Boolean);
  const stops = rs.map((r) => r.stop).filter(Boolean);
  out.stop = stops.find((s) => !s.graceful) ?? stops[0];
  const names = [...new Set(rs.flatMap((r) => r.loads.map((l) => l.load)))];
  for (const name of names) {
    const ls = rs.map((r) => r.loads.find((l) => l.load === name)).filter((l) => l && !l.error);
    if (!ls.length) {
      out.loads.push(rs.map((r) => r.loads.find((l) => l.load === name)).find(Boolean));
      continue;
    }
    const sum = (f) => ls.reduce((a, l) => a + f(l), 0);
    out.loads.push({
      load: name,
      rounds: ls.length,
      rps: median(ls.map((l) => l.rps)),
      reqPerCpuSecond: median(ls.map((l) => l.reqPerCpuSecond)),
      serverCpuSeconds: median(ls.map((l) => l.serverCpuSeconds)),
      socketErrors: sum((l) => l.socketErrors),
      errors: Object.fromEntries(Object.keys(ls[0].errors).map((k) => [k, sum((l) => l.errors[k])])),
      non2xx3xx: sum((l) => l.non2xx3xx),
      otherCpuShare: median(ls.map((l) => l.otherCpuShare)),
      events: ls.flatMap((l) => l.events ?? []),
    });
  }
  return out;
}

// ---------------------------------------------------------------- output

function ratio(x, base) {
  return x != null && base ? x / base : null;
}

function fmtNum(x) {
  return x == null ? '-' : Math.round(x).toLocaleString('en-US');
}
function fmtRatio(x) {
  return x == null ? '-' : x.toFixed(2) + 'x';
}
function fmtErrors(l) {
  if (!l.socketErrors) return '0';
  const e = Object.entries(l.errors)
    .filter(([, v]) => v)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  return `${l.socketErrors} (${e})`;
}

function table(headers, rows, rightAlign) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells) =>
    cells
      .map((c, i) => (rightAlign[i] ? (c ?? '').padStart(widths[i]) : (c ?? '').padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

function printGroup(group, results) {
  const g = GROUPS[group];
  const base = g.baseline ? results.find((r) => r.name === g.baseline) : null;
  console.log(`\n== ${group}: ${g.title}` + (g.baseline ? `; ratios vs ${g.baseline}` : ''));
  const headers = ['server', 'load', 'req/s', 'x base', 'req/CPU-s', 'x base', 'CPU-s', 'socket errors', 'non-2xx/3xx', 'note'];
  const right = [false, false, true, true, true, true, true, true, true, false];
  const lines = [];
  // Load-major, so the rows to compare sit next to each other.
  const loadOrder = [];
  for (const r of results) for (const l of r.loads) if (!loadOrder.includes(l.load)) loadOrder.push(l.load);
  for (const r of results) {
    if (r.skipped) lines.push([r.name, '', '', '', '', '', '', '', '', `skipped: ${r.skipped}`]);
    else if (r.error && r.loads.length === 0) lines.push([r.name, '', '', '', '', '', '', '', '', `ERROR: ${r.error}`]);
  }
  for (const loadName of loadOrder) {
    const b = base?.loads.find((l) => l.load === loadName && !l.error);
    for (const r of results) {
      const l = r.loads.find((x) => x.load === loadName);
      if (!l) continue;
      if (l.error) {
        lines.push([r.name, loadName, '', '', '', '', '', '', '', `ERROR: ${l.error}`]);
        continue;
      }
      const notes = [];
      if (l.events?.length) notes.push(l.events.map((e) => (e.error ? `error: ${e.error}` : `${e.action} ${e.ok ? 'ok' : 'FAILED'} @${(e.atMs / 1000).toFixed(1)}s (${e.tookMs} ms${e.late ? ', ended after the window' : ''})`)).join('; '));
      if (l.otherCpuShare > 0.15) notes.push(`noisy: others used ${l.otherCpuShare.toFixed(2)} cores`);
      if (r.error && r.loads.at(-1) === l) notes.push(`ERROR: ${r.error}`);
      if (r.stop && !r.stop.graceful && r.loads[0] === l) notes.push(`needed SIGKILL: ${r.stop.leftovers.join(' ')}`);
      if (r.stop?.exit != null && r.stop.exit !== 0 && r.loads[0] === l) notes.push(`exit ${r.stop.exit} on SIGTERM`);
      lines.push([
        r.name,
        loadName,
        fmtNum(l.rps),
        fmtRatio(ratio(l.rps, b?.rps)),
        fmtNum(l.reqPerCpuSecond),
        fmtRatio(ratio(l.reqPerCpuSecond, b?.reqPerCpuSecond)),
        l.serverCpuSeconds?.toFixed(2) ?? '-',
        fmtErrors(l),
        String(l.non2xx3xx),
        notes.join('; '),
      ]);
    }
  }
  console.log(table(headers, lines, right));
  for (const r of results) if (r.logTail) console.log(`  ${r.name} (${r.group}) log tail:\n    ${r.logTail.split('\n').join('\n    ')}`);
}

// ---------------------------------------------------------------- main

async function main() {
  ensureWrk((m) => console.log(m));
  const warn = checkBuild();
  if (warn) console.log(`bench: warning: ${warn}`);
  const rows = ROWS.filter((r) => !ONLY.length || ONLY.some((o) => `${r.group}: ${r.name}`.toLowerCase().includes(o)));
  if (!rows.length && !ONLY.some((o) => o.includes('task'))) {
    console.log(`bench: no row matches BENCH_ONLY=${process.env.BENCH_ONLY}`);
    return 2;
  }
  console.log(
    `bench: ${rows.length} rows${ROUNDS > 1 ? ` x ${ROUNDS} rounds (medians)` : ''}, ${DURATION}s per load after ${WARMUP}s warm-up, wrk -t${THREADS} -c${CONNECTIONS}, N=${N}, ` +
      `${os.cpus().length} CPUs, node ${process.version}, ${wrkVersion()}`,
  );
  const load1 = Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
  if (load1 > 0.7) console.log(`bench: warning: load average is ${load1} before we start: other work on this machine will skew the numbers (see "noisy" notes)`);
  const started = Date.now();
  const perRound = [];
  for (let round = 1; round <= ROUNDS; round++) {
    if (ROUNDS > 1) process.stderr.write(`bench: round ${round} of ${ROUNDS}\n`);
    perRound.push([]);
    for (const row of rows) perRound.at(-1).push(await runRow(row));
  }
  const results = ROUNDS === 1 ? perRound[0] : rows.map((_, i) => combineRounds(perRound.map((r) => r[i])));

  for (const group of Object.keys(GROUPS)) {
    const rs = results.filter((r) => r.group === group);
    if (rs.length) printGroup(group, rs);
  }
  // The task class: no-op throughput on the spool and on Redis, beside BullMQ on the same Redis.
  let tasks = null;
  if (!ONLY.length || ONLY.some((o) => 'tasks'.includes(o) || o.includes('task'))) {
    const { benchTasks, printTaskTable } = await import('./tasks.mjs');
    const repeat = Math.max(1, Number(process.env.BENCH_TASK_REPEAT) || 1);
    process.stderr.write('bench: tasks: no-op throughput (spool, redis, bullmq) ...\n');
    try {
      tasks = await benchTasks({ tasks: Number(process.env.BENCH_TASKS) || 20_000, repeat, log: (m) => process.stderr.write(`bench: tasks: ${m}\n`) });
      console.log('\n== tasks: no-op task throughput; ratio is arbiter on Redis / BullMQ at equal total concurrency');
      printTaskTable(tasks.rows, tasks.ratios, repeat);
    } catch (err) {
      console.log(`\n== tasks: ERROR: ${err.message}`);
    }
  }
  const seconds = (Date.now() - started) / 1000;
  console.log(`\nbench: done in ${seconds.toFixed(0)}s. req/CPU-s = requests / CPU seconds of the server's whole process tree during the measured window.`);

  mkdirSync(RESULTS, { recursive: true });
  const out = {
    startedAt: new Date(started).toISOString(),
    seconds,
    settings: { rounds: ROUNDS, duration: DURATION, warmup: WARMUP, connections: CONNECTIONS, threads: THREADS, workers: N, only: ONLY.length ? ONLY : null },
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, node: process.version, wrk: wrkVersion(), clkTck: CLK_TCK, platform: `${os.platform()} ${os.release()}` },
    groups: GROUPS,
    results,
    tasks,
  };
  writeFileSync(path.join(RESULTS, 'latest.json'), JSON.stringify(out, null, 2) + '\n');
  console.log(`bench: raw results in bench/results/latest.json`);
  return 0;
}

main().then(
  (code) => {
    killAllTracked();
    process.exit(code);
  },
  (err) => {
    process.stderr.write(`bench: ${err.stack ?? err}\n`);
    killAllTracked();
    process.exit(1);
  },
);
