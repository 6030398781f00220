// Zero-downtime replacement (issue 3): HUP, USR2 hand-over and `arbiter upgrade`,
// maxRequests recycling, maxWorkerMemory, timeout with a stack, --reload, hooks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, readlinkSync, writeFileSync, existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { FIXTURES, alive, track, descendants, freePort, load, request, run, serve, sleep, stop, tmpDir, waitFor, writeFiles } from './helpers.ts';

const PID_APP = path.join(FIXTURES, 'apps', 'pid.js');

/** A load that runs until told to stop (before the final TERM, which waits for clients to go). */
function steadyLoad(port: number, connections = 50) {
  let end!: () => void;
  const until = new Promise<void>((r) => (end = r));
  const result = load(port, { connections, maxMs: 60_000, until });
  return { result, end: () => (end(), result) };
}

function versionedApp(dir: string, version: string): void {
  writeFiles(dir, {
    'app.js': `export default function handler(req, res) {
  res.writeHead(200, { 'x-pid': String(process.pid), 'content-type': 'text/plain' });
  res.end(${JSON.stringify(version)});
}\n`,
  });
}

test('HUP every 2 s, five times, under keep-alive load: no errors, all workers replaced each time, new code served', { timeout: 90_000 }, async () => {
  const dir = tmpDir();
  versionedApp(dir, 'v1');
  const port = await freePort();
  const r = await serve(['app.js', '-w', '2', '-b', `127.0.0.1:${port}`], { cwd: dir });
  const loading = steadyLoad(port);
  try {
    await sleep(500);
    for (let i = 1; i <= 5; i++) {
      const before = r.workers();
      if (i === 3) versionedApp(dir, 'v2');
      r.signal('SIGHUP');
      await waitFor(() => {
        const now = r.workers();
        return now.length === 2 && now.every((p) => !before.includes(p)) && before.every((p) => !alive(p));
      }, 10_000, `every worker replaced after HUP ${i}`);
      if (i === 3) assert.equal((await request({ port })).body, 'v2');
      await sleep(Math.max(0, 2000 - 100));
    }
    const res = await loading.end();
    r.signal('SIGTERM');
    assert.equal(res.errors, 0, JSON.stringify(res.errorKinds));
    assert.equal(res.non2xx, 0);
    assert.ok(res.ok > 500, `only ${res.ok} requests`);
    assert.equal((await r.exited).code, 0);
  } finally {
    await loading.end();
    if (alive(r.pid)) await stop(r);
  }
});

test('HUP with a broken config keeps the running config; a changed bind opens and closes listeners', { timeout: 60_000 }, async () => {
  const dir = tmpDir();
  const [a, b] = [await freePort(), await freePort()];
  const conf = (bind: string, extra = '') => writeFiles(dir, { 'arbiter.config.json': `{ "app": "${PID_APP}", "bind": ["${bind}"]${extra} }` });
  conf(`127.0.0.1:${a}`);
  const r = await serve([], { cwd: dir });
  try {
    conf(`127.0.0.1:${a}`, ', "workerz": 3');
    r.signal('SIGHUP');
    await r.waitLog((l) => l.event === 'reload_failed' && /unknown setting "workerz"/.test(l.msg), 5000, 'reload_failed');
    assert.equal((await request({ port: a })).status, 200);
    conf(`127.0.0.1:${b}`, ', "workers": 2');
    r.signal('SIGHUP');
    await waitFor(() => request({ port: b }).then((x) => x.status === 200), 10_000, 'the new listener');
    await waitFor(() => request({ port: a }).then(() => false, () => true), 10_000, 'the old listener to close');
    await waitFor(() => r.workers().length === 2, 10_000, 'two workers after the reload');
  } finally {
    await stop(r);
  }
});

test('HUP moves the control socket and the metrics endpoint; one that cannot open leaves the old in place', { timeout: 60_000 }, async () => {
  const dir = tmpDir();
  const [port, m1, m2] = [await freePort(), await freePort(), await freePort()];
  const [s1, s2] = [path.join(dir, 'one.sock'), path.join(dir, 'two.sock')];
  const conf = (sock: string, metrics: string) =>
    writeFiles(dir, { 'arbiter.config.json': JSON.stringify({ app: PID_APP, bind: [`127.0.0.1:${port}`], controlSocket: sock, metricsBind: metrics }) });
  const status = (sock: string) =>
    new Promise<string>((resolve, reject) => {
      const c = net.connect(sock, () => c.write('{"cmd":"status"}\n'));
      let buf = '';
      c.setEncoding('utf8');
      c.on('data', (d) => (buf += d) && buf.includes('\n') && c.end());
      c.on('close', () => resolve(buf));
      c.on('error', reject);
    });
  conf(s1, `127.0.0.1:${m1}`);
  const r = await serve([], { cwd: dir });
  try {
    assert.match(await status(s1), /"ok":true/);
    conf(s2, `127.0.0.1:${m2}`);
    r.signal('SIGHUP');
    await waitFor(() => existsSync(s2) && !existsSync(s1), 10_000, 'the control socket to move');
    assert.match(await status(s2), /"ok":true/);
    await waitFor(() => request({ port: m2 }, { path: '/metrics' }).then((x) => x.status === 200), 10_000, 'metrics on the new port');
    await waitFor(() => request({ port: m1 }, { path: '/metrics' }).then(() => false, () => true), 10_000, 'the old metrics port to close');
    // A metrics address that cannot open (the app's own port is taken): the old one stays.
    conf(s2, `127.0.0.1:${port}`);
    r.signal('SIGHUP');
    await r.waitLog((l) => l.event === 'reload_metrics_failed', 10_000, 'reload_metrics_failed');
    assert.equal((await request({ port: m2 }, { path: '/metrics' })).status, 200);
    assert.equal((await request({ port })).status, 200);
  } finally {
    await stop(r);
  }
});

/** A master with a pidfile, two workers and a steady keep-alive load: the hand-over tests' start. */
async function masterUnderLoad() {
  const dir = tmpDir();
  const pidfile = path.join(dir, 'arbiter.pid');
  const port = await freePort();
  const r = await serve([PID_APP, '-w', '2', '-b', `127.0.0.1:${port}`, '-p', pidfile], { cwd: dir });
  const oldWorkers = r.workers();
  const loading = steadyLoad(port);
  await sleep(500);
  return { dir, pidfile, port, r, oldWorkers, loading };
}

test('USR2, WINCH, QUIT: the documented hand-over loses nothing', { timeout: 90_000 }, async () => {
  const { pidfile, port, r, oldWorkers, loading } = await masterUnderLoad();
  r.signal('SIGUSR2');
  const next = await waitFor(() => {
    const pid = Number(readFileSync(pidfile, 'utf8').trim() || 0);
    return pid !== r.pid && pid > 0 && alive(pid) ? pid : null;
  }, 30_000, 'the new master to serve and claim the pidfile');
  track(next);
  assert.equal(readFileSync(`${pidfile}.oldbin`, 'utf8').trim(), String(r.pid));
  r.signal('SIGWINCH');
  await waitFor(() => oldWorkers.every((p) => !alive(p)), 15_000, 'the old workers to leave');
  r.signal('SIGQUIT');
  assert.equal((await r.exited).code, 0);
  await sleep(500);
  assert.equal((await request({ port })).status, 200, 'the new master serves');
  const res = await loading.end();
  process.kill(next, 'SIGTERM');
  await waitFor(() => !alive(next), 15_000, 'the new master to stop');
  assert.equal(res.errors, 0, JSON.stringify(res.errorKinds));
  assert.equal(res.non2xx, 0);
  assert.ok(res.ok > 200);
  assert.equal(existsSync(`${pidfile}.oldbin`), false);
});

test('`arbiter upgrade` does the hand-over in one step', { timeout: 90_000 }, async () => {
  const { dir, pidfile, port, r, oldWorkers, loading } = await masterUnderLoad();
  const up = run(['upgrade', '-p', pidfile], { cwd: dir });
  const { code } = await up.exited;
  assert.equal(code, 0, up.stderr() + up.stdout() + r.stderr().slice(-4000));
  assert.match(up.stdout(), /upgraded: master \d+ -> \d+/);
  const next = Number(readFileSync(pidfile, 'utf8').trim());
  track(next);
  assert.notEqual(next, r.pid);
  assert.equal(alive(r.pid), false);
  for (const w of oldWorkers) assert.equal(alive(w), false);
  assert.equal((await request({ port })).status, 200);
  const res = await loading.end();
  process.kill(next, 'SIGTERM');
  await waitFor(() => !alive(next), 15_000, 'the new master to stop');
  assert.equal(res.errors, 0, JSON.stringify(res.errorKinds));
  assert.equal(res.non2xx, 0);
});

test('maxRequests 200 with jitter 50 on 2 workers: many recycles, no errors', { timeout: 60_000 }, async () => {
  const port = await freePort();
  const r = await serve([PID_APP, '-w', '2', '-b', `127.0.0.1:${port}`, '--max-requests', '200', '--max-requests-jitter', '50']);
  const res = await load(port, { connections: 50, maxMs: 8000 });
  const recycled = r.logs().filter((l) => l.event === 'worker_retire' && l.reason === 'max-requests').length;
  await stop(r);
  assert.equal(res.errors, 0, JSON.stringify(res.errorKinds));
  assert.equal(res.non2xx, 0);
  assert.ok(recycled >= 5, `only ${recycled} recycles for ${res.ok} requests`);
  assert.ok(res.pids.size >= 5, `served by ${res.pids.size} workers`);
});

test('a worker past maxWorkerMemory is recycled gracefully', { timeout: 60_000 }, async () => {
  const port = await freePort();
  const r = await serve([PID_APP, '-w', '2', '-b', `127.0.0.1:${port}`, '--max-worker-memory', '200MB']);
  const grown = await request({ port }, { path: '/grow?mb=256' });
  const victim = Number(grown.headers['x-pid']);
  const retire = await r.waitLog((l) => l.event === 'worker_retire' && l.worker === victim, 10_000, 'the memory retirement');
  assert.equal(retire.reason, 'memory');
  await waitFor(() => !alive(victim) && r.workers().length === 2, 10_000, 'a replacement');
  const exit = await r.waitLog((l) => l.event === 'worker_exit' && l.worker === victim, 5000, 'its exit line');
  assert.equal(exit.code, 0, 'it left on its own, gracefully');
  await stop(r);
});

test('a worker stuck in a loop is killed after timeout with the request and the stack where it is stuck', { timeout: 60_000 }, async () => {
  const port = await freePort();
  const r = await serve([PID_APP, '-w', '2', '-b', `127.0.0.1:${port}`, '--timeout', '3']);
  const stuck = request({ port }, { path: '/block?why=test', timeoutMs: 20_000 }).catch((e) => e);
  const t0 = Date.now();
  // The other worker answers meanwhile.
  let answered = 0;
  while (Date.now() - t0 < 2500) {
    const reply = await request({ port }, { timeoutMs: 2000 }).catch(() => null);
    if (reply?.status === 200) answered++;
  }
  const line = await r.waitLog((l) => l.event === 'worker_timeout', 5000, 'WORKER TIMEOUT');
  assert.ok(Date.now() - t0 <= 5000 + 500, `killed after ${Date.now() - t0} ms`);
  assert.ok(answered > 0, 'the other worker kept answering');
  assert.match(line.msg, /^WORKER TIMEOUT \(pid:\d+\) silent for \d+\.\d s while serving GET \/block\?why=test/);
  assert.ok((line.stack as string[]).some((f) => f.includes('fixtures/apps/pid.js')), JSON.stringify(line.stack));
  assert.match(line.msg, /at handler \(.*pid\.js:\d+/);
  // The master took the stack through the worker's inspector (src/stack-capture.ts): what
  // the inspector prints is kept out of the log, and its address is nowhere in it.
  assert.ok(!r.stderr().includes('Debugger listening'), 'the inspector lines are not in the log');
  assert.ok(!/ws:\/\/127\.0\.0\.1:\d+\//.test(r.stderr()), 'no inspector address in the log');
  await stuck;
  await waitFor(() => r.workers().length === 2, 5000, 'the replacement');
  await stop(r);
});

test('a worker that comes back after a long stall closes the inspector the master opened, and a second stall is read again', { timeout: 60_000 }, async () => {
  const port = await freePort();
  // timeout 4: the master looks at 2.4 s of silence; a 3.5 s stall is looked at, not killed.
  const r = await serve([PID_APP, '-w', '1', '-b', `127.0.0.1:${port}`, '--timeout', '4', '--log-level', 'debug']);
  const [pid] = r.workers();
  const before = listeningSockets(pid!);
  for (let round = 1; round <= 2; round++) {
    const reply = await request({ port }, { path: '/block?ms=3500', timeoutMs: 20_000 });
    assert.equal(reply.status, 200, 'the stalled request is answered once the loop is free');
    const looks = r.logs().filter((l) => l.event === 'stuck_stack');
    assert.equal(looks.length, round, `round ${round}: the master read where it was stuck`);
    assert.ok((looks.at(-1)!.stack as string[]).some((f) => f.includes('fixtures/apps/pid.js')), JSON.stringify(looks.at(-1)));
    await waitFor(() => listeningSockets(pid!) === before, 3000, `round ${round}: the inspector's port closed again`);
  }
  assert.deepEqual(r.workers(), [pid], 'never killed: it came back within its timeout');
  assert.ok(!r.logs().some((l) => l.event === 'worker_timeout'));
  await stop(r);
});

/** How many listening TCP sockets process `pid` holds (its listener, and its inspector while open). */
function listeningSockets(pid: number): number {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      /* closed meanwhile */
    }
  }
  let n = 0;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[3] === '0A' && inodes.has(f[9]!)) n++;
    }
  }
  return n;
}

test('--reload: a saved change is served soon after; a syntax error keeps the old code serving', { timeout: 60_000 }, async () => {
  const dir = tmpDir();
  versionedApp(dir, 'v1');
  const port = await freePort();
  const r = await serve(['app.js', '-w', '2', '-b', `127.0.0.1:${port}`, '--reload'], { cwd: dir });
  const loading = steadyLoad(port, 10);
  try {
    await r.waitLog((l) => l.event === 'watching', 5000, 'the watcher');
    const before = r.workers();
    versionedApp(dir, 'v2');
    const saved = Date.now();
    await waitFor(() => request({ port }).then((x) => x.body === 'v2'), 10_000, 'v2');
    // The 2 s goal is measured where timing is meaningful; a shared CI machine only gets a bound.
    assert.ok(Date.now() - saved <= 8000, `served after ${Date.now() - saved} ms`);
    // Let the roll-out finish before breaking the code: then only v2 workers are left to keep.
    await waitFor(() => r.workers().length === 2 && before.every((p) => !alive(p)), 15_000, 'the v1 workers to leave');
    writeFileSync(path.join(dir, 'app.js'), 'export default function (req, res) { res.end("v3" ;\n');
    await r.waitLog((l) => l.event === 'worker_boot_failed', 10_000, 'the boot failure of the broken code');
    for (let i = 0; i < 5; i++) assert.equal((await request({ port })).body, 'v2');
    const res = await loading.end();
    assert.equal(res.errors, 0, JSON.stringify(res.errorKinds));
    assert.equal(res.non2xx, 0);
    assert.equal((await stop(r)).code, 0);
  } finally {
    await loading.end();
    if (alive(r.pid)) await stop(r);
  }
});

test('hooks run where documented; one that throws is logged by name and changes nothing', { timeout: 30_000 }, async () => {
  const dir = tmpDir();
  const port = await freePort();
  const trail = path.join(dir, 'trail.log');
  writeFiles(dir, {
    'arbiter.config.mjs': `import { appendFileSync } from 'node:fs';
const note = (what) => appendFileSync(${JSON.stringify(trail)}, what + ' ' + process.pid + '\\n');
export default {
  app: ${JSON.stringify(PID_APP)}, bind: ['127.0.0.1:${port}'], workers: 1,
  onStarting: () => note('onStarting'),
  whenReady: () => note('whenReady'),
  postFork: () => note('postFork'),
  postWorkerInit: () => { note('postWorkerInit'); throw new Error('hook trouble'); },
  preFork: async () => { throw new Error('async hook trouble'); },
  childExit: () => note('childExit'),
  onExit: () => note('onExit'),
};`,
  });
  const r = await serve([], { cwd: dir });
  assert.equal((await request({ port })).status, 200);
  await r.waitLog((l) => l.event === 'hook_failed' && l.hook === 'preFork', 5000, 'preFork failure');
  await r.waitLog((l) => l.event === 'hook_failed' && l.hook === 'postWorkerInit', 5000, 'postWorkerInit failure');
  const worker = r.workers()[0]!;
  await stop(r);
  const lines = readFileSync(trail, 'utf8').trim().split('\n').map((l) => l.split(' '));
  const where = Object.fromEntries(lines.map(([name, pid]) => [name, Number(pid)]));
  assert.equal(where.onStarting, r.pid);
  assert.equal(where.whenReady, r.pid);
  assert.equal(where.postFork, worker);
  assert.equal(where.postWorkerInit, worker);
  assert.equal(where.childExit, r.pid);
  assert.equal(where.onExit, r.pid);
  assert.deepEqual(descendants(r.pid), []);
});
