/**
 * `spool:PATH` — an embedded, durable broker made of plain files, safe for many processes.
 *
 *   PATH/<queue>/shards/NN/  the queue's tasks, spread over SHARDS directories (00 … 15);
 *                            in each, a task's state is its file's name:
 *       <dueAt:15>-<seq>-<tag>.json                 ready: one immutable file per task
 *       <leaseExpiry:15>~<consumer>~<ready name>    claimed
 *       tmp~<name>                                  being written (then renamed into place)
 *       free/<tag>-<seq>                            finished, kept for reuse by enqueue
 *   PATH/<queue>/tmp/        other files being written (results, dead letters)
 *   PATH/<queue>/results/    <id>.json  a finished task's result (resultTtl): { expiresAt, result }
 *   PATH/<queue>/schedules/<key>/<tick:15>   one empty file per schedule tick enqueued
 *   PATH/<dlq>/              <deadAt:15>-<seq>-<tag>.json        dead tasks with error and history
 *
 * Lexical order of ready names is due time, then the producer's sequence, so the oldest due
 * task of a shard sorts first. Every state change of a task is one `rename(2)` — atomic, so
 * of several processes racing for a file exactly one wins and the others get ENOENT — or a
 * new file written, fsynced and renamed into place, then the old one unlinked. A crash
 * between those two steps leaves both, which only means a task can run twice: at-least-once.
 *
 * Why shards, and the state in the name: Linux serializes renames between directories on one
 * mutex per filesystem, and renames and listings inside one directory on that directory's
 * lock; two consumers claiming from one ready/ into one claimed/ each ran at a third to a half
 * of one consumer's speed. Now a claim, a lease renewal, a release and an enqueue are renames
 * inside one shard directory, and consumers keep to different shards: producers spread their
 * enqueues over the shards (round robin) and a consumer that has met others keeps to a shard
 * of its own, moving on when it runs dry (spool-shards.ts decides where). Order: a lone
 * consumer takes the oldest due task of the whole queue (FIFO for one producer); consumers
 * sharing a queue take each shard in order, and the shards within SPREAD_SLACK_MS of each other.
 *
 * An ack moves the file into its shard's free/: across directories, but it keeps finished
 * files out of the shard's listing, which every claim refresh and stats() reads (readdir of an
 * indexed ext4 directory costs ~0.7 µs per entry, and holds the directory's lock meanwhile).
 * Kept as names in the shard instead, they made listings twice as long and 2 workers slower.
 *
 * Finished task files are not unlinked but kept in free/ and overwritten by the next enqueue
 * into that shard. Unlinking a file whose blocks reached the disk frees those blocks,
 * which costs a journal update and, on filesystems mounted with `discard`, a TRIM: measured
 * at ~280 µs per file against ~15 µs for a rename, it made ack the bottleneck. Reuse also
 * spares enqueue the block allocation. Consumers trim each shard's free files to
 * FREE_PER_SHARD in the background.
 *
 * Spools written before shards (ready/, claimed/, free/ under the queue) are moved into the
 * shards when a process opens the queue, and again by consumers every half lease while those
 * directories exist (spool-legacy.ts).
 */
import { randomBytes } from 'node:crypto';
import fs, { promises as fsp, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import {
  type Broker,
  type BrokerStats,
  type DeadTask,
  type Delivery,
  type EnqueueOptions,
  type KeptResult,
  type ResolvedBrokerOptions,
  type TaskRecord,
  type TaskResult,
} from './types.js';
import { fileSafe, isQueueName, isTaskRecord, LEASE_EXPIRED, newTask, nextAttempt, parseResult, rawTask } from './records.js';
import { errorMessage } from '../errors.js';
import { chooseShard, dueOf, type ShardView } from './spool-shards.js';
import { migrateLegacy, hasLegacy } from './spool-legacy.js';

const PAD = 15;
/** Shard directories of a new queue (consumers use whatever shards/ holds). */
const SHARDS = 16;
const SHARD_NAME = /^\d{2}$/;
const READY_NAME = /^\d{15}-[^~/]+\.json$/;
const CLAIMED_NAME = /^(\d{15})~([^~/]*)~(\d{15}-[^~/]+\.json)$/;
/** READY_NAME.test without the regex: listings test every name, and shards hold thousands. */
function isReady(n: string): boolean {
  if (n.length < 22 || n.charCodeAt(15) !== 45 /* - */ || !n.endsWith('.json') || n.includes('~')) return false;
  for (let i = 0; i < PAD; i++) {
    const c = n.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}
const DEAD_NAME = /^\d{15}-[^~/]+\.json$/;
const TMP_PREFIX = 'tmp~';

/**
 * Readdir of a shard at least this often, even when the cached listing still has work. Also
 * when moving to another shard: listing the next shard afresh on every move (when its
 * listing was over 100 ms old) doubled the names 2 consumers listed while draining 20 000
 * tasks, and cost them ~8% of their throughput; a stale listing costs at most a lost claim,
 * which marks the shard busy and moves the consumer on.
 */
const MIN_LISTING_AGE_FOR_FULL_REFRESH = 1000;
/** Having met another consumer, this one keeps to a shard of its own for this long. */
const CONTENDED_MS = 5000;
/** A shard where another consumer was seen is avoided for this long. */
const BUSY_MS = 1000;
/**
 * Consumers that must share a shard claim from a random spot among its oldest this many
 * batches: apart, they stop racing for the same files.
 */
const SPREAD_BATCHES = 16;
/** A batch of synchronous claims holds the event loop at most about this long. */
const MAX_SYNC_CLAIM_MS = 5;
/** When the cached listing has nothing due, readdir again at most this often. */
const MIN_REFRESH_GAP = 20;
/** Poll interval while waiting, in case fs.watch misses something (network filesystems). */
const WAIT_POLL = 100;
/** Each shard's free files are trimmed back to this many, ... */
const FREE_PER_SHARD = 64;
/** ... once its consumer has claimed nothing for this long, */
const SWEEP_IDLE_MS = 2000;
/** ... or, busy, after moving this many files there since the last trim. */
const SWEEP_BUSY_AFTER = 50_000;
/** Temp files older than this were left by a crashed writer whose call never resolved. */
const STALE_TMP_MS = 3600_000;
/** Consumers remove expired results this often, at most RESULT_SWEEP_MAX files a time. */
const RESULT_SWEEP_MS = 10_000;
const RESULT_SWEEP_MAX = 2000;
/** Tick files kept per schedule (the newest); the guard needs only the last. */
const TICKS_KEPT = 16;

const pad = (n: number): string => String(Math.max(0, Math.floor(n))).padStart(PAD, '0');

/** One shard directory and what this process knows of it. */
interface Shard {
  readonly dir: string;
  /** <dir>/free: finished task files kept for reuse by enqueue into this shard. */
  readonly freeDir: string;
  /** `dir` and `freeDir` with a trailing separator: a file's path is one concatenation on the per-task path. */
  readonly at: string;
  readonly freeAt: string;
  /** Cached, sorted ready names; entries before `head` were taken or tried ('' = taken). */
  listing: string[];
  head: number;
  /** dueOf(listing[head]), computed when head last moved (-1: not yet). */
  headAt: number;
  headDue: number;
  listedAt: number;
  listingCost: number;
  stale: boolean;
  refreshing: Promise<void> | null;
  /** Until then, another consumer is known to claim here (see spool-shards.ts). */
  busyUntil: number;
  /** Names in free/ to reuse on enqueue (from the last listing of it), and where we are in them. */
  free: string[];
  freeHead: number;
  freeListedAt: number;
  freeListing: Promise<void> | null;
}

function newShard(dir: string): Shard {
  const freeDir = path.join(dir, 'free');
  return { dir, freeDir, at: dir + path.sep, freeAt: freeDir + path.sep, listing: [], head: 0, headAt: -1, headDue: 0, listedAt: 0, listingCost: 0, stale: true, refreshing: null, busyUntil: 0, free: [], freeHead: 0, freeListedAt: 0, freeListing: null };
}

interface SpoolReceipt {
  shard: Shard;
  /** Current name in the shard (changes on every lease renewal). */
  name: string;
  /** Its ready name, so release() can put it back in its old place. */
  readyName: string;
  leaseExp: number;
  /** Serializes renewals with the settling operation on the same claim. */
  chain: Promise<unknown>;
  lost: boolean;
  settled: boolean;
}

interface DeadFile {
  task: TaskRecord;
  error: string;
  deadAt: number;
  queue: string;
  raw?: string;
}

function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as NodeJS.ErrnoException).code === code;
}

async function unlinkQuiet(file: string): Promise<boolean> {
  try {
    await fsp.unlink(file);
    return true;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return false;
    throw err;
  }
}

/**
 * Task files are small: open, one read, close — half the thread-pool round trips of
 * fsp.readFile (which also fstat()s and reads in chunks), and this is on the per-task path.
 */
function readSmall(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    fs.open(file, 'r', (err, fd) => {
      if (err) return reject(err);
      const buf = Buffer.allocUnsafe(16384);
      fs.read(fd, buf, 0, buf.length, 0, (err2, n) => {
        if (err2 || n === buf.length) {
          fs.close(fd, () => undefined);
          if (err2) return reject(err2);
          return fsp.readFile(file, 'utf8').then(resolve, reject);
        }
        // Nobody waits for close: the content is complete and the fd is ours alone.
        fs.close(fd, () => undefined);
        resolve(buf.toString('utf8', 0, n));
      });
    });
  });
}

/** readSmall, synchronously: open, one read, close (on the claim path, see claimOne). */
const syncBuf = Buffer.allocUnsafe(16384);
function readSmallSync(file: string): string {
  const fd = fs.openSync(file, 'r');
  try {
    const buf = syncBuf;
    const n = fs.readSync(fd, buf, 0, buf.length, 0);
    if (n < buf.length) return buf.toString('utf8', 0, n);
  } finally {
    fs.closeSync(fd);
  }
  return fs.readFileSync(file, 'utf8');
}

/**
 * Group commit for directory fsyncs: every caller whose rename happened before a sync starts
 * is covered by that one sync, so N concurrent enqueues cost one directory fsync, not N.
 */
class DirSyncer {
  private pending: Promise<void> | null = null;
  private tail: Promise<void> = Promise.resolve();
  constructor(private readonly dir: string) {}

  sync(): Promise<void> {
    if (this.pending) return this.pending;
    const p: Promise<void> = this.tail
      .catch(() => undefined)
      .then(async () => {
        this.pending = null;
        const fh = await fsp.open(this.dir, 'r');
        try {
          await fh.sync();
        } finally {
          await fh.close();
        }
      });
    this.pending = p;
    this.tail = p;
    return p;
  }
}

export class SpoolBroker implements Broker {
  private readonly qdir: string;
  private readonly shardsDir: string;
  private shards: Shard[] = [];
  private readonly tmpDir: string;
  private readonly resultsDir: string;
  private readonly schedulesDir: string;
  private sweeping = false;
  private readonly dlqDir: string;
  private readonly consumer: string;
  private readonly tag = `${process.pid.toString(36)}${randomBytes(3).toString('hex')}`;
  private seq = 0;
  private readonly syncers = new Map<string, DirSyncer>();

  /** The shard this consumer claimed from last; -1 before the first claim. */
  private home = -1;
  /** The shard the next enqueue goes to (round robin from a random start). */
  private nextShard = 0;
  private nextDueAt = Infinity;
  /** Shards pick() wants listed before it can choose; empty when it chose, or nothing is due. */
  private relist: Shard[] = [];
  private readonly views: ShardView[] = [];
  /** Until then, another consumer is known to share the queue (see spool-shards.ts). */
  private contendedUntil = 0;
  /** When this consumer last claimed a task (free files are trimmed when it has been idle). */
  private lastClaimAt = 0;
  /** Finished files made free since they were last trimmed. */
  private discardsSinceSweep = 0;

  private readonly outstanding = new Set<SpoolReceipt>();
  private timers: NodeJS.Timeout[] = [];
  private reaping: Promise<void> | null = null;
  private closed = false;
  private wakers = new Set<() => void>();

  private constructor(
    private readonly root: string,
    private readonly opts: ResolvedBrokerOptions,
  ) {
    this.qdir = path.join(root, opts.queue);
    this.shardsDir = path.join(this.qdir, 'shards');
    this.tmpDir = path.join(this.qdir, 'tmp');
    this.resultsDir = path.join(this.qdir, 'results');
    this.schedulesDir = path.join(this.qdir, 'schedules');
    this.dlqDir = path.join(root, opts.dlq);
    this.consumer = consumerTag(opts.consumer);
  }

  static async open(spoolPath: string, opts: ResolvedBrokerOptions): Promise<SpoolBroker> {
    const broker = new SpoolBroker(path.resolve(opts.cwd, spoolPath), opts);
    const dirs = await ensureShards(broker.shardsDir);
    broker.shards = dirs.map(newShard);
    broker.nextShard = Math.floor(Math.random() * dirs.length);
    for (const dir of [broker.tmpDir, broker.resultsDir, broker.dlqDir]) await fsp.mkdir(dir, { recursive: true });
    await migrateLegacy(broker.qdir, dirs);
    void broker.cleanTmp().catch(() => undefined);
    return broker;
  }

  // ---------------------------------------------------------------- consuming

  async fetch(max: number, waitMs: number): Promise<Delivery[]> {
    if (this.closed || !(max > 0)) return [];
    this.startTimers();
    const deadline = Date.now() + Math.max(0, waitMs);
    for (;;) {
      const got = await this.claim(Math.floor(max));
      if (got.length > 0 || this.closed) return got;
      const now = Date.now();
      if (now >= deadline) return [];
      await this.waitForWork(Math.min(deadline - now, Math.max(1, this.nextDueAt - now)));
      if (this.closed) return [];
    }
  }

  private async claim(max: number): Promise<Delivery[]> {
    const out: Delivery[] = [];
    let started = performance.now();
    let misses = 0;
    let relisted = 0;
    for (let round = 0; out.length < max && round < Math.max(64, max); round++) {
      const now = Date.now();
      const s = this.pick(now);
      if (s === null) {
        // Listings to read first; none: nothing is due anywhere (once all were read again).
        if (this.relist.length === 0 || relisted >= 2) break;
        await Promise.all(this.relist.map((x) => this.refresh(x)));
        relisted++;
        // The bound is on time the loop is held: a slow readdir must not cut the batch short.
        started = performance.now();
        continue;
      }
      const leaseExp = now + this.opts.leaseMs;
      const list = s.listing;
      const due = dueEnd(s, now);
      // Alone, a run up to the oldest task of any other shard (FIFO across shards). Otherwise
      // a contiguous run from the head; in a shard shared with others, from a random spot
      // among its oldest SPREAD_BATCHES batches, so that consumers land apart.
      const bound = now >= this.contendedUntil ? this.otherHead(s, now) : null;
      const shared = now < s.busyUntil;
      let at = shared ? s.head + Math.floor(Math.random() * Math.min(due - s.head, max * SPREAD_BATCHES)) : s.head;
      let missed = false;
      for (; at < due && out.length < max; at++) {
        const name = list[at]!;
        if (name === '') continue;
        if (bound !== null && name > bound) break;
        list[at] = '';
        const got = this.claimOne(s, name, leaseExp);
        if (got === null) {
          missed = true;
          break;
        }
        out.push(got);
      }
      while (s.head < due && list[s.head] === '') s.head++;
      if (missed) {
        misses++;
        this.contendedUntil = Date.now() + CONTENDED_MS;
        s.busyUntil = Date.now() + BUSY_MS;
        // Most of what our listing of it holds is gone: list it again before coming back.
        if (misses > Math.max(4, out.length)) s.stale = true;
      }
      // Synchronous file operations hold the event loop: never for long (a slow filesystem).
      if (performance.now() - started > MAX_SYNC_CLAIM_MS) break;
    }
    if (out.length > 0) this.lastClaimAt = Date.now();
    else this.nextDueAt = this.firstDue();
    return out;
  }

  /**
   * The shard to claim from now (spool-shards.ts decides), if its listing is fresh enough to
   * trust; else null, with the listings to read first in `relist`.
   */
  private pick(now: number): Shard | null {
    this.relist = [];
    const alone = now >= this.contendedUntil;
    const views = this.views;
    for (let k = 0; k < this.shards.length; k++) {
      const s = this.shards[k]!;
      const v = (views[k] ??= { head: null, busy: false });
      v.head = dueHead(s, now);
      v.busy = now < s.busyUntil;
    }
    views.length = this.shards.length;
    const i = chooseShard(views, this.home, alone);
    if (i === -1) {
      // Nothing due in what we have listed: list again what was not listed just now.
      for (const s of this.shards) if (s.stale || now - s.listedAt >= MIN_REFRESH_GAP) this.relist.push(s);
      return null;
    }
    const s = this.shards[i]!;
    const age = now - s.listedAt;
    if (s.stale || age > Math.max(MIN_LISTING_AGE_FOR_FULL_REFRESH, s.listingCost * 20)) {
      this.relist.push(s);
      return null;
    }
    this.home = i;
    return s;
  }

  /** The oldest due task listed in any shard but `s` (null: none). */
  private otherHead(s: Shard, now: number): string | null {
    let min: string | null = null;
    for (const o of this.shards) {
      if (o === s) continue;
      const h = dueHead(o, now);
      if (h !== null && (min === null || h < min)) min = h;
    }
    return min;
  }

  /** When the next listed task falls due (WAIT_POLL from now when none is listed). */
  private firstDue(): number {
    let first = Infinity;
    for (const s of this.shards) {
      let k = s.head;
      while (k < s.listing.length && s.listing[k] === '') k++;
      if (k < s.listing.length) first = Math.min(first, dueOf(s.listing[k]!));
    }
    return first === Infinity ? Date.now() + WAIT_POLL : first;
  }

  /**
   * The claim is a bare rename without fsync: if power fails, either the rename survived (the
   * claim then expires like any dead worker's) or it did not (the task is still ready).
   * Both end with the task delivered again, which at-least-once allows; an fsync here would
   * cost a disk flush per task for nothing.
   *
   * Synchronous: a rename and a read of a small file take microseconds on a local disk, less
   * than handing each to the thread pool and back (four thread hand-offs per task, and the
   * pool's threads then fight over the same directory locks). claim() bounds how long a batch
   * may hold the event loop.
   */
  private claimOne(s: Shard, readyName: string, leaseExp: number): Delivery | null {
    const claimedName = `${pad(leaseExp)}~${this.consumer}~${readyName}`;
    const claimedPath = s.at + claimedName;
    try {
      fs.renameSync(s.at + readyName, claimedPath);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return null; // another consumer won it
      throw err;
    }
    const receipt: SpoolReceipt = {
      shard: s,
      name: claimedName,
      readyName,
      leaseExp,
      chain: Promise.resolve(),
      lost: false,
      settled: false,
    };
    let text: string;
    try {
      text = readSmallSync(claimedPath);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return null; // reaped already: only after a very long stall
      throw err;
    }
    this.outstanding.add(receipt);
    return parseDelivery(text, readyName, receipt);
  }

  /**
   * One readdir of a shard: its ready names (sorted), its free files (for enqueue), and
   * whether another consumer holds live claims in it (then it is busy, see spool-shards.ts).
   */
  private refresh(s: Shard): Promise<void> {
    s.refreshing ??= (async () => {
      const started = Date.now();
      try {
        const names = await fsp.readdir(s.dir);
        const ready: string[] = [];
        let others = false;
        for (const n of names) {
          if (isReady(n)) ready.push(n);
          else if (!others) {
            const m = CLAIMED_NAME.exec(n);
            others = m !== null && m[2] !== this.consumer && Number(m[1]) > started;
          }
        }
        s.listing = ready.sort();
        s.head = 0;
        s.headAt = -1;
        s.stale = false;
        if (others) {
          s.busyUntil = Date.now() + BUSY_MS;
          this.contendedUntil = Date.now() + CONTENDED_MS;
        }
      } finally {
        s.listedAt = Date.now();
        s.listingCost = s.listedAt - started;
        s.refreshing = null;
      }
    })();
    return s.refreshing;
  }

  private waitForWork(ms: number): Promise<void> {
    return this.waitForChange(
      this.shards.map((s) => s.dir),
      ms,
    );
  }

  /** Until something changes in one of `dirs`, or WAIT_POLL, or `ms`; also ended by close(). */
  private waitForChange(dirs: string[], ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const watchers: FSWatcher[] = [];
      const done = (): void => {
        clearTimeout(timer);
        for (const w of watchers) w.close();
        this.wakers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.min(ms, WAIT_POLL));
      this.wakers.add(done);
      // Only while idle: a permanent watcher would fire for every claim under load.
      for (const dir of dirs) {
        try {
          const w = watch(dir, { persistent: false }, done);
          w.on('error', () => undefined);
          watchers.push(w);
        } catch {
          // inotify limits or an unsupported filesystem: the poll above still works.
        }
      }
    });
  }

  // ---------------------------------------------------------------- settling

  /**
   * Not fsynced: an ack lost to a power cut only means the task runs once more. A result is
   * written durably first, so a result is never missing for a task that is gone.
   */
  async ack(d: Delivery, result?: KeptResult): Promise<void> {
    await this.settle(d, async (r) => {
      if (result) await this.keep(d.task.id, result, r.shard);
      this.discard(r);
    });
  }

  private async keep(id: string, result: KeptResult, reuse: Shard): Promise<void> {
    const text = `{"expiresAt":${Date.now() + Math.round(result.ttlMs)},"result":${result.json}}`;
    await this.writeDurable(this.resultsDir, `${fileSafe(id)}.json`, text, { tmpName: `${this.tag}-r${(this.seq++).toString(36)}`, reuse });
  }

  async fail(d: Delivery, error: string, retryAt: number): Promise<void> {
    await this.settle(d, async (r) => {
      if (!(await this.stillOwned(r))) return;
      const text = d.raw ?? JSON.stringify(nextAttempt(d.task, error));
      await this.writeDurable(r.shard.dir, this.newName(retryAt), text, { reuse: r.shard });
      this.discard(r);
    });
  }

  async deadLetter(d: Delivery, error: string, result?: KeptResult): Promise<void> {
    await this.settle(d, async (r) => {
      if (!(await this.stillOwned(r))) return;
      const now = Date.now();
      const dead: DeadFile = {
        task: { ...d.task, history: [...d.task.history, { attempt: d.task.attempt, at: now, error }] },
        error,
        deadAt: now,
        queue: this.opts.queue,
      };
      if (d.raw !== undefined) dead.raw = d.raw;
      else if (result) await this.keep(d.task.id, result, r.shard);
      await this.writeDurable(this.dlqDir, this.newName(now), JSON.stringify(dead), { reuse: r.shard });
      this.discard(r);
    });
  }

  async release(d: Delivery): Promise<void> {
    await this.settle(d, async (r) => {
      // Its old ready name sorts before anything enqueued since, so it is picked up first.
      try {
        await fsp.rename(path.join(r.shard.dir, r.name), path.join(r.shard.dir, r.readyName));
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err;
      }
      r.shard.stale = true;
    });
  }

  private settle(d: Delivery, op: (r: SpoolReceipt) => Promise<void>): Promise<void> {
    const r = d.receipt as SpoolReceipt;
    if (!r || typeof r.name !== 'string' || !r.shard) throw new Error('not a delivery of this spool broker');
    if (r.settled) return Promise.resolve();
    r.settled = true;
    this.outstanding.delete(r);
    const p = r.chain.catch(() => undefined).then(() => op(r));
    r.chain = p;
    return p;
  }

  /** False when the claim expired and was taken over: the task is already queued again. */
  private async stillOwned(r: SpoolReceipt): Promise<boolean> {
    if (r.lost) return false;
    if (r.leaseExp - Date.now() > Math.min(1000, this.opts.leaseMs / 4)) return true;
    return this.renewNow(r);
  }

  private async renewNow(r: SpoolReceipt): Promise<boolean> {
    const leaseExp = Date.now() + this.opts.leaseMs;
    const name = `${pad(leaseExp)}~${this.consumer}~${r.readyName}`;
    try {
      await fsp.rename(path.join(r.shard.dir, r.name), path.join(r.shard.dir, name));
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
      r.lost = true;
      this.outstanding.delete(r);
      return false;
    }
    r.name = name;
    r.leaseExp = leaseExp;
    return true;
  }

  private renewLeases(): void {
    const now = Date.now();
    const threshold = (this.opts.leaseMs * 2) / 3;
    for (const r of this.outstanding) {
      if (r.leaseExp - now > threshold) continue;
      r.chain = r.chain
        .catch(() => undefined)
        .then(() => (r.settled || r.lost ? undefined : this.renewNow(r)))
        .catch(() => undefined);
    }
  }

  /** Each shard's claimed names, read again (the reaper and releaseConsumer). */
  private async claims(): Promise<{ shard: Shard; name: string; leaseExp: number; consumer: string; readyName: string }[]> {
    const out: { shard: Shard; name: string; leaseExp: number; consumer: string; readyName: string }[] = [];
    const listed = await Promise.all(this.shards.map((s) => fsp.readdir(s.dir)));
    for (let i = 0; i < listed.length; i++) {
      for (const name of listed[i]!) {
        const m = CLAIMED_NAME.exec(name);
        if (m) out.push({ shard: this.shards[i]!, name, leaseExp: Number(m[1]), consumer: m[2]!, readyName: m[3]! });
      }
    }
    return out;
  }

  /** Puts tasks whose claim expired back as their next attempt (and moves what an old version left). */
  private reap(): Promise<void> {
    this.reaping ??= (async () => {
      try {
        if (await hasLegacy(this.qdir)) await migrateLegacy(this.qdir, this.shards.map((s) => s.dir));
        const now = Date.now();
        for (const c of await this.claims()) {
          if (this.closed) break;
          if (c.leaseExp > now) continue;
          await this.reapOne(c.shard, c.name, c.readyName).catch(() => undefined);
        }
      } finally {
        this.reaping = null;
      }
    })();
    return this.reaping;
  }

  async releaseConsumer(consumer: string, reason: string): Promise<number> {
    const tag = consumerTag(consumer);
    let n = 0;
    for (const c of await this.claims()) {
      if (c.consumer !== tag) continue;
      await this.reapOne(c.shard, c.name, c.readyName, reason);
      n++;
    }
    return n;
  }

  private async reapOne(s: Shard, claimedName: string, readyName: string, reason = LEASE_EXPIRED): Promise<void> {
    // Take the expired claim over first (one reaper wins the rename); should this process die
    // halfway, its own claim expires in turn and another reaper finishes the job.
    const mine = `${pad(Date.now() + this.opts.leaseMs)}~${this.consumer}~${readyName}`;
    const minePath = path.join(s.dir, mine);
    try {
      await fsp.rename(path.join(s.dir, claimedName), minePath);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return;
      throw err;
    }
    const text = await fsp.readFile(minePath, 'utf8');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    if (isTaskRecord(parsed)) {
      await this.writeDurable(s.dir, this.newName(Date.now()), JSON.stringify(nextAttempt(parsed, reason)), { reuse: s });
      await unlinkQuiet(minePath);
    } else {
      // Unparsable: there is no attempt to count; hand it back as is and let a worker dead-letter it.
      await fsp.rename(minePath, path.join(s.dir, readyName));
    }
    s.stale = true;
  }

  private startTimers(): void {
    if (this.timers.length > 0 || this.closed) return;
    const lease = this.opts.leaseMs;
    const reap = (): void => void this.reap().catch(() => undefined);
    reap();
    this.timers.push(setInterval(reap, Math.max(25, lease / 2)));
    this.timers.push(setInterval(() => this.renewLeases(), Math.max(10, lease / 6)));
    this.timers.push(setInterval(() => void this.sweepFree().catch(() => undefined), 1000));
    this.timers.push(setInterval(() => void this.sweepResults().catch(() => undefined), RESULT_SWEEP_MS));
    for (const t of this.timers) t.unref();
  }

  // ---------------------------------------------------------------- producing

  async enqueue(name: string, payload: unknown, opts?: EnqueueOptions): Promise<string> {
    if (this.closed) throw new Error('broker is closed');
    const { task, dueAt } = newTask(name, payload, opts);
    const s = this.shards[this.nextShard]!;
    this.nextShard = (this.nextShard + 1) % this.shards.length;
    await this.writeDurable(s.dir, this.newName(dueAt), JSON.stringify(task), { reuse: s });
    return task.id;
  }

  async enqueueScheduled(key: string, tick: number, name: string, payload: unknown, opts?: EnqueueOptions): Promise<string | null> {
    if (this.closed) throw new Error('broker is closed');
    const dir = path.join(this.schedulesDir, fileSafe(key));
    await fsp.mkdir(dir, { recursive: true });
    const ticks = await this.ticks(dir);
    if (ticks.length > 0 && ticks[ticks.length - 1]! >= tick) return null;
    // O_EXCL: of several arbiters on this spool, exactly one creates the tick's file. One
    // that dies right after loses that run (at most once, here; Redis does both in one step).
    try {
      await (await fsp.open(path.join(dir, pad(tick)), 'wx')).close();
    } catch (err) {
      if (isErrno(err, 'EEXIST')) return null;
      throw err;
    }
    const id = await this.enqueue(name, payload, opts);
    for (const old of ticks.slice(0, Math.max(0, ticks.length + 1 - TICKS_KEPT))) await unlinkQuiet(path.join(dir, pad(old))).catch(() => false);
    return id;
  }

  async lastScheduled(key: string): Promise<number | null> {
    const ticks = await this.ticks(path.join(this.schedulesDir, fileSafe(key)));
    return ticks.length ? ticks[ticks.length - 1]! : null;
  }

  private async ticks(dir: string): Promise<number[]> {
    let names: string[];
    try {
      names = await fsp.readdir(dir);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return [];
      throw err;
    }
    return names.filter((n) => /^\d{15}$/.test(n)).map(Number).sort((a, b) => a - b);
  }

  private newName(dueAt: number): string {
    return `${pad(dueAt)}-${(this.seq++).toString(36).padStart(8, '0')}-${this.tag}.json`;
  }

  /**
   * Survives a crash or power loss once resolved: data fsync, atomic rename, directory fsync.
   * Into a shard, the file is written under a tmp~ name in that shard, so the final rename
   * stays in one directory; elsewhere, in tmp/. `tmpName` when `name` is not unique to this
   * writer (a result may be written twice); `reuse`: the shard whose free files to overwrite.
   */
  private async writeDurable(dir: string, name: string, text: string, opts: { tmpName?: string; reuse?: Shard } = {}): Promise<void> {
    const tmpName = opts.tmpName ?? name;
    const tmp = opts.reuse?.dir === dir ? path.join(dir, TMP_PREFIX + tmpName) : path.join(this.tmpDir, tmpName);
    const data = Buffer.from(text, 'utf8');
    let fh: fsp.FileHandle | null = null;
    if (opts.reuse && (await this.takeFree(opts.reuse, tmp))) {
      // Another process's tmp cleanup may have removed it in between: then create one.
      fh = await fsp.open(tmp, 'r+').catch(() => null);
    }
    const reused = fh !== null;
    fh ??= await fsp.open(tmp, 'wx');
    try {
      await fh.write(data, 0, data.length, 0);
      if (reused) await fh.truncate(data.length);
      await fh.datasync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, path.join(dir, name));
    let syncer = this.syncers.get(dir);
    if (!syncer) this.syncers.set(dir, (syncer = new DirSyncer(dir)));
    await syncer.sync();
  }

  /**
   * Makes a finished claim a free file of its shard for reuse; false when it was not ours any
   * more. Synchronous, as the claim (see claimOne): one rename inside the shard.
   */
  private discard(r: SpoolReceipt): boolean {
    try {
      fs.renameSync(r.shard.at + r.name, `${r.shard.freeAt}${this.tag}-${(this.seq++).toString(36)}`);
      this.discardsSinceSweep++;
      return true;
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return false;
      throw err;
    }
  }

  /** Claims a free file of shard `s` by renaming it to `target`; false when there is none to take. */
  private async takeFree(s: Shard, target: string): Promise<boolean> {
    for (let tries = 0; tries < 4; tries++) {
      if (s.freeHead >= s.free.length) {
        if (Date.now() - s.freeListedAt < 200) return false;
        s.freeListing ??= fsp
          .readdir(s.freeDir)
          .then((names) => {
            s.free = names;
            s.freeHead = 0;
          })
          .finally(() => {
            s.freeListedAt = Date.now();
            s.freeListing = null;
          });
        await s.freeListing;
        if (s.freeHead >= s.free.length) return false;
      }
      const name = s.free[s.freeHead++]!;
      try {
        await fsp.rename(path.join(s.freeDir, name), target);
        return true;
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err;
      }
    }
    return false;
  }

  /** Keeps free files from growing without bound when consumers finish more than producers reuse. */
  private async sweepFree(): Promise<void> {
    if (this.sweeping) return;
    // Unlinking is the costly part of a task file's life (see the top): done while this
    // consumer is idle, unless it has been busy for so long that free files must not grow further.
    if (Date.now() - this.lastClaimAt < SWEEP_IDLE_MS && this.discardsSinceSweep < SWEEP_BUSY_AFTER) return;
    this.discardsSinceSweep = 0;
    this.sweeping = true;
    try {
      for (const s of this.shards) {
        const free = await fsp.readdir(s.freeDir);
        // One at a time: this is background work and must not crowd the thread pool.
        for (let i = FREE_PER_SHARD; i < free.length && !this.closed; i++) {
          await unlinkQuiet(path.join(s.freeDir, free[i]!));
        }
      }
    } finally {
      this.sweeping = false;
    }
  }

  private async cleanTmp(): Promise<void> {
    const now = Date.now();
    const files = (await fsp.readdir(this.tmpDir)).map((n) => path.join(this.tmpDir, n));
    for (const s of this.shards) {
      for (const n of await fsp.readdir(s.dir)) if (n.startsWith(TMP_PREFIX)) files.push(path.join(s.dir, n));
    }
    for (const file of files) {
      const st = await fsp.stat(file).catch(() => null);
      if (st && now - st.mtimeMs > STALE_TMP_MS) await unlinkQuiet(file).catch(() => false);
    }
  }

  // ---------------------------------------------------------------- results

  async getResult(id: string): Promise<TaskResult | null> {
    const file = path.join(this.resultsDir, `${fileSafe(id)}.json`);
    let text: string;
    try {
      text = await readSmall(file);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return null;
      throw err;
    }
    let stored: { expiresAt?: unknown; result?: unknown };
    try {
      stored = JSON.parse(text) as typeof stored;
    } catch {
      return null;
    }
    if (typeof stored.expiresAt !== 'number' || stored.expiresAt <= Date.now()) return null;
    const r = parseResult(JSON.stringify(stored.result ?? null));
    // A hashed file name could, in theory, be another id's.
    return r && r.id === id ? r : null;
  }

  async waitResult(id: string, timeoutMs: number): Promise<TaskResult | null> {
    const deadline = Date.now() + Math.max(0, timeoutMs);
    for (;;) {
      const found = await this.getResult(id);
      if (found) return found;
      const left = deadline - Date.now();
      if (left <= 0 || this.closed) return null;
      await this.waitForChange([this.resultsDir], left);
    }
  }

  /** Results past their expiry, removed in the background by consumers. */
  private async sweepResults(): Promise<void> {
    const names = await fsp.readdir(this.resultsDir);
    const now = Date.now();
    for (const n of names.slice(0, RESULT_SWEEP_MAX)) {
      if (this.closed) return;
      const file = path.join(this.resultsDir, n);
      const text = await readSmall(file).catch(() => null);
      if (text === null) continue;
      const m = /^\{"expiresAt":(\d+)/.exec(text);
      if (!m || Number(m[1]) <= now) await unlinkQuiet(file).catch(() => false);
    }
  }

  // ---------------------------------------------------------------- inspection

  async stats(): Promise<BrokerStats> {
    // Ready names start with their due time: those below this one are due now.
    const notDue = pad(Date.now() + 1);
    const [dead, ...shards] = await Promise.all([fsp.readdir(this.dlqDir), ...this.shards.map((s) => fsp.readdir(s.dir))]);
    let due = 0;
    let delayed = 0;
    let inFlight = 0;
    for (const names of shards) {
      for (const n of names) {
        if (isReady(n)) {
          if (n < notDue) due++;
          else delayed++;
        } else if (CLAIMED_NAME.test(n)) inFlight++;
      }
    }
    return { ready: due, delayed, inFlight, dead: dead!.filter((n) => DEAD_NAME.test(n)).length };
  }

  async listDead(limit = 100): Promise<DeadTask[]> {
    const out: DeadTask[] = [];
    for (const { dead } of await this.readDead(limit)) out.push(dead);
    return out;
  }

  async retryDead(ids?: string[]): Promise<number> {
    const wanted = ids ? new Set(ids) : null;
    let n = 0;
    const targets = new Map<string, string[]>();
    for (const { file, dead } of await this.readDead(Infinity)) {
      if (wanted && !wanted.has(dead.task.id)) continue;
      let dirs = targets.get(dead.queue);
      if (!dirs) targets.set(dead.queue, (dirs = dead.queue === this.opts.queue ? this.shards.map((s) => s.dir) : await ensureShards(path.join(this.root, dead.queue, 'shards'))));
      const text = dead.raw ?? JSON.stringify({ ...dead.task, attempt: 1 });
      await this.writeDurable(dirs[Math.floor(Math.random() * dirs.length)]!, this.newName(Date.now()), text);
      // Two operators retrying the same task at once may both re-queue it: at-least-once.
      if (await unlinkQuiet(file)) n++;
    }
    if (n > 0) for (const s of this.shards) s.stale = true;
    return n;
  }

  async purgeDead(ids?: string[]): Promise<number> {
    const wanted = ids ? new Set(ids) : null;
    let n = 0;
    const entries = wanted
      ? await this.readDead(Infinity)
      : (await fsp.readdir(this.dlqDir)).filter((f) => DEAD_NAME.test(f)).map((f) => ({ file: path.join(this.dlqDir, f), dead: null }));
    for (const { file, dead } of entries) {
      if (wanted && dead && !wanted.has(dead.task.id)) continue;
      if (await unlinkQuiet(file)) n++;
    }
    return n;
  }

  private async readDead(limit: number): Promise<{ file: string; dead: DeadTask }[]> {
    const names = (await fsp.readdir(this.dlqDir)).filter((n) => DEAD_NAME.test(n)).sort();
    const out: { file: string; dead: DeadTask }[] = [];
    for (const n of names) {
      if (out.length >= limit) break;
      const file = path.join(this.dlqDir, n);
      let text: string;
      try {
        text = await fsp.readFile(file, 'utf8');
      } catch (err) {
        if (isErrno(err, 'ENOENT')) continue;
        throw err;
      }
      out.push({ file, dead: parseDead(text, n, this.opts.queue) });
    }
    return out;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    for (const wake of [...this.wakers]) wake();
    await this.reaping?.catch(() => undefined);
  }
}

function parseDelivery(text: string, readyName: string, receipt: SpoolReceipt): Delivery {
  try {
    const v: unknown = JSON.parse(text);
    if (isTaskRecord(v)) return { task: v, receipt };
  } catch {
    // fall through to raw
  }
  return { task: rawTask(readyName.slice(0, -'.json'.length)), receipt, raw: text };
}

function parseDead(text: string, fileName: string, queue: string): DeadTask {
  try {
    const v = JSON.parse(text) as Partial<DeadFile>;
    if (v && typeof v === 'object' && v.task && typeof v.task.id === 'string' && typeof v.error === 'string') {
      const dead: DeadTask = {
        task: v.task,
        error: v.error,
        deadAt: typeof v.deadAt === 'number' ? v.deadAt : dueOf(fileName),
        // The file names the directory retryDead writes to: never trust it to be a path.
        queue: isQueueName(v.queue) ? v.queue : queue,
      };
      if (typeof v.raw === 'string') dead.raw = v.raw;
      return dead;
    }
  } catch (err) {
    return { task: rawTask(fileName.slice(0, -5)), error: `unreadable dead-letter file: ${errorMessage(err)}`, deadAt: dueOf(fileName), queue, raw: text };
  }
  return { task: rawTask(fileName.slice(0, -5)), error: 'unrecognized dead-letter file', deadAt: dueOf(fileName), queue, raw: text };
}

/** The consumer name is part of claimed file names: keep it short and separator-free. */
function consumerTag(consumer: string): string {
  return consumer.replace(/[^A-Za-z0-9_.:@-]/g, '_').slice(0, 64) || 'consumer';
}

/** Due index end of a shard's listing: the first listed name not yet due (the listing is sorted). */
function dueEnd(s: Shard, now: number): number {
  const list = s.listing;
  let lo = s.head;
  let hi = list.length;
  // '' marks names already taken; they keep their place, so search on the nearest real name.
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    let k = mid;
    while (k < hi && list[k] === '') k++;
    if (k === hi) hi = mid;
    else if (dueOf(list[k]!) <= now) lo = k + 1;
    else hi = mid;
  }
  return lo;
}

/** The shard's oldest listed task when it is due now, else null (skips taken names). */
function dueHead(s: Shard, now: number): string | null {
  const list = s.listing;
  while (s.head < list.length && list[s.head] === '') s.head++;
  // Bounds checked, not read past the end: an out-of-bounds read deoptimized every function
  // this is inlined into (pick, claim, otherHead), once per worker.
  if (s.head >= list.length) return null;
  const name = list[s.head]!;
  // Asked for every shard on every pick: parse the head's due time once per head.
  if (s.headAt !== s.head) {
    s.headAt = s.head;
    s.headDue = dueOf(name);
  }
  return s.headDue <= now ? name : null;
}

/** The queue's shard directories, made when missing (SHARDS of them for a new queue). */
async function ensureShards(shardsDir: string): Promise<string[]> {
  let names = (await fsp.readdir(shardsDir).catch(() => [] as string[])).filter((n) => SHARD_NAME.test(n));
  if (names.length === 0) names = Array.from({ length: SHARDS }, (_, i) => String(i).padStart(2, '0'));
  const dirs = names.sort().map((n) => path.join(shardsDir, n));
  for (const dir of dirs) await fsp.mkdir(path.join(dir, 'free'), { recursive: true });
  return dirs;
}
