/**
 * Which shard of a spool queue a consumer claims from next: a pure decision, so it can be
 * tested on its own (spool.ts holds the listings it is made from).
 *
 * Alone — no other consumer seen lately — a consumer takes the oldest due task of the whole
 * queue, shard after shard as their heads come up, so one producer and one consumer keep FIFO
 * order exactly. Once it has met another consumer (a claim lost to it, or its claims seen in
 * a listing), it keeps to one shard, its home, where its claims and acks are renames inside a
 * directory nobody else is using: rename(2) locks the directory, and two processes renaming
 * in one directory run at a third of the speed of one. It leaves its home when the home has
 * nothing due, or when another free shard's oldest due task is more than SPREAD_SLACK_MS
 * older than the home's, and then goes to a random free shard among the oldest. Shards where
 * others are seen are taken only when nothing else is due.
 */

/** What a consumer knows of one shard from its cached listing. */
export interface ShardView {
  /** The ready name of the shard's oldest task that is due now, or null when none is. */
  head: string | null;
  /** Another consumer was seen here lately: a claim lost to it, or its claims in the listing. */
  busy: boolean;
}

/**
 * With other consumers about, a consumer stays on its home shard while no free shard's
 * oldest due task is more than this much older than the home's: order across shards is
 * kept within this, and within a shard exactly. Moves cost: 2 workers draining 20 000 tasks
 * due over 10 s did 16.0k tasks/s with 1 s here and 19.2k/s with 5 s (medians of 3 runs, when
 * every move also listed the next shard afresh).
 */
export const SPREAD_SLACK_MS = 5000;

const PAD = 15;
export const dueOf = (readyName: string): number => Number(readyName.slice(0, PAD));

/**
 * The shard to claim from next, or -1 when no shard has a task due. `home` is the shard the
 * consumer claimed from last (-1: none); `alone` says it has seen no other consumer lately.
 */
export function chooseShard(views: readonly ShardView[], home: number, alone: boolean, random: () => number = Math.random): number {
  if (alone) {
    // Ready names sort by due time, then the producer's sequence: the smallest is the oldest.
    let best = -1;
    for (let i = 0; i < views.length; i++) {
      const h = views[i]!.head;
      if (h !== null && (best === -1 || h < views[best]!.head!)) best = i;
    }
    return best;
  }
  let oldestFree = Infinity;
  let oldestBusy = -1;
  for (let i = 0; i < views.length; i++) {
    const v = views[i]!;
    if (v.head === null) continue;
    if (!v.busy) oldestFree = Math.min(oldestFree, dueOf(v.head));
    else if (oldestBusy === -1 || v.head < views[oldestBusy]!.head!) oldestBusy = i;
  }
  const at = home >= 0 && home < views.length ? views[home]! : null;
  if (oldestFree === Infinity) {
    // Every due task is where another consumer is: share its shard, preferably our own.
    return at?.head != null ? home : oldestBusy;
  }
  if (at?.head != null && !at.busy && dueOf(at.head) <= oldestFree + SPREAD_SLACK_MS) return home;
  // A random one of the free shards that hold the oldest work, so consumers that leave their
  // shards at the same moment do not all land on the same next one.
  const near: number[] = [];
  for (let i = 0; i < views.length; i++) {
    const v = views[i]!;
    if (v.head !== null && !v.busy && dueOf(v.head) <= oldestFree + SPREAD_SLACK_MS) near.push(i);
  }
  return near[Math.min(near.length - 1, Math.floor(random() * near.length))]!;
}
