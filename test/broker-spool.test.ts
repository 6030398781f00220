import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { openBroker } from '../src/core/brokers/open.js';
import { brokerSuite, exited, REPO, spawnFixture, uniqueQueue } from './fixtures/brokers/suite.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'arbiter-spool-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

brokerSuite('spool', {
  url: () => 'spool:spool',
  cwd: () => dir,
  injectRaw: async (queue, text) => {
    // A name that sorts first, like any task file would.
    fs.writeFileSync(path.join(dir, 'spool', queue, 'ready', `${'0'.repeat(15)}-hand-written.json`), text);
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
  assert.ok(fs.readdirSync(path.join(dir, 'nested/dir/q1/ready')).length === 1);
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
