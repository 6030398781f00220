import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { openBroker } from '../src/core/brokers/open.js';
import type { Delivery } from '../src/core/brokers/types.js';
import { brokerSuite, exited, REPO, spawnFixture, uniqueQueue } from './fixtures/brokers/suite.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'arbiter-spool-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

brokerSuite('spool', {
  url: () => 'spool:spool',
  cwd: () => dir,
  injectRaw: async (queue, text) => {
    // A ready name that sorts first in its shard, like any task file would.
    fs.writeFileSync(path.join(dir, 'spool', queue, 'shards', '00', `${'0'.repeat(15)}-hand-written.json`), text);
  },
});

test('spool: an enqueued task survives SIGKILL of its producer right after enqueue resolved', { timeout: 20_000 }, async () => {
  const queue = uniqueQueue('durable');
  const { child, line } = spawnFixture(path.join(REPO, 'test/fixtures/brokers/enqueue.ts'), { url: 'spool:spool', queue, cwd: dir, id: 'must-survive' });
  assert.equal(await line(), 'enqueued must-survive');
  child.kill('SIGKILL');
  assert.equal(await exited(child), 'SIGKILL');
  const b = await openBroker('spool:spool', { queue, cwd: dir, consumer: 'after-crash', leaseMs: 30_000 });
  try {
    const [d] = await b.fetch(10, 2000);
    assert.equal(d?.task.id, 'must-survive');
    assert.deepEqual(d.task.payload, { ok: true });
    await b.ack(d);
  } finally {
    await b.close();
  }
});

test('spool: relative paths resolve against cwd; bad names and URLs are refused', { timeout: 10_000 }, async () => {
  const b = await openBroker('spool:nested/dir', { queue: 'q1', cwd: dir });
  await b.enqueue('x', 1);
  await b.close();
  const shards = path.join(dir, 'nested/dir/q1/shards');
  assert.equal(fs.readdirSync(shards).flatMap((s) => fs.readdirSync(path.join(shards, s)).filter((f) => f.endsWith('.json'))).length, 1);
  await assert.rejects(openBroker('spool:x', { queue: '../escape', cwd: dir }), /invalid queue/);
  await assert.rejects(openBroker('amqp://x', { queue: 'q', cwd: dir }), /unknown broker/);
});

test('spool: 2,000 tasks with several brokers in one process, nothing lost or doubled', { timeout: 30_000 }, async () => {
  const queue = uniqueQueue('bulk');
  const brokers = await Promise.all([0, 1, 2].map((i) => openBroker('spool:spool', { queue, cwd: dir, consumer: `b${i}`, leaseMs: 30_000 })));
  try {
    for (let i = 0; i < 2000; i += 250) await Promise.all(Array.from({ length: 250 }, (_, k) => brokers[0]!.enqueue('t', { i: i + k })));
    const seen: number[] = [];
    await Promise.all(
      brokers.map(async (b) => {
        for (let idle = 0; idle < 3; ) {
          const batch = await b.fetch(64, 100);
          if (batch.length === 0) idle++;
          for (const d of batch) seen.push((d.task.payload as { i: number }).i);
          await Promise.all(batch.map((d) => b.ack(d)));
        }
      }),
    );
    assert.equal(seen.length, 2000);
    assert.equal(new Set(seen).size, 2000);
  } finally {
    await Promise.all(brokers.map((b) => b.close()));
  }
});

// ------------------------------------------------------------------ the sharded layout

const CONSUMER = path.join(REPO, 'test/fixtures/brokers/consumer.ts');
const shardsOf = (queue: string): string => path.join(dir, 'spool', queue, 'shards');
/** task id → shard name, for every ready file of the queue. */
function whereIs(queue: string): Map<string, string> {
  const at = new Map<string, string>();
  for (const s of fs.readdirSync(shardsOf(queue))) {
    for (const f of fs.readdirSync(path.join(shardsOf(queue), s))) {
      if (f.endsWith('.json')) at.set((JSON.parse(fs.readFileSync(path.join(shardsOf(queue), s, f), 'utf8')) as { id: string }).id, s);
    }
  }
  return at;
}

test('spool: a producer spreads its tasks over the 16 shards, each a ready file named by due time', { timeout: 10_000 }, async () => {
  const queue = uniqueQueue('spread');
  const b = await openBroker('spool:spool', { queue, cwd: dir });
  try {
    for (let i = 0; i < 64; i++) await b.enqueue('t', { i });
    const shards = fs.readdirSync(shardsOf(queue)).sort();
    assert.deepEqual(shards, Array.from({ length: 16 }, (_, i) => String(i).padStart(2, '0')));
    for (const s of shards) {
      const ready = fs.readdirSync(path.join(shardsOf(queue), s)).filter((f) => /^\d{15}-[^~]+\.json$/.test(f));
      assert.equal(ready.length, 4, `shard ${s} holds ${ready.length}`);
    }
    assert.deepEqual(await b.stats(), { ready: 64, delayed: 0, inFlight: 0, dead: 0 });
  } finally {
    await b.close();
  }
});

test('spool: two consumer processes keep to shards of their own instead of taking turns in each', { timeout: 60_000 }, async () => {
  const queue = uniqueQueue('apart');
  const b = await openBroker('spool:spool', { queue, cwd: dir });
  try {
    for (let i = 0; i < 3200; i += 400) await Promise.all(Array.from({ length: 400 }, (_, k) => b.enqueue('job', { i: i + k })));
    const at = whereIs(queue);
    const kids = [0, 1].map((k) => spawnFixture(CONSUMER, { url: 'spool:spool', queue, cwd: dir, consumer: `apart${k}`, leaseMs: 30_000, mode: 'consume', idleExitMs: 1500 }));
    for (const k of kids) assert.equal(await k.line(), 'ready');
    for (const k of kids) k.child.stdin!.write('go\n');
    const got = await Promise.all(kids.map(async (k) => (JSON.parse(await k.line()) as { ids: string[] }).ids));
    for (const k of kids) assert.equal(await exited(k.child), 0);
    assert.equal(new Set(got.flat()).size, 3200);
    assert.equal(got.flat().length, 3200, 'a task was processed twice');
    // Per shard, the share of its tasks that the consumer taking most of them took. Taking
    // turns in every shard would make it about a half.
    const per = new Map<string, [number, number]>();
    got.forEach((ids, k) => {
      for (const id of ids) {
        const c = per.get(at.get(id)!) ?? [0, 0];
        c[k]!++;
        per.set(at.get(id)!, c);
      }
    });
    const shares = [...per.values()].map(([a, b2]) => Math.max(a, b2) / (a + b2));
    const mean = shares.reduce((a, s) => a + s, 0) / shares.length;
    assert.ok(mean > 0.75, `mean share of a shard's majority consumer ${mean.toFixed(2)}: ${shares.map((s) => s.toFixed(2)).join(' ')}`);
    for (const ids of got) assert.ok(ids.length > 200, `a consumer got only ${ids.length}`);
  } finally {
    await b.close();
  }
});

test('spool: a consumer that has met another still drains every shard when its own runs dry', { timeout: 20_000 }, async () => {
  const queue = uniqueQueue('steal');
  const [a, b] = await Promise.all(['steal-a', 'steal-b'].map((consumer) => openBroker('spool:spool', { queue, cwd: dir, consumer, leaseMs: 30_000 })));
  try {
    const ids = new Set<string>();
    for (let i = 0; i < 160; i++) ids.add(await a!.enqueue('t', { i }));
    const at = whereIs(queue);
    // a's claims, live: b will see them in its listings. fetch() returns up to its max.
    const held: Delivery[] = [];
    while (held.length < 5) held.push(...(await a!.fetch(5 - held.length, 1000)));
    const taken: string[] = [];
    for (let idle = 0; idle < 3; ) {
      const batch = await b!.fetch(16, 100);
      if (batch.length === 0) idle++;
      for (const d of batch) taken.push(d.task.id);
      await Promise.all(batch.map((d) => b!.ack(d)));
    }
    assert.equal(taken.length, 155);
    assert.deepEqual(new Set([...taken, ...held.map((d) => d.task.id)]), ids);
    assert.equal(new Set(taken.map((id) => at.get(id))).size, 16, 'b took from every shard');
    await Promise.all(held.map((d) => a!.ack(d)));
    assert.deepEqual(await b!.stats(), { ready: 0, delayed: 0, inFlight: 0, dead: 0 });
  } finally {
    await Promise.all([a!.close(), b!.close()]);
  }
});

test('spool: the claims of a SIGKILLed consumer process come back after its lease, the rest is not held up', { timeout: 30_000 }, async () => {
  const queue = uniqueQueue('crash');
  const p = await openBroker('spool:spool', { queue, cwd: dir, consumer: 'crash-producer' });
  try {
    for (let i = 0; i < 200; i++) await p.enqueue('job', { i });
    const hang = spawnFixture(CONSUMER, { url: 'spool:spool', queue, cwd: dir, consumer: 'crash-victim', leaseMs: 1500, mode: 'hang', claim: 20 });
    const { claimed } = JSON.parse(await hang.line()) as { claimed: string[] };
    assert.equal(claimed.length, 20);
    hang.child.kill('SIGKILL');
    assert.equal(await exited(hang.child), 'SIGKILL');
    assert.equal((await p.stats()).inFlight, 20);
    const c = spawnFixture(CONSUMER, { url: 'spool:spool', queue, cwd: dir, consumer: 'crash-heir', leaseMs: 1500, mode: 'consume', idleExitMs: 3000 });
    assert.equal(await c.line(), 'ready');
    c.child.stdin!.write('go\n');
    const { ids } = JSON.parse(await c.line()) as { ids: string[] };
    assert.equal(await exited(c.child), 0);
    assert.equal(ids.length, 200);
    assert.equal(new Set(ids).size, 200);
    // The dead one's tasks come back last (after its lease) and as their second attempt.
    assert.deepEqual(new Set(ids.slice(-20)), new Set(claimed));
    assert.deepEqual(await p.stats(), { ready: 0, delayed: 0, inFlight: 0, dead: 0 });
  } finally {
    await p.close();
  }
});

test('spool: a spool written before shards (ready/, claimed/, free/) is moved into the shards and consumed', { timeout: 30_000 }, async () => {
  const queue = uniqueQueue('legacy');
  const q = path.join(dir, 'spool', queue);
  for (const d of ['ready', 'claimed', 'free', 'tmp', 'results']) fs.mkdirSync(path.join(q, d), { recursive: true });
  // What the version before shards wrote: ready names, claims named by lease expiry and
  // consumer, free files under any name. One claim expired (its consumer died), one is live.
  const now = Date.now();
  const pad = (n: number): string => String(n).padStart(15, '0');
  const record = (id: string, attempt = 1): string => JSON.stringify({ id, name: 'job', payload: { id }, attempt, enqueuedAt: now - 60_000, history: [] });
  const ready = Array.from({ length: 300 }, (_, i) => `old-${i}`);
  ready.forEach((id, i) => fs.writeFileSync(path.join(q, 'ready', `${pad(now - 60_000 + i)}-${i.toString(36).padStart(8, '0')}-oldtag.json`), record(id)));
  fs.writeFileSync(path.join(q, 'ready', `${pad(now + 600_000)}-00000000-later.json`), record('old-delayed'));
  fs.writeFileSync(path.join(q, 'claimed', `${pad(now - 1000)}~deadhost:1~${pad(now - 90_000)}-00000001-oldtag.json`), record('old-expired'));
  fs.writeFileSync(path.join(q, 'claimed', `${pad(now + 600_000)}~livehost:2~${pad(now - 90_000)}-00000002-oldtag.json`), record('old-live'));
  fs.writeFileSync(path.join(q, 'free', 'oldtag-1'), 'x'.repeat(100));

  const c = spawnFixture(CONSUMER, { url: 'spool:spool', queue, cwd: dir, consumer: 'legacy-c', leaseMs: 30_000, mode: 'consume', idleExitMs: 1500 });
  assert.equal(await c.line(), 'ready');
  // Opening the queue moved everything: the old directories are gone, the files in shards.
  for (const d of ['ready', 'claimed', 'free']) assert.equal(fs.existsSync(path.join(q, d)), false, `${d}/ is still there`);
  const shardFiles = fs.readdirSync(path.join(q, 'shards')).flatMap((s) => fs.readdirSync(path.join(q, 'shards', s)).map((f) => [s, f] as const));
  assert.equal(shardFiles.filter(([, f]) => f.endsWith('.json')).length, 303);
  assert.equal(fs.readdirSync(path.join(q, 'shards')).flatMap((s) => fs.readdirSync(path.join(q, 'shards', s, 'free'))).length, 1, 'the free file is kept for reuse');
  c.child.stdin!.write('go\n');
  const { ids } = JSON.parse(await c.line()) as { ids: string[] };
  assert.equal(await exited(c.child), 0);
  // The expired claim was reaped (as its next attempt) and run with the ready ones; the live
  // claim and the delayed task wait.
  assert.deepEqual(new Set(ids), new Set([...ready, 'old-expired']));
  assert.equal(ids.length, 301);
  const b = await openBroker('spool:spool', { queue, cwd: dir, consumer: 'legacy-check', leaseMs: 30_000 });
  try {
    assert.deepEqual(await b.stats(), { ready: 0, delayed: 1, inFlight: 1, dead: 0 });
    // The master hands back a dead consumer's claims by name: that works on a moved claim too.
    assert.equal(await b.releaseConsumer('livehost:2', 'gone'), 1);
    const [d] = await b.fetch(5, 2000);
    assert.equal(d?.task.id, 'old-live');
    assert.equal(d.task.attempt, 2);
    assert.deepEqual(d.task.history.map((h) => h.error), ['gone']);
    await b.ack(d);
  } finally {
    await b.close();
  }
});
