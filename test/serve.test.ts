// The master and the http worker under real signals and real load.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { FIXTURES, alive, descendants, freePort, load, request, run, serve, sleep, stop, waitFor } from './helpers.ts';

const PID_APP = path.join(FIXTURES, 'apps', 'pid.js');

test('-w 4: four workers are children of the master and all of them serve', { timeout: 30_000 }, async () => {
  const port = await freePort();
  const r = await serve([PID_APP, '-w', '4', '-b', `127.0.0.1:${port}`]);
  try {
    const workers = r.workers();
    assert.equal(workers.length, 4, `children: ${workers}`);
    const seen = new Set<number>();
    await waitFor(async () => {
      const replies = await Promise.all(Array.from({ length: 16 }, () => request({ port })));
      for (const reply of replies) seen.add(Number(reply.headers['x-pid']));
      return seen.size === 4;
    }, 15_000, 'all four workers to answer');
    assert.deepEqual([...seen].sort(), [...workers].sort());
  } finally {
    await stop(r);
  }
});

test('a killed worker is replaced within a second; only its in-flight requests fail', { timeout: 30_000 }, async () => {
  const port = await freePort();
  const r = await serve([PID_APP, '-w', '4', '-b', `127.0.0.1:${port}`]);
  try {
    const connections = 20;
    const loading = load(port, { connections, maxMs: 4000 });
    await sleep(1000);
    const victim = r.workers()[0]!;
    process.kill(victim, 'SIGKILL');
    const killedAt = Date.now();
    await waitFor(() => {
      const now = r.workers();
      return now.length === 4 && !now.includes(victim);
    }, 1000, 'a replacement worker');
    assert.ok(Date.now() - killedAt <= 1000);
    const res = await loading;
    assert.equal(res.non2xx, 0);
    // Each connection the killed worker held can lose at most the one request it carried.
    assert.ok(res.errors <= connections, `errors ${res.errors} ${JSON.stringify(res.errorKinds)}`);
    assert.ok(res.ok > 100, `only ${res.ok} requests succeeded`);
    await r.waitLog((l) => l.event === 'worker_exit' && l.worker === victim && l.signal === 'SIGKILL', 2000, 'the exit line of the killed worker');
  } finally {
    await stop(r);
  }
});

test('TERM under keep-alive load: no errors, exit 0 well within gracefulTimeout, nothing left', { timeout: 30_000 }, async () => {
  const port = await freePort();
  const r = await serve([PID_APP, '-w', '2', '-b', `127.0.0.1:${port}`, '--graceful-timeout', '20']);
  const workers = r.workers();
  const loading = load(port, { connections: 50, maxMs: 8000, until: r.exited });
  // Slow requests in flight when the stop begins must still complete.
  const slow = Array.from({ length: 5 }, () => request({ port }, { path: '/slow?ms=1500' }));
  await sleep(1000);
  const t0 = Date.now();
  const { code } = await stop(r, 'SIGTERM');
  const took = Date.now() - t0;
  const res = await loading;
  const slowReplies = await Promise.all(slow);
  assert.equal(code, 0);
  assert.ok(took < 10_000, `took ${took} ms`);
  assert.equal(res.errors, 0, JSON.stringify(res.errorKinds));
  assert.equal(res.non2xx, 0);
  assert.ok(res.ok > 100, `only ${res.ok} requests`);
  for (const s of slowReplies) assert.equal(s.status, 200);
  for (const w of workers) assert.equal(alive(w), false, `worker ${w} left running`);
  assert.deepEqual(descendants(r.pid), []);
});

test('INT is a quick stop; TTIN and TTOU add and remove a worker', { timeout: 30_000 }, async () => {
  const port = await freePort();
  const r = await serve([PID_APP, '-w', '2', '-b', `127.0.0.1:${port}`]);
  r.signal('SIGTTIN');
  await waitFor(() => r.workers().length === 3, 5000, '3 workers after TTIN');
  // Two signals of one kind sent at once may arrive as one (POSIX merges pending signals).
  r.signal('SIGTTOU');
  await waitFor(() => r.workers().length === 2, 5000, '2 workers after TTOU');
  r.signal('SIGTTOU');
  await waitFor(() => r.workers().length === 1, 5000, '1 worker after a second TTOU');
  assert.equal((await request({ port })).status, 200);
  const { code } = await stop(r, 'SIGINT', 5000);
  assert.equal(code, 0);
  assert.deepEqual(descendants(r.pid), []);
});

test('a crash-looping worker is restarted with growing backoff, not a fork storm', { timeout: 30_000 }, async () => {
  const port = await freePort();
  const r = run([path.join(FIXTURES, 'apps', 'crash.js'), '-w', '2', '-b', `127.0.0.1:${port}`]);
  await r.waitLog((l) => l.event === 'worker_booting', 10_000, 'the first worker');
  await sleep(4000);
  const booted = r.logs().filter((l) => l.event === 'worker_booting').length;
  // Without backoff two workers dying every ~0.4 s would be ~20 spawns.
  assert.ok(booted <= 14, `${booted} workers spawned in 4 s`);
  const loops = r.logs().filter((l) => l.event === 'crash_loop');
  assert.ok(loops.length >= 2, 'the crash loop is logged loudly');
  assert.match(loops.at(-1)!.msg, /WORKER CRASH LOOP/);
  const delays = loops.map((l) => l.delayMs as number);
  assert.ok(delays.at(-1)! > delays[0]!, `delays grow: ${delays}`);
  assert.equal(r.pid > 0 && alive(r.pid), true, 'the master survives its workers');
  const { code } = await stop(r, 'SIGTERM');
  assert.equal(code, 0);
});
