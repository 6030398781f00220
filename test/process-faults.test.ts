/**
 * Faults of the process around the app: a privilege drop with log files, two starts racing
 * for one pidfile, signals in the first moments of a start, a master killed with SIGKILL.
 * Some need root (CI runs as root; they say so when it is missing).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { FIXTURES, ROOT, alive, descendants, freePort, killTree, request, run, serve, sleep, stop, tmpDir, track, waitFor } from './helpers.ts';

const PID_APP = path.join(FIXTURES, 'apps', 'pid.js');

async function privilegedPort(): Promise<number> {
  for (let p = 900; p < 1000; p++) {
    const free = await new Promise<boolean>((resolve) => {
      const s = net.createServer().once('error', () => resolve(false)).listen(p, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (free) return p;
  }
  throw new Error('no free port below 1000');
}

test('-u nobody with an error log and an access log on a port below 1024: serves, both logs fill, WORKER TIMEOUT keeps its stack', { timeout: 60_000 }, async () => {
  assert.equal(process.getuid?.(), 0, 'this test needs root (CI runs as root)');
  const dir = tmpDir();
  chmodSync(dir, 0o755);
  const errorLog = path.join(dir, 'error.log');
  const accessLog = path.join(dir, 'access.log');
  // Files the master (root) created before: a worker running as nobody could not open them.
  writeFileSync(errorLog, '');
  writeFileSync(accessLog, '');
  const port = await privilegedPort();
  const r = run([PID_APP, '-u', 'nobody', '-b', `127.0.0.1:${port}`, '--error-log', errorLog, '--access-log', accessLog, '--timeout', '3'], { cwd: '/tmp' });
  try {
    await waitFor(() => readFileSync(errorLog, 'utf8').includes('"event":"ready"'), 15_000, 'ready in the error log');
    const reply = await request({ port }, { path: '/hello' });
    assert.equal(reply.status, 200);
    assert.match(readFileSync(`/proc/${reply.headers['x-pid']}/status`, 'utf8'), /^Uid:\s+65534\s/m);
    await waitFor(() => readFileSync(accessLog, 'utf8').includes('"GET /hello HTTP/1.1" 200'), 5000, 'the access log line');
    const stuck = request({ port }, { path: '/block?why=spin', timeoutMs: 20_000 }).catch(() => null);
    const line = await waitFor(() => readFileSync(errorLog, 'utf8').split('\n').find((l) => l.includes('"event":"worker_timeout"')), 15_000, 'WORKER TIMEOUT');
    const report = JSON.parse(line) as { msg: string; stack: string[] };
    assert.match(report.msg, /while serving GET \/block\?why=spin/);
    assert.ok(report.stack.some((f) => f.includes('fixtures/apps/pid.js')), JSON.stringify(report.stack));
    await stuck;
  } finally {
    await stop(r);
  }
});

test('a unix-socket bind is handed to the workers\' user and group', { timeout: 30_000 }, async () => {
  assert.equal(process.getuid?.(), 0, 'this test needs root (CI runs as root)');
  const dir = tmpDir();
  chmodSync(dir, 0o755);
  const sock = path.join(dir, 'app.sock');
  const r = await serve([PID_APP, '-u', 'nobody', '-g', 'nogroup', '-b', `unix:${sock}`], { cwd: '/tmp' });
  try {
    const st = statSync(sock);
    assert.deepEqual([st.uid, st.gid], [65534, 65534]);
    assert.equal((await request({ port: 0, socketPath: sock })).status, 200);
  } finally {
    await stop(r);
  }
});

test('two starts racing for one pidfile: exactly one wins, every round, fresh or stale', { timeout: 120_000 }, async () => {
  const dir = tmpDir();
  const pidfile = path.join(dir, 'race.pid');
  const racer = `import(${JSON.stringify(path.join(ROOT, 'dist/src/pidfile.js'))}).then((m) => {
    process.stdin.once('data', () => {
      let won = true;
      try { m.writePidfile(process.argv[1], process.pid); } catch { won = false; }
      process.stdout.write(won ? 'won\\n' : 'lost\\n');
      setTimeout(() => process.exit(0), 300);
    });
    process.stdout.write('ready\\n');
  });`;
  for (let round = 0; round < 30; round++) {
    // Every other round starts from a stale pidfile (a pid that is gone).
    if (round % 2 === 1) writeFileSync(pidfile, '999999\n');
    const kids = [0, 1].map(() => {
      const c = spawn(process.execPath, ['-e', racer, pidfile], { stdio: ['pipe', 'pipe', 'inherit'] });
      track(c.pid!);
      let out = '';
      c.stdout!.on('data', (d) => (out += d));
      return { c, out: () => out };
    });
    await waitFor(() => kids.every((k) => k.out().includes('ready')), 10_000, 'both racers ready');
    for (const k of kids) k.c.stdin!.write('go\n');
    await waitFor(() => kids.every((k) => /won|lost/.test(k.out())), 10_000, 'both racers done');
    const wins = kids.filter((k) => k.out().includes('won'));
    assert.equal(wins.length, 1, `round ${round}: ${kids.map((k) => k.out().trim().split('\n').pop()).join(' / ')}`);
    assert.equal(readFileSync(pidfile, 'utf8').trim(), String(wins[0]!.c.pid), `round ${round}: the pidfile names the winner`);
    await Promise.all(kids.map((k) => new Promise((resolve) => (k.c.exitCode !== null ? resolve(null) : k.c.once('exit', resolve)))));
    assert.deepEqual(readdirSync(dir).filter((f) => f !== 'race.pid'), [], 'no temp files left');
  }
});

/** What a stopped arbiter left behind in `dir`: its pidfile, its unix socket. */
function leftovers(dir: string): string[] {
  return readdirSync(dir);
}

/** Whether the process has a handler for `signo` (SigCgt in /proc/PID/status). */
function catches(pid: number, signo: number): boolean {
  try {
    const m = /^SigCgt:\s*([0-9a-f]+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m !== null && ((BigInt(`0x${m[1]}`) >> BigInt(signo - 1)) & 1n) === 1n;
  } catch {
    return false;
  }
}

test('TERM in the first moments of a start, or at any moment after: exit 0, nothing left behind', { timeout: 180_000 }, async () => {
  const dir = tmpDir();
  for (let i = 0; i < 24; i++) {
    // From the moment bin/arbiter's first lines have run (before them, in Node's own start —
    // some 40 ms, far more on a loaded machine — no code of ours can answer a TERM, and
    // Node's handler ends any Node program): 0, 50, ... ms, during the loading, the app check, the
    // bind, the first boots; then at any moment while serving.
    const delay = i < 12 ? i * 50 : 600 + Math.floor(Math.random() * 1500);
    const port = await freePort();
    const r = run([PID_APP, '-w', '2', '-b', `127.0.0.1:${port}`, '-b', `unix:${path.join(dir, 'a.sock')}`, '-p', path.join(dir, 'a.pid')]);
    // SIGWINCH is the last signal bin/arbiter takes (Node itself catches SIGTERM from its start,
    // to reset the terminal and then die of it, so SIGTERM's own bit tells nothing).
    for (const until = Date.now() + 10_000; !catches(r.pid, 28); await sleep(5)) {
      assert.ok(Date.now() < until, 'bin/arbiter never came to handle SIGTERM');
    }
    await sleep(delay);
    const kids = new Set(descendants(r.pid));
    r.signal('SIGTERM');
    const res = await Promise.race([r.exited, sleep(15_000).then(() => null)]);
    if (!res) killTree(r.pid);
    assert.deepEqual(res, { code: 0, signal: null }, `TERM after ${delay} ms: ${r.stderr().slice(-4000)}`);
    for (const k of kids) await waitFor(() => !alive(k), 5000, `worker ${k} gone`);
    assert.deepEqual(leftovers(dir), [], `TERM after ${delay} ms left files behind`);
  }
});

test('a SIGKILLed master leaves no temp directory behind, and its workers leave', { timeout: 30_000 }, async () => {
  const before = new Set(readdirSync(os.tmpdir()).filter((f) => f.startsWith('arbiter-') && !f.startsWith('arbiter-test')));
  const port = await freePort();
  const r = await serve([PID_APP, '-w', '2', '-b', `127.0.0.1:${port}`, '--timeout', '5']);
  const workers = r.workers();
  process.kill(r.pid, 'SIGKILL');
  for (const w of workers) await waitFor(() => !alive(w), 5000, `worker ${w} leaves`);
  const after = readdirSync(os.tmpdir()).filter((f) => f.startsWith('arbiter-') && !f.startsWith('arbiter-test') && !before.has(f));
  assert.deepEqual(after, []);
  assert.ok(!existsSync(path.join(os.tmpdir(), `arbiter-${r.pid}`)));
});


test('a master SIGKILLed while its workers are still loading: they leave too', { timeout: 60_000 }, async () => {
  for (let round = 0; round < 3; round++) {
    const port = await freePort();
    const r = run([PID_APP, '-w', '2', '-b', `127.0.0.1:${port}`, '--log-level', 'debug']);
    // The moment the master says it spawned them, they are loading their modules.
    await r.waitLog((l) => l.event === 'worker_booting', 15_000, 'a worker booting');
    const workers = r.workers();
    process.kill(r.pid, 'SIGKILL');
    await r.exited;
    for (const w of workers) await waitFor(() => !alive(w), 15_000, `round ${round + 1}: worker ${w} leaves`);
  }
});
