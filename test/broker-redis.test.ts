import assert from 'node:assert/strict';
import { once } from 'node:events';
import { before, test } from 'node:test';
import { Redis } from 'ioredis';
import { openBroker } from '../src/core/brokers/open.js';
import { brokerSuite, uniqueQueue } from './fixtures/brokers/suite.js';
import { freePort, sleep, startRedis } from './helpers.ts';

let redisUrl = '';
const url = (): string => redisUrl;

before(async () => {
  redisUrl = await startRedis();
});

async function withRedis<T>(fn: (r: Redis) => Promise<T>): Promise<T> {
  const r = new Redis(redisUrl);
  try {
    return await fn(r);
  } finally {
    r.disconnect();
  }
}

brokerSuite('redis', {
  url,
  cwd: () => process.cwd(),
  injectRaw: (queue, text) => withRedis(async (r) => void (await r.xadd(`arbiter:${queue}`, '*', 't', text))),
});

test('redis: acked entries leave the stream; keys are named after the queue', { timeout: 15_000 }, async () => {
  const queue = uniqueQueue('keys');
  const b = await openBroker(url(), { queue, consumer: 'k', leaseMs: 30_000 });
  try {
    for (let i = 0; i < 10; i++) await b.enqueue('t', { i });
    await b.enqueue('t', {}, { delay: 60_000 });
    await withRedis(async (r) => {
      assert.equal(await r.xlen(`arbiter:${queue}`), 10);
      assert.equal(await r.zcard(`arbiter:${queue}:delayed`), 1);
    });
    const got = await b.fetch(64, 1000);
    assert.equal(got.length, 10);
    await Promise.all(got.map((d) => b.ack(d)));
    await withRedis(async (r) => {
      assert.equal(await r.xlen(`arbiter:${queue}`), 0);
      const pending = (await r.xpending(`arbiter:${queue}`, 'arbiter')) as [number];
      assert.equal(pending[0], 0);
    });
  } finally {
    await b.close();
  }
});

test('redis: enqueue beyond maxLen is refused instead of trimming unacked entries', { timeout: 15_000 }, async () => {
  const queue = uniqueQueue('cap');
  const b = await openBroker(url(), { queue, consumer: 'cap', maxLen: 3 });
  try {
    for (let i = 0; i < 3; i++) await b.enqueue('t', { i });
    await assert.rejects(b.enqueue('t', { i: 3 }), /is full/);
    const got = await b.fetch(10, 1000);
    assert.equal(got.length, 3);
    await Promise.all(got.map((d) => b.ack(d)));
    await b.enqueue('t', { i: 4 });
  } finally {
    await b.close();
  }
});

test('redis: a connection ioredis has given up on is dialled again while the broker is open, and not once it is closed', { timeout: 15_000 }, async () => {
  const queue = uniqueQueue('redial');
  const b = await openBroker(url(), { queue, consumer: 'r' });
  const conns = b as unknown as { cmd: Redis; blocking: Redis | null };
  const endedThenReady = async (conn: Redis) => {
    const ended = once(conn, 'end');
    // 'end' is where ioredis leaves a client whose sentinel lookup raced a failover message
    // (keepConnected in redis.ts); a manual disconnect() is the way to put it there at will.
    conn.disconnect();
    await ended;
    await once(conn, 'ready', { signal: AbortSignal.timeout(5000) });
  };
  try {
    assert.deepEqual(await b.fetch(1, 50), [], 'an empty queue: the blocking connection is made');
    assert.ok(conns.blocking);
    await endedThenReady(conns.cmd);
    await b.enqueue('t', { i: 1 });
    await endedThenReady(conns.blocking);
    setTimeout(() => void b.enqueue('t', { i: 2 }), 200);
    const got = [...(await b.fetch(2, 0)), ...(await b.fetch(2, 3000))];
    assert.deepEqual(got.map((d) => (d.task.payload as { i: number }).i).sort(), [1, 2]);
    await Promise.all(got.map((d) => b.ack(d)));
  } finally {
    await b.close();
  }
  await sleep(400);
  assert.equal(conns.cmd.status, 'end', 'a closed broker does not dial again');
});

test('redis: a dead-letter stream with a custom name; an unreachable server fails open()', { timeout: 15_000 }, async () => {
  const queue = uniqueQueue('dlqname');
  const b = await openBroker(url(), { queue, dlq: `${queue}-graveyard`, consumer: 'd' });
  try {
    await b.enqueue('t', {});
    const [d] = await b.fetch(1, 1000);
    await b.deadLetter(d!, 'nope');
    await withRedis(async (r) => assert.equal(await r.xlen(`arbiter:${queue}-graveyard`), 1));
    assert.equal((await b.stats()).dead, 1);
  } finally {
    await b.close();
  }
  const closed = await freePort();
  await assert.rejects(
    openBroker(`redis://127.0.0.1:${closed}/0`, { queue: 'x' }),
    /cannot connect to redis:\/\/127\.0\.0\.1/,
  );
});
