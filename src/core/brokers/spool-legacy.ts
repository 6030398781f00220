/**
 * Spools written before shards (spool.ts): a queue kept its tasks in three directories,
 *
 *   <queue>/ready/    <dueAt:15>-<seq>-<tag>.json
 *   <queue>/claimed/  <leaseExpiry:15>~<consumer>~<ready name>
 *   <queue>/free/     finished files kept for reuse
 *
 * and the names are the ones a shard uses, so moving a file into a shard under its own name
 * keeps its state: a ready task stays ready with its due time, a claim keeps its lease and
 * consumer (so it expires, or is handed back by releaseConsumer, like any other), and a free
 * file goes to the shard's free/ to be reused. Every move is one rename, so processes migrating at once each move what they
 * win and skip the rest (ENOENT), and a crash halfway leaves every file in one place or the
 * other, to be moved by the next process that opens the queue. The emptied directories are
 * removed, so an old version still running on the spool fails loudly on them instead of
 * enqueueing where nobody looks: upgrade every process of a spool together.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';

const LEGACY = [
  { dir: 'ready', name: /^\d{15}-[^~/]+\.json$/, to: '' },
  { dir: 'claimed', name: /^\d{15}~[^~/]*~\d{15}-[^~/]+\.json$/, to: '' },
  { dir: 'free', name: /^[^~/]+$/, to: 'free' },
] as const;

/** Whether an old layout's directories are still there (one stat each). */
export async function hasLegacy(queueDir: string): Promise<boolean> {
  for (const l of LEGACY) {
    if (await fsp.stat(path.join(queueDir, l.dir)).then(
      () => true,
      () => false,
    ))
      return true;
  }
  return false;
}

/**
 * Moves an old layout's files into `shardDirs` (spread round robin) and removes the emptied
 * directories; returns how many files this process moved.
 */
export async function migrateLegacy(queueDir: string, shardDirs: readonly string[]): Promise<number> {
  let moved = 0;
  for (const l of LEGACY) {
    const from = path.join(queueDir, l.dir);
    let names: string[];
    try {
      names = await fsp.readdir(from);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    for (const n of names) {
      if (!l.name.test(n)) continue;
      const to = shardDirs[moved % shardDirs.length]!;
      try {
        await fsp.rename(path.join(from, n), path.join(to, l.to, n));
        moved++;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
    // Files it does not know (a stray editor backup) keep the directory, and are left alone.
    await fsp.rmdir(from).catch(() => undefined);
  }
  if (moved > 0) {
    // The renames are atomic; make them durable too, as an enqueue is.
    for (const dir of [...shardDirs, queueDir]) {
      const fh = await fsp.open(dir, 'r');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
  }
  return moved;
}
