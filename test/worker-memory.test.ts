// What an idle arbiter keeps: the master's memory-reducing collection once it is ready
// (src/core/settle.ts), and the event-loop delay sampler that replaced perf_hooks' histogram
// in workers (workers/loop-delay.ts). How much memory each saves is measured in bench/footprint.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LoopDelay, delayFigures } from '../workers/loop-delay.ts';
import { SETTLE_MAX_HEAP, settleWhenIdle, shouldSettle } from '../src/core/settle.ts';
import { BIN, EXAMPLES, freePort, request, serve, stop, waitFor } from './helpers.ts';

const HELLO = `${EXAMPLES}/hello.js:handler`;

test('only a small heap is settled', () => {
  assert.equal(shouldSettle(8 * 1024 * 1024), true);
  assert.equal(shouldSettle(SETTLE_MAX_HEAP), false);
  assert.equal(shouldSettle(512 * 1024 * 1024), false);
});

test('the collection waits for a look at which nothing was served since the last, and is given up on a worker busy throughout', { timeout: 10_000 }, async () => {
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  let busy = 0;
  let busyActs = 0;
  const work = setInterval(() => busy++, 5);
  settleWhenIdle(() => busy, 40, 5, () => busyActs++);
  let idleActs = 0;
  let served = 0;
  settleWhenIdle(() => served, 40, 5, () => idleActs++);
  served++; // a request before the first look: not idle yet
  await sleep(60);
  assert.equal(idleActs, 0, 'a request since the last look');
  await sleep(60);
  assert.equal(idleActs, 1, 'idle for a whole look');
  await sleep(300);
  clearInterval(work);
  assert.equal(idleActs, 1, 'once');
  assert.equal(busyActs, 0, 'never while busy, and given up after its looks');
});

test('the master runs one memory-reducing collection once it is ready, and supervises on', { timeout: 60_000 }, async () => {
  const port = await freePort();
  // --trace-gc on the master's own node: V8 prints its collections on the master's stdout.
  const r = await serve([HELLO, '-b', `127.0.0.1:${port}`, '-w', '2'], { cmd: [process.execPath, '--trace-gc', BIN] });
  try {
    const settled = () => r.stdout().split('\n').filter((l) => l.includes('low memory notification'));
    await waitFor(() => settled().length > 0, 10_000, "the master's memory-reducing collection");
    assert.ok(settled().every((l) => l.includes('Mark-Compact (reduce)')), settled().join('\n'));
    await new Promise((resolve) => setTimeout(resolve, 500)); // a notification is a burst of collections
    const first = settled().length;
    for (let i = 0; i < 10; i++) assert.equal((await request({ port })).status, 200);
    r.signal('SIGTTIN');
    await waitFor(() => r.workers().length === 3, 10_000, 'a third worker');
    await new Promise((resolve) => setTimeout(resolve, 1000));
    assert.equal(settled().length, first, 'once');
  } finally {
    await stop(r);
  }
});

test('the loop-delay figures are ms beyond the interval, mean and max, one decimal', () => {
  assert.deepEqual(delayFigures(0, 0, 0), { mean: 0, max: 0 });
  assert.deepEqual(delayFigures(10, 4, 7.04), { mean: 2.5, max: 7 });
  assert.deepEqual(delayFigures(0.3, 3, 0.26), { mean: 0.1, max: 0.3 });
});

test('a blocked event loop shows in the loop delay, and a read starts over', { timeout: 10_000 }, async () => {
  const loop = new LoopDelay(20);
  await new Promise((resolve) => setTimeout(resolve, 100));
  const busyUntil = Date.now() + 150;
  while (Date.now() < busyUntil);
  await new Promise((resolve) => setTimeout(resolve, 60));
  const blocked = loop.read();
  assert.ok(blocked.max >= 100, JSON.stringify(blocked));
  assert.ok(blocked.mean > 0 && blocked.mean <= blocked.max, JSON.stringify(blocked));
  await new Promise((resolve) => setTimeout(resolve, 100));
  const after = loop.read();
  assert.ok(after.max < blocked.max, `the block is not counted again: ${JSON.stringify(after)}`);
});
