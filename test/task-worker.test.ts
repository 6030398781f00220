/**
 * The `task` worker class end to end: real arbiter processes consuming a real spool and a
 * real Redis (a private redis-server on a free loopback port), real signals, SIGKILL chaos.
 * Handlers (test/fixtures/tasks/handlers.js) append "what id attempt pid" to $TASK_RECORD.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { openBroker } from '../src/core/brokers/open.js';
import type { Broker, BrokerStats } from '../src/core/brokers/types.js';
import { alive, safeKill, serve, sleep, stop, tmpDir, waitFor, type Running } from './helpers.js';
import { HANDLERS, cli, readRecord, startRedis } from './fixtures/tasks/env.js';

let redisUrl = '';
before(async () => {
  redisUrl = await startRedis();
});

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

let seq = 0;
interface Setup {
  kind: 'spool' | 'redis';
  broker: string;
  queue: string;
  dir: string;
  record: string;
  env: NodeJS.ProcessEnv;
  /** Flags that point arbiter and the CLI at this broker and queue. */
  flags: string[];
  open(): Promise<Broker>;
}

function setup(kind: 'spool' | 'redis', label: string): Setup {
  const dir = tmpDir(`arbiter-task-${label}-`);
  dirs.push(dir);
  const broker = kind === 'spool' ? `spool:${path.join(dir, 'spool')}` : redisUrl;
  const queue = `${label}-${process.pid}-${seq++}`;
  return {
    kind,
    broker,
    queue,
    dir,
    record: path.join(dir, 'record.txt'),
    env: { TASK_RECORD: path.join(dir, 'record.txt'), ARBITER_TASK_BACKOFF_MS: '50' },
    flags: ['--broker', broker, '--queue', queue],
    open: () => openBroker(broker, { queue, cwd: dir, consumer: `test:${process.pid}` }),
  };
}

async function enqueueMany(s: Setup, name: string, ids: string[], payload: unknown = {}): Promise<void> {
  const b = await s.open();
  try {
    for (let i = 0; i < ids.length; i += 200) await Promise.all(ids.slice(i, i + 200).map((id) => b.enqueue(name, payload, { id })));
  } finally {
    await b.close();
  }
}

async function stats(s: Setup): Promise<BrokerStats> {
  const b = await s.open();
  try {
    return await b.stats();
  } finally {
    await b.close();
  }
}

const EMPTY: BrokerStats = { ready: 0, delayed: 0, inFlight: 0, dead: 0 };

function startTask(s: Setup, extra: string[]): Promise<Running> {
  return serve([HANDLERS + ':handlers', '-k', 'task', ...s.flags, ...extra], { cwd: s.dir, env: s.env });
}

function doneIds(s: Setup): Set<string> {
  return new Set(readRecord(s.record).filter((l) => l.what === 'done').map((l) => l.id));
}

const ids = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

for (const kind of ['spool', 'redis'] as const) {
  test(`${kind}: 200 tasks processed by -w 2 --concurrency 8, queue empty after`, { timeout: 60_000 }, async () => {
    const s = setup(kind, 'basic');
    const want = ids('b', 200);
    const r = await startTask(s, ['-w', '2', '--concurrency', '8']);
    try {
      await enqueueMany(s, 'record', want, { sleep: 10 });
      await waitFor(() => doneIds(s).size === want.length, 30_000, 'all 200 tasks recorded');
      await waitFor(async () => JSON.stringify(await stats(s)) === JSON.stringify(EMPTY), 10_000, 'an empty queue');
      const done = doneIds(s);
      for (const id of want) assert.ok(done.has(id), `task ${id} was not processed`);
      assert.deepEqual(await stats(s), EMPTY);
      // Both workers took part.
      assert.equal(new Set(readRecord(s.record).map((l) => l.pid)).size, 2);
    } finally {
      assert.equal((await stop(r)).code, 0);
    }
  });

  test(`${kind}: chaos — 2,000 tasks, a random worker SIGKILLed every 0.5 s, none missing`, { timeout: 120_000 }, async () => {
    const s = setup(kind, 'chaos');
    const want = ids('c', 2000);
    await enqueueMany(s, 'record', want, { sleep: 30 });
    // timeout 5 s makes the lease 10 s: the tasks of a killed worker come back within ~15 s.
    const r = await startTask(s, ['-w', '3', '--concurrency', '8', '--timeout', '5']);
    let kills = 0;
    try {
      const chaosEnd = Date.now() + 25_000;
      while (Date.now() < chaosEnd && doneIds(s).size < want.length) {
        await sleep(500);
        const workers = r.workers().filter(alive);
        if (workers.length === 0) continue;
        if (safeKill(workers[Math.floor(Math.random() * workers.length)]!, 'SIGKILL')) kills++;
      }
      await waitFor(() => doneIds(s).size === want.length, 60_000, `all 2000 tasks recorded after ${kills} kills (have ${doneIds(s).size})`);
      await waitFor(async () => JSON.stringify(await stats(s)) === JSON.stringify(EMPTY), 20_000, 'an empty queue');
      const done = doneIds(s);
      const missing = want.filter((id) => !done.has(id));
      assert.deepEqual(missing, [], 'no task may be missing');
      assert.ok(kills >= 5, `expected real chaos, only ${kills} kills`);
      const runs = readRecord(s.record).filter((l) => l.what === 'done').length;
      // At-least-once: a task whose worker died after it ran and before its ack runs again.
      process.stdout.write(`# ${kind} chaos: ${kills} kills, ${runs - want.length} duplicate runs\n`);
    } finally {
      await stop(r, 'SIGTERM', 30_000);
    }
  });

  test(`${kind}: a task that always throws is dead-lettered after maxRetries + 1 attempts; dlq list/retry`, { timeout: 60_000 }, async () => {
    const s = setup(kind, 'dlq');
    const r = await startTask(s, ['-w', '1', '--max-retries', '2']);
    try {
      const enq = await cli(['enqueue', 'fail', '{"to":"x@example.com"}', '--id', 'doomed', ...s.flags], { cwd: s.dir });
      assert.equal(enq.code, 0, enq.stderr);
      assert.equal(enq.stdout.trim(), 'doomed');
      await waitFor(async () => (await stats(s)).dead === 1, 20_000, 'the task in the DLQ');
      await sleep(300);
      const runs = readRecord(s.record).filter((l) => l.id === 'doomed');
      assert.deepEqual(runs.map((l) => l.attempt), [1, 2, 3], 'exactly maxRetries + 1 attempts');
      assert.deepEqual(await stats(s), { ...EMPTY, dead: 1 });

      const listed = await cli(['dlq', 'list', '--json', ...s.flags], { cwd: s.dir });
      assert.equal(listed.code, 0, listed.stderr);
      const dead = JSON.parse(listed.stdout) as { task: { id: string; name: string; payload: unknown; attempt: number; history: { attempt: number; error: string }[] }; error: string }[];
      assert.equal(dead.length, 1);
      assert.equal(dead[0]!.task.id, 'doomed');
      assert.equal(dead[0]!.task.name, 'fail');
      assert.deepEqual(dead[0]!.task.payload, { to: 'x@example.com' });
      assert.equal(dead[0]!.task.attempt, 3);
      assert.match(dead[0]!.error, /boom on attempt 3/);
      assert.deepEqual(dead[0]!.task.history.map((h) => h.attempt), [1, 2, 3]);
      assert.match(dead[0]!.task.history[0]!.error, /boom on attempt 1/);

      const text = await cli(['dlq', 'list', ...s.flags], { cwd: s.dir });
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.stdout, /^ID\s+NAME\s+ATTEMPTS\s+DEAD AT\s+LAST ERROR$/m);
      assert.match(text.stdout, /doomed\s+fail\s+3\s+\S+\s+Error: boom on attempt 3/);

      const retried = await cli(['dlq', 'retry', 'doomed', ...s.flags], { cwd: s.dir });
      assert.equal(retried.code, 0, retried.stderr);
      assert.match(retried.stdout, /sent back 1 dead task/);
      // Attempted again from attempt 1, and dead again after three more attempts.
      await waitFor(() => readRecord(s.record).filter((l) => l.id === 'doomed').length === 6, 20_000, 'three more attempts');
      await waitFor(async () => (await stats(s)).dead === 1, 10_000, 'the task back in the DLQ');
      assert.deepEqual(readRecord(s.record).filter((l) => l.id === 'doomed').map((l) => l.attempt), [1, 2, 3, 1, 2, 3]);

      const purged = await cli(['dlq', 'purge', ...s.flags], { cwd: s.dir });
      assert.equal(purged.code, 0, purged.stderr);
      assert.match(purged.stdout, /purged 1 dead task/);
      const st = await cli(['dlq', 'stats', ...s.flags], { cwd: s.dir });
      assert.match(st.stdout, /ready 0, delayed 0, in flight 0, dead 0/);
    } finally {
      await stop(r);
    }
  });

  test(`${kind}: TERM with 50 long tasks in flight drains them all, none twice, none lost`, { timeout: 60_000 }, async () => {
    const s = setup(kind, 'drain');
    const r = await startTask(s, ['-w', '2', '--concurrency', '25', '--graceful-timeout', '20']);
    const want = ids('d', 50);
    await enqueueMany(s, 'slow', want, { ms: 2000 });
    await waitFor(() => readRecord(s.record).filter((l) => l.what === 'start').length === 50, 10_000, '50 tasks started');
    const t0 = Date.now();
    const { code } = await stop(r, 'SIGTERM', 25_000);
    assert.equal(code, 0);
    const lines = readRecord(s.record);
    const starts = lines.filter((l) => l.what === 'start').map((l) => l.id);
    const dones = lines.filter((l) => l.what === 'done').map((l) => l.id);
    assert.equal(starts.length, 50, 'no task started twice');
    assert.deepEqual([...dones].sort(), [...want].sort(), 'every task in flight finished before exit');
    assert.ok(Date.now() - t0 < 20_000);
    assert.deepEqual(await stats(s), EMPTY);
    assert.ok(r.logs().some((l) => l.event === 'task_drained'), 'workers logged the drain');
  });

  test(`${kind}: recycling (maxRequests) and HUP retire workers gracefully; every task runs exactly once`, { timeout: 60_000 }, async () => {
    const s = setup(kind, 'recycle');
    const r = await startTask(s, ['-w', '2', '--concurrency', '4', '--max-requests', '40']);
    try {
      const want = ids('r', 400);
      await enqueueMany(s, 'record', want, { sleep: 50 });
      await r.waitLog((l) => l.event === 'worker_retire', 20_000, 'a worker retiring for maxRequests');
      await waitFor(() => doneIds(s).size >= 200, 20_000, '200 tasks done');
      r.signal('SIGHUP');
      await waitFor(() => doneIds(s).size === want.length, 30_000, 'all 400 tasks recorded');
      await waitFor(async () => JSON.stringify(await stats(s)) === JSON.stringify(EMPTY), 10_000, 'an empty queue');
      const runs = readRecord(s.record).filter((l) => l.what === 'done');
      assert.equal(runs.length, want.length, 'no task ran twice');
      const byPid = new Map<number, number>();
      for (const l of runs) byPid.set(l.pid, (byPid.get(l.pid) ?? 0) + 1);
      assert.ok(byPid.size >= 3, `workers were replaced along the way: ${JSON.stringify([...byPid])}\n${r.logs().filter((l) => l.role === 'master').map((l) => l.msg).join('\n')}`);
      assert.ok(r.logs().some((l) => l.event === 'reload'), 'HUP reloaded');
      assert.ok(!r.logs().some((l) => l.event === 'task_released'), 'nothing had to be released');
    } finally {
      assert.equal((await stop(r)).code, 0);
    }
  });

  test(`${kind}: a handler stuck in a synchronous loop is killed by timeout, named, and delivered again`, { timeout: 60_000 }, async () => {
    const s = setup(kind, 'spin');
    const r = await startTask(s, ['-w', '1', '--timeout', '3']);
    try {
      await enqueueMany(s, 'spin', ['stuck-1']);
      const line = await r.waitLog((l) => l.event === 'worker_timeout', 15_000, 'a worker_timeout event');
      assert.match(String(line.working), /task spin id=stuck-1/);
      assert.match(line.msg, /WORKER TIMEOUT .*task spin id=stuck-1/);
      // The lease (2 × timeout) expires and a fresh worker runs attempt 2.
      await waitFor(() => readRecord(s.record).some((l) => l.what === 'done' && l.id === 'stuck-1'), 30_000, 'attempt 2 done');
      const runs = readRecord(s.record).filter((l) => l.id === 'stuck-1');
      assert.deepEqual(runs.map((l) => `${l.what}:${l.attempt}`), ['spin:1', 'spin:2', 'done:2']);
      assert.notEqual(runs[0]!.pid, runs[2]!.pid, 'attempt 2 ran in a fresh worker');
      await waitFor(async () => JSON.stringify(await stats(s)) === JSON.stringify(EMPTY), 10_000, 'an empty queue');
    } finally {
      await stop(r);
    }
  });
}

test('spool: unknown names and bad payloads go to the DLQ with a reason; enqueue() from the package; taskTimeout', { timeout: 60_000 }, async () => {
  const s = setup('spool', 'misc');
  const spool = s.broker;
  const prev = { ...process.env };
  const { enqueue, closeBrokers } = await import('../src/index.js');
  const r = await startTask(s, ['-w', '1', '--task-timeout', '1', '--max-retries', '0']);
  try {
    const handle = await enqueue('record', { n: 1 }, { broker: spool, queue: s.queue });
    const id = handle.id;
    assert.match(id, /^[0-9a-f-]{36}$/);
    assert.equal(`${handle}`, id, 'a handle stands for its id in a string');
    await enqueue('sendEmai', { to: 'a' }, { broker: spool, queue: s.queue, id: 'typo' });
    // Env defaults: ARBITER_BROKER / ARBITER_QUEUE.
    process.env.ARBITER_BROKER = spool;
    process.env.ARBITER_QUEUE = s.queue;
    await enqueue('record', {}, { id: 'via-env', delay: 200 });
    await enqueue('hang', {}, { id: 'hang' });
    await enqueue('cooperative', {}, { id: 'coop' });
    await waitFor(() => doneIds(s).has(id) && doneIds(s).has('via-env'), 10_000, 'tasks from enqueue() done');
    await waitFor(async () => (await stats(s)).dead === 3, 10_000, 'three dead tasks');
    const b = await s.open();
    const dead = await b.listDead();
    await b.close();
    const byId = new Map(dead.map((d) => [d.task.id, d]));
    assert.match(byId.get('typo')!.error, /unknown task name "sendEmai"/);
    assert.match(byId.get('hang')!.error, /timed out after 1 s/);
    assert.match(byId.get('coop')!.error, /timed out after 1 s/);
    // The worker is still fine: its slots were freed.
    await enqueue('record', {}, { id: 'after' });
    await waitFor(() => doneIds(s).has('after'), 10_000, 'a task after the timeouts');
  } finally {
    process.env = prev;
    await closeBrokers();
    await stop(r);
  }
});

test('redis: unparsable entries are dead-lettered; one function handles every name', { timeout: 30_000 }, async () => {
  const s = setup('redis', 'raw');
  const { Redis } = await import('ioredis');
  const redis = new Redis(redisUrl);
  try {
    await redis.xadd(`arbiter:${s.queue}`, '*', 't', '{not json');
    await enqueueMany(s, 'whatever', ['w1']);
    const r = await serve([HANDLERS, '-k', 'task', ...s.flags], { cwd: s.dir, env: s.env });
    try {
      await waitFor(() => readRecord(s.record).some((l) => l.what === 'any:whatever' && l.id === 'w1'), 10_000, 'the default export ran');
      await waitFor(async () => (await stats(s)).dead === 1, 10_000, 'the raw entry dead-lettered');
      const listed = await cli(['dlq', 'list', '--json', ...s.flags], { cwd: s.dir });
      const dead = JSON.parse(listed.stdout) as { error: string; raw?: string }[];
      assert.match(dead[0]!.error, /unparsable task/);
      assert.equal(dead[0]!.raw, '{not json');
    } finally {
      await stop(r);
    }
  } finally {
    redis.disconnect();
  }
});

test('bad exports, bad brokers and bad CLI input fail with one clear line', { timeout: 30_000 }, async () => {
  const dir = tmpDir('arbiter-task-bad-');
  dirs.push(dir);
  const { run } = await import('./helpers.js');
  const bad = run([HANDLERS + ':notHandlers', '-k', 'task', '--broker', `spool:${dir}/s`], { cwd: dir });
  const res = await bad.exited;
  assert.equal(res.code, 3);
  assert.match(bad.stderr(), /export .*handlers\.js:notHandlers is an object with no handler functions \(keys: port, name\), not task handlers/);

  const badBroker = run([HANDLERS + ':handlers', '-k', 'task', '--broker', 'amqp://x'], { cwd: dir });
  assert.equal((await badBroker.exited).code, 2);
  assert.match(badBroker.stderr(), /invalid value "amqp:\/\/x" for broker/);

  const json = await cli(['enqueue', 'sendEmail', '{"to":', '--broker', `spool:${dir}/s`], { cwd: dir });
  assert.equal(json.code, 2);
  assert.match(json.stderr, /^arbiter: error: invalid JSON payload for task "sendEmail": /m);
  const flag = await cli(['dlq', 'list', '--jsn', '--broker', `spool:${dir}/s`], { cwd: dir });
  assert.equal(flag.code, 2);
  assert.match(flag.stderr, /unknown option --jsn .* did you mean --json\?/);
  const sub = await cli(['dlq', 'lst'], { cwd: dir });
  assert.equal(sub.code, 2);
  assert.match(sub.stderr, /did you mean "list"/);
});
