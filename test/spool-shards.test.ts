/**
 * Where a spool consumer claims next (src/core/brokers/spool-shards.ts): the pure decision.
 * The spool's behaviour on disk, with real processes, is in broker-spool.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chooseShard, SPREAD_SLACK_MS, type ShardView } from '../src/core/brokers/spool-shards.js';

const T = 1_764_000_000_000;
/** A ready name due at T + ms, with sequence `seq`. */
const name = (ms: number, seq = 0): string => `${String(T + ms).padStart(15, '0')}-${seq.toString(36).padStart(8, '0')}-tag.json`;
const v = (head: string | null, busy = false): ShardView => ({ head, busy });

test('chooseShard: nothing due anywhere is -1, alone or not', () => {
  assert.equal(chooseShard([v(null), v(null)], 0, true), -1);
  assert.equal(chooseShard([v(null), v(null, true)], 1, false), -1);
  assert.equal(chooseShard([], -1, false), -1);
});

test('chooseShard: a lone consumer takes the oldest task of the whole queue, wherever it is', () => {
  // Same due time: the producer's sequence decides, so one producer's order is kept exactly.
  const views = [v(name(5, 3)), v(name(5, 1)), v(null), v(name(5, 2))];
  assert.equal(chooseShard(views, 0, true), 1);
  assert.equal(chooseShard(views, 3, true), 1, 'its last shard does not matter');
  assert.equal(chooseShard([v(name(9)), v(name(2), true)], 0, true), 1, 'nor does a busy mark');
});

test('chooseShard: with others about, a consumer keeps to its shard while it is within the slack', () => {
  const views = [v(name(0)), v(name(SPREAD_SLACK_MS)), v(name(10))];
  assert.equal(chooseShard(views, 1, false), 1, 'exactly the slack older elsewhere: stay');
  views[1] = v(name(SPREAD_SLACK_MS + 1));
  const moved = chooseShard(views, 1, false, () => 0.99);
  assert.ok(moved === 0 || moved === 2, `leaves for one of the oldest free shards, went to ${moved}`);
});

test('chooseShard: an empty home sends it to a random free shard among the oldest (stealing)', () => {
  const views = [v(null), v(name(0)), v(name(SPREAD_SLACK_MS + 500)), v(name(300)), v(name(1), true)];
  // Shards 1 and 3 are within the slack of the oldest free task; 2 is not; 4 is busy.
  assert.equal(chooseShard(views, 0, false, () => 0), 1);
  assert.equal(chooseShard(views, 0, false, () => 0.99), 3);
  const seen = new Set<number>();
  for (let i = 0; i < 20; i++) seen.add(chooseShard(views, 0, false, () => i / 20));
  assert.deepEqual([...seen].sort(), [1, 3]);
});

test('chooseShard: shards where others are seen are taken only when nothing else is due', () => {
  const busyHome = [v(name(0), true), v(name(50))];
  assert.equal(chooseShard(busyHome, 0, false), 1, 'a busy home is left for a free shard');
  const allBusy = [v(name(40), true), v(name(10), true), v(null)];
  assert.equal(chooseShard(allBusy, 0, false), 0, 'all busy: stay home');
  assert.equal(chooseShard(allBusy, 2, false), 1, 'all busy and home empty: the oldest busy one');
  assert.equal(chooseShard(allBusy, -1, false), 1);
});
