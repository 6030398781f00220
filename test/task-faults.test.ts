/**
 * Task workers and their brokers under faults: workers SIGKILLed while they hold tasks
 * (their tasks come back at once, not after a lease), Redis going away and coming back (one
 * line each way, nothing acknowledged lost), enqueue() during an outage, and the start-up
 * warning for a Redis that would lose tasks. Real redis-server processes on loopback.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { openBroker } from '../src/core/brokers/open.js';
import { alive, freePort, safeKill, serve, sleep, startRedis, stop, tmpDir, track, waitFor } from './helpers.ts';
import { HANDLERS, readRecord } from './fixtures/tasks/env.ts';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function done(record: string): Set<string> {
  return new Set(readRecord(record).filter((l) => l.what === 'done').map((l) => l.id));
}

async function enqueueAll(broker: string, queue: string, cwd: string, n: number): Promise<string[]> {
  const b = await openBroker(broker, { queue, cwd });
  const ids = Array.from({ length: n }, (_, i) => `t${i}`);
  try {
    for (let i = 0; i < n; i += 200) await Promise.all(ids.slice(i, i + 200).map((id) => b.enqueue('record', { sleep: 40 }, { id })));
  } finally {
    await b.close();
  }
  return ids;
}

for (const kind of ['spool', 'redis'] as const) {
  test(`${kind}: the tasks of SIGKILLed workers come back at once, not after their lease`, { timeout: 90_000 }, async () => {
    const dir = tmpDir('arbiter-task-faults-');
    dirs.push(dir);
    const broker = kind === 'spool' ? `spool:${path.join(dir, 'spool')}` : await startRedis();
    const record = path.join(dir, 'record.txt');
    const want = await enqueueAll(broker, 'kills', dir, 2000);
    // A lease of a minute: only the master's release can bring a killed worker's tasks back in time.
    const r = await serve([HANDLERS + ':handlers', '-k', 'task', '--broker', broker, '--queue', 'kills', '-w', '3', '--concurrency', '8'], {
      cwd: dir,
      env: { TASK_RECORD: record, ARBITER_TASK_LEASE_MS: '60000' },
    });
    try {
      let kills = 0;
      // Only while a backlog is left: then every live worker holds tasks when it is killed.
      for (let i = 0; i < 10 && done(record).size < want.length - 200; i++) {
        await sleep(300);
        // Serving ones only: a replacement killed while it still boots (a loaded machine can
        // take longer than 300 ms) is a death before serving, which backoff rightly counts.
        const ready = new Set(r.logs().filter((l) => l.event === 'worker_ready').map((l) => l.worker));
        const workers = r.workers().filter((pid) => ready.has(pid) && alive(pid));
        if (workers.length && safeKill(workers[Math.floor(Math.random() * workers.length)]!, 'SIGKILL')) kills++;
      }
      const lastKill = Date.now();
      assert.ok(kills > 0, 'killed workers while tasks were left');
      await waitFor(() => done(record).size === want.length, 20_000, `all 2000 tasks done after ${kills} kills (have ${done(record).size})`);
      // Well inside the 60 s lease; the bench, not this test, says how fast.
      assert.ok(Date.now() - lastKill < 20_000);
      const d = done(record);
      for (const id of want) assert.ok(d.has(id), `task ${id} missing`);
      assert.ok(r.logs().some((l) => l.event === 'tasks_released'), 'the master handed tasks back');
      assert.ok(!r.logs().some((l) => l.event === 'crash_loop'), 'workers killed from outside after serving are no crash loop');
    } finally {
      await stop(r);
    }
  });
}

/** A redis-server with AOF in `dir`, on `port`; restartable on the same port and data. */
function redisWithAof(dir: string, port: number): Promise<ChildProcess> {
  const p = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', ''], { stdio: ['ignore', 'pipe', 'inherit'] });
  track(p.pid!);
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`redis-server did not start:\n${out}`)), 10_000);
    p.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('Ready to accept connections')) {
        clearTimeout(timer);
        p.stdout!.resume();
        resolve(p);
      }
    });
  });
}

test('redis killed and restarted under a task load: one line when it goes, one when it is back, nothing acknowledged lost', { timeout: 90_000 }, async () => {
  const dir = tmpDir('arbiter-outage-');
  dirs.push(dir);
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}/0`;
  let redis = await redisWithAof(dir, port);
  const record = path.join(dir, 'record.txt');
  const r = await serve([HANDLERS + ':handlers', '-k', 'task', '--broker', url, '--queue', 'outage', '-w', '2'], { cwd: dir, env: { TASK_RECORD: record } });
  const producer = await openBroker(url, { queue: 'outage', cwd: dir });
  const acknowledged: string[] = [];
  let failedFast = 0;
  let producing = true;
  const produce = (async () => {
    for (let i = 0; producing; i++) {
      try {
        acknowledged.push(await producer.enqueue('record', {}, { id: `o${i}`, timeout: 1000 }));
      } catch (err) {
        assert.match(String(err), /unreachable|no answer/);
        failedFast++;
      }
      await sleep(5);
    }
  })();
  try {
    await waitFor(() => done(record).size > 50, 10_000, 'tasks flowing');
    redis.kill('SIGKILL');
    await r.waitLog((l) => l.event === 'broker_down', 10_000, 'the outage logged');
    await sleep(2000);
    redis = await redisWithAof(dir, port);
    await r.waitLog((l) => l.event === 'broker_up', 15_000, 'the recovery logged');
    await sleep(1000);
    producing = false;
    await produce;
    await waitFor(() => acknowledged.every((id) => done(record).has(id)), 20_000, `every acknowledged task done (${acknowledged.filter((id) => !done(record).has(id)).length} missing)`);
    assert.ok(failedFast > 0, 'enqueue() failed, bounded, while Redis was away');
    assert.equal(r.logs().filter((l) => l.event === 'broker_down').length, 1);
    assert.equal(r.logs().filter((l) => l.event === 'broker_up').length, 1);
    assert.equal(r.logs().filter((l) => l.level === 'error' && l.event !== 'broker_down').length, 0, 'workers wait quietly');
  } finally {
    producing = false;
    await producer.close();
    await stop(r);
    redis.kill('SIGKILL');
  }
});

test('enqueue() to a Redis that is gone fails within its timeout with a clear line', { timeout: 30_000 }, async () => {
  const dir = tmpDir('arbiter-outage-');
  dirs.push(dir);
  const port = await freePort();
  const redis = await redisWithAof(dir, port);
  const b = await openBroker(`redis://127.0.0.1:${port}/0`, { queue: 'gone', cwd: dir });
  try {
    redis.kill('SIGKILL');
    await sleep(300);
    const t0 = Date.now();
    await assert.rejects(b.enqueue('x', {}, { timeout: 1500 }), /the broker redis:\/\/127\.0\.0\.1:\d+\/0 is unreachable .*waited 1\.5 s/);
    assert.ok(Date.now() - t0 < 5000);
  } finally {
    await b.close();
  }
});

test('the start-up log warns about a Redis that would lose tasks', { timeout: 30_000 }, async () => {
  const url = await startRedis(); // no AOF, no snapshots: the helpers' throw-away Redis
  const dir = tmpDir('arbiter-outage-');
  dirs.push(dir);
  const r = await serve([HANDLERS + ':handlers', '-k', 'task', '--broker', url, '--queue', 'warn'], { cwd: dir });
  try {
    const line = await r.waitLog((l) => l.event === 'broker_durability', 5000, 'the durability warning');
    assert.match(line.msg, /has no persistence .* set appendonly yes/);
  } finally {
    await stop(r);
  }
});
