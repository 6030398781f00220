/**
 * Task results (`resultTtl`), `enqueue()`'s handle and `arbiter result`, on both brokers;
 * and several queues per worker in priority order. Real arbiters, a real redis-server.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { serve, startRedis, stop, tmpDir, waitFor, writeFiles, type Running } from './helpers.ts';
import { cli } from './fixtures/tasks/env.ts';

const { enqueue, resultOf, closeBrokers, TaskFailedError, ResultTimeoutError } = await import('../src/index.ts');

let redisUrl = '';
before(async () => {
  redisUrl = await startRedis();
});
after(() => closeBrokers());

const HANDLERS = `
import { appendFileSync } from 'node:fs';
export const handlers = {
  double: async ({ n }) => ({ n: n * 2 }),
  boom: async () => { throw new Error('boom'); },
  // Fails its first attempt, then returns which attempt it was.
  flaky: async (p, ctx) => { if (ctx.attempt < 2) throw new Error('not yet'); return { attempt: ctx.attempt }; },
  big: async ({ size }) => 'x'.repeat(size),
  nothing: () => undefined,
  cyclic: async () => { const a = {}; a.self = a; return a; },
  order: async (p, ctx) => { appendFileSync(process.env.ORDER, ctx.id + '\\n'); },
};
`;

let seq = 0;
function setup(broker: 'redis' | 'spool') {
  const dir = tmpDir(`arbiter-results-${broker}-`);
  writeFiles(dir, { 'handlers.mjs': HANDLERS });
  const url = broker === 'redis' ? redisUrl : `spool:${path.join(dir, 'spool')}`;
  const queue = `results-${process.pid}-${seq++}`;
  return { dir, url, queue, order: path.join(dir, 'order.txt') };
}

function start(s: ReturnType<typeof setup>, extra: string[]): Promise<Running> {
  return serve(['handlers.mjs:handlers', '-k', 'task', '--broker', s.url, '--queue', s.queue, '--graceful-timeout', '5', ...extra], {
    cwd: s.dir,
    env: { ARBITER_TASK_BACKOFF_MS: '50', ORDER: s.order },
  });
}

for (const [broker, count] of [['redis', 1000], ['spool', 200]] as const) {
  test(`${broker}: ${count} tasks with resultTtl, every result() is the handler's value; a task that always throws gives its final error after maxRetries + 1 attempts`, { timeout: 120_000 }, async () => {
    const s = setup(broker);
    const r = await start(s, ['-w', '2', '--concurrency', '20', '--result-ttl', '60', '--max-result-size', '1000', '--max-retries', '2']);
    try {
      const where = { broker: s.url, queue: s.queue };
      const handles = [];
      for (let i = 0; i < count; i += 250)
        handles.push(...(await Promise.all(Array.from({ length: Math.min(250, count - i) }, (_, k) => enqueue('double', { n: i + k }, where)))));
      const values = await Promise.all(handles.map((h) => h.result({ timeout: 60_000 })));
      assert.equal(values.length, count);
      values.forEach((v, i) => assert.deepEqual(v, { n: 2 * i }, `task ${i}`));

      // Always throws: the error of its last attempt, after maxRetries + 1 = 3 attempts.
      const boom = await enqueue('boom', {}, where);
      await assert.rejects(boom.result({ timeout: 20_000 }), (err: unknown) => {
        assert.ok(err instanceof TaskFailedError);
        assert.equal(err.message, 'Error: boom');
        assert.equal(err.attempts, 3);
        return true;
      });
      // Retried, then succeeded: the success is what is kept.
      const flaky = await enqueue('flaky', {}, where);
      assert.deepEqual(await flaky.result({ timeout: 20_000 }), { attempt: 2 });
      // undefined is kept as null; too big and not-JSON are errors that say so.
      assert.equal(await (await enqueue('nothing', {}, where)).result({ timeout: 20_000 }), null);
      const big = await enqueue('big', { size: 5000 }, where);
      await assert.rejects(big.result({ timeout: 20_000 }), /the task succeeded, but its result of \d+ bytes is larger than maxResultSize \(1000 bytes\)/);
      assert.equal(await (await enqueue('big', { size: 10 }, where)).result({ timeout: 20_000 }), 'xxxxxxxxxx');
      await assert.rejects((await enqueue('cyclic', {}, where)).result({ timeout: 20_000 }), /return value is not JSON \(TypeError: Converting circular structure/);
      // Unknown name: dead-lettered without running, and the producer hears why.
      await assert.rejects((await enqueue('nosuch', {}, where)).result({ timeout: 20_000 }), /unknown task name "nosuch"/);

      // The id alone is enough; `arbiter result` prints the value, or the error with exit 1.
      assert.deepEqual(await resultOf(handles[7]!.id, where), { n: 14 });
      const ok = await cli(['result', handles[7]!.id, '--broker', s.url, '--queue', s.queue], { cwd: s.dir });
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(ok.stdout, '{"n":14}\n');
      const json = await cli(['result', handles[7]!.id, '--json', '--broker', s.url, '--queue', s.queue], { cwd: s.dir });
      assert.equal(JSON.parse(json.stdout).status, 'succeeded');
      assert.equal(JSON.parse(json.stdout).attempts, 1);
      const failed = await cli(['result', boom.id, '--broker', s.url, '--queue', s.queue], { cwd: s.dir });
      assert.equal(failed.code, 1);
      assert.match(failed.stderr, /^arbiter: error: task \S+ \(boom\) failed after 3 attempts: Error: boom$/m);
      const none = await cli(['result', 'never-enqueued', '--broker', s.url, '--queue', s.queue], { cwd: s.dir });
      assert.equal(none.code, 1);
      assert.match(none.stderr, /no result for task never-enqueued/);
    } finally {
      await stop(r);
    }
  });
}

test('without resultTtl nothing is kept: result() times out with a clear error', { timeout: 60_000 }, async () => {
  const s = setup('redis');
  const r = await start(s, ['-w', '1']);
  try {
    const h = await enqueue('double', { n: 1 }, { broker: s.url, queue: s.queue });
    await assert.rejects(h.result({ timeout: 1500 }), (err: unknown) => err instanceof ResultTimeoutError && /set resultTtl/.test(err.message));
  } finally {
    await stop(r);
  }
});

test('several queues in priority order: a worker takes from the first while it has tasks', { timeout: 60_000 }, async () => {
  const s = setup('redis');
  const hi = `${s.queue}-hi`;
  const lo = `${s.queue}-lo`;
  // Both queues full before the worker starts: it must drain hi before touching lo.
  for (const q of [lo, hi]) await Promise.all(Array.from({ length: 30 }, (_, i) => enqueue('order', {}, { broker: s.url, queue: q, id: `${q}-${i}` })));
  const r = await serve(['handlers.mjs:handlers', '-k', 'task', '--broker', s.url, '--queue', `${hi},${lo}`, '-w', '1', '--concurrency', '1'], {
    cwd: s.dir,
    env: { ORDER: s.order },
  });
  try {
    const lines = await waitFor(() => {
      try {
        const l = readFileSync(s.order, 'utf8').trim().split('\n');
        return l.length >= 60 ? l : null;
      } catch {
        return null;
      }
    }, 30_000, '60 tasks run');
    assert.ok(lines.slice(0, 30).every((id) => id.startsWith(`${hi}-`)), `hi first: ${lines.slice(0, 32).join(' ')}`);
    assert.ok(lines.slice(30).every((id) => id.startsWith(`${lo}-`)));
    // Idle: a task on the second queue is picked up too.
    await enqueue('order', {}, { broker: s.url, queue: lo, id: 'late-lo' });
    await waitFor(() => readFileSync(s.order, 'utf8').includes('late-lo\n'), 10_000, 'the late task on the second queue');
    assert.ok(r.logs().some((l) => l.event === 'task_consuming' && /consuming queues ".*-hi", then ".*-lo"/.test(l.msg)));
  } finally {
    await stop(r);
  }
});
