// Daemon mode and the pidfile (issue 6, part 6): `-D -p PIDFILE` detaches properly.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync, mkdirSync, copyFileSync } from 'node:fs';
import path from 'node:path';
import { BIN, FIXTURES, alive, descendants, freePort, request, safeKill, sleep, tmpDir, waitFor } from './helpers.ts';

const PID_APP = path.join(FIXTURES, 'apps', 'pid.js');

/** Daemons are not our children: remember them to kill them by pid, whatever happens. */
const daemons = new Set<number>();
after(() => {
  for (const pid of daemons) {
    for (const c of descendants(pid)) safeKill(c, 'SIGKILL');
    safeKill(pid, 'SIGKILL');
  }
});

function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ARBITER_') && !k.startsWith('LISTEN_') && k !== 'PORT' && k !== 'WEB_CONCURRENCY'));
}

/** Run the launching command to its end (it must end by itself), bounded. */
function launch(args: string[], cwd?: string): Promise<{ code: number | null; pid: number; stdout: string; stderr: string; ms: number }> {
  const t0 = Date.now();
  const p = spawn(process.execPath, [BIN, ...args], { cwd, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  p.stdout.on('data', (d) => (stdout += d));
  p.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`the launching command did not return within 20 s:\n${stderr}`));
    }, 20_000);
    p.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, pid: p.pid!, stdout, stderr, ms: Date.now() - t0 });
    });
  });
}

function readPid(file: string): number | null {
  try {
    const n = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}

function stat(pid: number): { ppid: number; sid: number } {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return { ppid: Number(f[1]), sid: Number(f[3]) };
}

test('-D -p PIDFILE detaches: the launcher exits 0 at once, the daemon serves, TERM via the pidfile stops it and removes the pidfile', { timeout: 60_000 }, async () => {
  const dir = tmpDir();
  const pidfile = path.join(dir, 'arbiter.pid');
  const port = await freePort();
  const l = await launch([PID_APP, '-D', '-p', pidfile, '-w', '2', '-b', `127.0.0.1:${port}`, '--error-log', path.join(dir, 'error.log')]);
  const pid = await waitFor(() => readPid(pidfile), 15_000, 'the pidfile');
  daemons.add(pid);
  assert.equal(l.code, 0, l.stderr);
  assert.ok(l.ms < 15_000, `the launcher took ${l.ms} ms`);
  assert.notEqual(pid, l.pid, 'the pidfile names the daemon, not the launcher');
  assert.ok(alive(pid));
  assert.ok(!alive(l.pid));
  // Detached: a session of its own, not our child, no terminal.
  const st = stat(pid);
  assert.equal(st.sid, pid, 'the daemon leads its own session');
  assert.notEqual(st.ppid, process.pid);

  const res = await waitFor(() => request({ port }), 15_000, 'the daemon answers');
  assert.equal(res.status, 200);
  await waitFor(() => descendants(pid).length === 2, 10_000, 'two workers');
  const workers = descendants(pid);

  safeKill(pid, 'SIGTERM');
  await waitFor(() => !alive(pid), 20_000, 'the daemon to exit after TERM');
  await waitFor(() => !existsSync(pidfile), 5000, 'the pidfile removed');
  for (const w of workers) assert.ok(!alive(w), `worker ${w} left behind`);
  assert.match(readFileSync(path.join(dir, 'error.log'), 'utf8'), /"event":"exit","code":0/);
});

test('daemon: a stale pidfile is replaced; a live one refuses a second arbiter, and the launcher says so', { timeout: 60_000 }, async () => {
  const dir = tmpDir();
  const pidfile = path.join(dir, 'arbiter.pid');
  // A pid that is certainly dead: a process we ran to its end.
  const dead = await launch(['--version']);
  writeFileSync(pidfile, `${dead.pid}\n`);
  const port = await freePort();
  const l = await launch([PID_APP, '-D', '-p', pidfile, '-w', '1', '-b', `127.0.0.1:${port}`]);
  assert.equal(l.code, 0, l.stderr);
  const pid = await waitFor(() => {
    const p = readPid(pidfile);
    return p !== dead.pid ? p : null;
  }, 15_000, 'the stale pidfile replaced');
  daemons.add(pid);
  await waitFor(() => request({ port }), 15_000, 'the daemon answers');

  try {
    const second = await launch([PID_APP, '-D', '-p', pidfile, '-w', '1', '-b', `127.0.0.1:${await freePort()}`]);
    assert.notEqual(second.code, 0, 'a second daemon on a live pidfile must fail, and its launcher must say so');
    assert.match(second.stderr, /pidfile .* names a running process/);
    assert.equal(readPid(pidfile), pid, 'the first arbiter keeps its pidfile');
    assert.ok(alive(pid));
  } finally {
    safeKill(pid, 'SIGTERM');
    await waitFor(() => !alive(pid), 20_000, 'the daemon to exit');
  }
  assert.ok(!existsSync(pidfile));
});

test('daemon: relative paths and --chdir mean what they mean without -D', { timeout: 60_000 }, async () => {
  const dir = tmpDir();
  mkdirSync(path.join(dir, 'site'));
  copyFileSync(PID_APP, path.join(dir, 'site', 'app.js'));
  const port = await freePort();
  // app and pidfile relative to --chdir, as without -D.
  const l = await launch(['app.js', '--chdir', 'site', '-D', '-p', 'arbiter.pid', '-w', '1', '-b', `127.0.0.1:${port}`], dir);
  const pidfile = path.join(dir, 'site', 'arbiter.pid');
  let pid: number | null = null;
  try {
    pid = await waitFor(() => readPid(pidfile), 15_000, `the pidfile in site/ (launcher: code ${l.code} ${l.stderr})`);
    daemons.add(pid);
    assert.equal(l.code, 0);
    assert.equal((await waitFor(() => request({ port }), 15_000, 'the daemon answers')).status, 200);
  } finally {
    if (pid) {
      safeKill(pid, 'SIGTERM');
      await waitFor(() => !alive(pid!), 20_000, 'the daemon to exit');
    }
  }
  await sleep(100);
  assert.ok(!existsSync(pidfile));
});
