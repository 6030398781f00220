/**
 * `spool:PATH` — an embedded, durable broker made of plain files, safe for many processes.
 *
 *   PATH/<queue>/ready/    <dueAt:15>-<seq>-<tag>.json         one immutable file per task
 *   PATH/<queue>/claimed/  <leaseExpiry:15>~<consumer>~<ready name>
 *   PATH/<queue>/tmp/      files being written (then renamed into place)
 *   PATH/<queue>/free/     finished task files kept for reuse by enqueue
 *   PATH/<queue>/results/  <id>.json  a finished task's result (resultTtl): { expiresAt, result }
 *   PATH/<queue>/schedules/<key>/<tick:15>   one empty file per schedule tick enqueued
 *   PATH/<dlq>/            <deadAt:15>-<seq>-<tag>.json        dead tasks with error and history
 *
 * Lexical order of ready names is due time, then the producer's sequence, so the oldest due
 * task sorts first. Every state change of a task is one `rename(2)` — atomic, so of several
 * processes racing for a file exactly one wins and the others get ENOENT — or a new file
 * written to tmp/, fsynced and renamed into place, then the old one unlinked. A crash between
 * those two steps leaves both, which only means a task can run twice: at-least-once.
 *
 * Finished task files are not unlinked but renamed into free/ and overwritten by the next
 * enqueue. Unlinking a file whose blocks reached the disk frees those blocks, which costs a
 * journal update and, on filesystems mounted with `discard`, a TRIM: measured at ~280 µs per
 * file against ~15 µs for a rename, it made ack the bottleneck. Reuse also spares enqueue the
 * block allocation. Consumers trim free/ to FREE_MAX files in the background.
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

const PAD = 15;
const READY_NAME = /^\d{15}-[^~/]+\.json$/;
const CLAIMED_NAME = /^(\d{15})~([^~/]*)~(\d{15}-[^~/]+\.json)$/;
const DEAD_NAME = /^\d{15}-[^~/]+\.json$/;

/** Readdir of ready/ at least this often, even when the cached listing still has work. */
const MIN_LISTING_AGE_FOR_FULL_REFRESH = 1000;
/**
 * Consumers sharing a spool claim from a random spot among the oldest this many batches once
 * they have seen each other (a claim lost to another): apart, they stop racing for the same files.
 */
const SPREAD_BATCHES = 16;
/** A batch of synchronous claims holds the event loop at most about this long. */
const MAX_SYNC_CLAIM_MS = 5;
/** When the cached listing has nothing due, readdir again at most this often. */
const MIN_REFRESH_GAP = 20;
/** Poll interval while waiting, in case fs.watch misses something (network filesystems). */
const WAIT_POLL = 100;
/** free/ is trimmed back to this many files, ... */
const FREE_MAX = 1024;
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
const dueOf = (name: string): number => Number(name.slice(0, PAD));

interface SpoolReceipt {
  /** Current name in claimed/ (changes on every lease renewal). */
  name: string;
  /** Name it had in ready/, so release() can put it back in its old place. */
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
  private readonly readyDir: string;
  private readonly claimedDir: string;
  private readonly tmpDir: string;
  private readonly freeDir: string;
  private readonly resultsDir: string;
  private readonly schedulesDir: string;
  private freeList: string[] = [];
  private freeHead = 0;
  private freeListedAt = 0;
  private freeListing: Promise<void> | null = null;
  private sweeping = false;
  private readonly dlqDir: string;
  private readonly consumer: string;
  private readonly tag = `${process.pid.toString(36)}${randomBytes(3).toString('hex')}`;
  private seq = 0;
  private readonly syncers = new Map<string, DirSyncer>();

  /** Cached, sorted listing of ready/; entries before `head` were taken or tried. */
  private listing: string[] = [];
  private head = 0;
  private listedAt = 0;
  private listingCost = 0;
  private listingStale = true;
  private refreshing: Promise<void> | null = null;
  private nextDueAt = Infinity;
  /** Until then, claim from a random spot near the head instead of the head itself. */
  private contendedUntil = 0;
  /** When this consumer last claimed a task (free/ is trimmed when it has been idle). */
  private lastClaimAt = 0;
  /** Finished files moved to free/ since it was last trimmed. */
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
    const qdir = path.join(root, opts.queue);
    this.readyDir = path.join(qdir, 'ready');
    this.claimedDir = path.join(qdir, 'claimed');
    this.tmpDir = path.join(qdir, 'tmp');
    this.freeDir = path.join(qdir, 'free');
    this.resultsDir = path.join(qdir, 'results');
    this.schedulesDir = path.join(qdir, 'schedules');
    this.dlqDir = path.join(root, opts.dlq);
    this.consumer = consumerTag(opts.consumer);
  }

  static async open(spoolPath: string, opts: ResolvedBrokerOptions): Promise<SpoolBroker> {
    const broker = new SpoolBroker(path.resolve(opts.cwd, spoolPath), opts);
    for (const dir of [broker.readyDir, broker.claimedDir, broker.tmpDir, broker.freeDir, broker.resultsDir, broker.dlqDir]) {
      await fsp.mkdir(dir, { recursive: true });
    }
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
    let now = Date.now();
    const age = now - this.listedAt;
    if (
      this.listingStale ||
      age > Math.max(MIN_LISTING_AGE_FOR_FULL_REFRESH, this.listingCost * 20) ||
      (!this.hasDue(now) && age >= MIN_REFRESH_GAP)
    ) {
      await this.refresh();
      now = Date.now();
    }
    const leaseExp = now + this.opts.leaseMs;
    const out: Delivery[] = [];
    const list = this.listing;
    const due = this.dueEnd(now);
    this.nextDueAt = due < list.length ? dueOf(list[due]!) : now + WAIT_POLL;
    const started = performance.now();
    let misses = 0;
    let random = now < this.contendedUntil;
    for (let round = 0; out.length < max && this.head < due && round < 64; round++) {
      // Start at the oldest due task, or, while other consumers take from the same listing, at
      // a random spot among the oldest SPREAD_BATCHES batches; then claim a contiguous run, so
      // consumers that landed apart stay apart, until a miss says another one is here too.
      let at = random ? this.head + Math.floor(Math.random() * Math.min(due - this.head, max * SPREAD_BATCHES)) : this.head;
      let missed = false;
      let claimed = 0;
      for (; at < due && out.length < max; at++) {
        const name = list[at]!;
        if (name === '') continue;
        list[at] = '';
        const got = this.claimOne(name, leaseExp);
        if (got === null) {
          missed = true;
          break;
        }
        out.push(got);
        claimed++;
      }
      while (this.head < due && list[this.head] === '') this.head++;
      if (missed) {
        misses++;
        random = true;
        this.contendedUntil = Date.now() + 5000;
        if (misses > Math.max(4, out.length)) {
          // Most of what our listing holds is gone: list again next time.
          this.listingStale = true;
          break;
        }
      } else if (claimed === 0) {
        random = false; // the random spot found only taken names: from the head next
      }
      // Synchronous file operations hold the event loop: never for long (a slow filesystem).
      if (performance.now() - started > MAX_SYNC_CLAIM_MS) break;
    }
    if (out.length === 0 && misses > 0) this.listingStale = true;
    return out;
  }

  /** Index of the first listed name not yet due (the listing is sorted by due time). */
  private dueEnd(now: number): number {
    const list = this.listing;
    let lo = this.head;
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

  /**
   * The claim is a bare rename without fsync: if power fails, either the rename survived (the
   * claim then expires like any dead worker's) or it did not (the task is still in ready/).
   * Both end with the task delivered again, which at-least-once allows; an fsync here would
   * cost a disk flush per task for nothing.
   *
   * Synchronous: a rename and a read of a small file take microseconds on a local disk, less
   * than handing each to the thread pool and back (four thread hand-offs per task, and the
   * pool's threads then fight over the same directory locks). claim() bounds how long a batch
   * may hold the event loop.
   */
  private claimOne(readyName: string, leaseExp: number): Delivery | null {
    const claimedName = `${pad(leaseExp)}~${this.consumer}~${readyName}`;
    const claimedPath = path.join(this.claimedDir, claimedName);
    try {
      fs.renameSync(path.join(this.readyDir, readyName), claimedPath);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return null; // another consumer won it
      throw err;
    }
    const receipt: SpoolReceipt = {
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
    this.lastClaimAt = Date.now();
    return parseDelivery(text, readyName, receipt);
  }

  private hasDue(now: number): boolean {
    while (this.head < this.listing.length && this.listing[this.head] === '') this.head++;
    return this.head < this.listing.length && dueOf(this.listing[this.head]!) <= now;
  }

  private refresh(): Promise<void> {
    this.refreshing ??= (async () => {
      const started = Date.now();
      try {
        const names = await fsp.readdir(this.readyDir);
        this.listing = names.filter((n) => READY_NAME.test(n)).sort();
        this.head = 0;
        this.listingStale = false;
      } finally {
        this.listedAt = Date.now();
        this.listingCost = this.listedAt - started;
        this.refreshing = null;
      }
    })();
    return this.refreshing;
  }

  private waitForWork(ms: number): Promise<void> {
    return this.waitForChange(this.readyDir, ms);
  }

  /** Until something changes in `dir`, or WAIT_POLL, or `ms`; also ended by close(). */
  private waitForChange(dir: string, ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      let watcher: FSWatcher | undefined;
      const done = (): void => {
        clearTimeout(timer);
        watcher?.close();
        this.wakers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.min(ms, WAIT_POLL));
      this.wakers.add(done);
      // Only while idle: a permanent watcher would fire for every claim under load.
      try {
        watcher = watch(dir, { persistent: false }, done);
        watcher.on('error', () => undefined);
      } catch {
        // inotify limits or an unsupported filesystem: the poll above still works.
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
      if (result) await this.keep(d.task.id, result);
      await this.discard(r.name);
    });
  }

  private async keep(id: string, result: KeptResult): Promise<void> {
    const text = `{"expiresAt":${Date.now() + Math.round(result.ttlMs)},"result":${result.json}}`;
    await this.writeDurable(this.resultsDir, `${fileSafe(id)}.json`, text, `${this.tag}-r${(this.seq++).toString(36)}`);
  }

  async fail(d: Delivery, error: string, retryAt: number): Promise<void> {
    await this.settle(d, async (r) => {
      if (!(await this.stillOwned(r))) return;
      const text = d.raw ?? JSON.stringify(nextAttempt(d.task, error));
      await this.writeDurable(this.readyDir, this.newName(retryAt), text);
      await this.discard(r.name);
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
      else if (result) await this.keep(d.task.id, result);
      await this.writeDurable(this.dlqDir, this.newName(now), JSON.stringify(dead));
      await this.discard(r.name);
    });
  }

  async release(d: Delivery): Promise<void> {
    await this.settle(d, async (r) => {
      // Its old ready name sorts before anything enqueued since, so it is picked up first.
      try {
        await fsp.rename(path.join(this.claimedDir, r.name), path.join(this.readyDir, r.readyName));
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err;
      }
    });
  }

  private settle(d: Delivery, op: (r: SpoolReceipt) => Promise<void>): Promise<void> {
    const r = d.receipt as SpoolReceipt;
    if (!r || typeof r.name !== 'string') throw new Error('not a delivery of this spool broker');
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
      await fsp.rename(path.join(this.claimedDir, r.name), path.join(this.claimedDir, name));
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

  /** Puts tasks whose claim expired back into ready/ as their next attempt. */
  private reap(): Promise<void> {
    this.reaping ??= (async () => {
      try {
        const names = await fsp.readdir(this.claimedDir);
        const now = Date.now();
        for (const n of names) {
          if (this.closed) break;
          const m = CLAIMED_NAME.exec(n);
          if (!m || Number(m[1]) > now) continue;
          await this.reapOne(n, m[3]!).catch(() => undefined);
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
    for (const name of await fsp.readdir(this.claimedDir)) {
      const m = CLAIMED_NAME.exec(name);
      if (!m || m[2] !== tag) continue;
      await this.reapOne(name, m[3]!, reason);
      n++;
    }
    return n;
  }

  private async reapOne(claimedName: string, readyName: string, reason = LEASE_EXPIRED): Promise<void> {
    // Take the expired claim over first (one reaper wins the rename); should this process die
    // halfway, its own claim expires in turn and another reaper finishes the job.
    const mine = `${pad(Date.now() + this.opts.leaseMs)}~${this.consumer}~${readyName}`;
    const minePath = path.join(this.claimedDir, mine);
    try {
      await fsp.rename(path.join(this.claimedDir, claimedName), minePath);
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
      await this.writeDurable(this.readyDir, this.newName(Date.now()), JSON.stringify(nextAttempt(parsed, reason)));
      await unlinkQuiet(minePath);
    } else {
      // Unparsable: there is no attempt to count; hand it back as is and let a worker dead-letter it.
      await fsp.rename(minePath, path.join(this.readyDir, readyName));
    }
    this.listingStale = true;
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
    await this.writeDurable(this.readyDir, this.newName(dueAt), JSON.stringify(task));
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
   * `tmpName` when `name` is not unique to this writer (a result may be written twice).
   */
  private async writeDurable(dir: string, name: string, text: string, tmpName = name): Promise<void> {
    const tmp = path.join(this.tmpDir, tmpName);
    const data = Buffer.from(text, 'utf8');
    let fh: fsp.FileHandle | null = null;
    if (await this.takeFree(tmp)) {
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
   * Moves a finished claim to free/ for reuse; false when it was not ours any more.
   * Synchronous, as the claim (see claimOne): one rename.
   */
  private async discard(claimedName: string): Promise<boolean> {
    try {
      fs.renameSync(path.join(this.claimedDir, claimedName), path.join(this.freeDir, `${this.tag}-${(this.seq++).toString(36)}`));
      this.discardsSinceSweep++;
      return true;
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return false;
      throw err;
    }
  }

  /** Claims a file from free/ by renaming it to `target`; false when there is none to take. */
  private async takeFree(target: string): Promise<boolean> {
    for (let tries = 0; tries < 4; tries++) {
      if (this.freeHead >= this.freeList.length) {
        if (Date.now() - this.freeListedAt < 200) return false;
        this.freeListing ??= fsp
          .readdir(this.freeDir)
          .then((names) => {
            this.freeList = names;
            this.freeHead = 0;
          })
          .finally(() => {
            this.freeListedAt = Date.now();
            this.freeListing = null;
          });
        await this.freeListing;
        if (this.freeHead >= this.freeList.length) return false;
      }
      const name = this.freeList[this.freeHead++]!;
      try {
        await fsp.rename(path.join(this.freeDir, name), target);
        return true;
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err;
      }
    }
    return false;
  }

  /** Keeps free/ from growing without bound when consumers finish more than producers reuse. */
  private async sweepFree(): Promise<void> {
    if (this.sweeping) return;
    // Unlinking is the costly part of a task file's life (see the top): done while this
    // consumer is idle, unless it has been busy for so long that free/ must not grow further.
    if (Date.now() - this.lastClaimAt < SWEEP_IDLE_MS && this.discardsSinceSweep < SWEEP_BUSY_AFTER) return;
    this.discardsSinceSweep = 0;
    this.sweeping = true;
    try {
      const names = await fsp.readdir(this.freeDir);
      // One at a time: this is background work and must not crowd the thread pool.
      for (let i = FREE_MAX; i < names.length && !this.closed; i++) {
        await unlinkQuiet(path.join(this.freeDir, names[i]!));
      }
    } finally {
      this.sweeping = false;
    }
  }

  private async cleanTmp(): Promise<void> {
    const now = Date.now();
    for (const n of await fsp.readdir(this.tmpDir)) {
      const file = path.join(this.tmpDir, n);
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
      await this.waitForChange(this.resultsDir, left);
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
    const now = Date.now();
    const [ready, claimed, dead] = await Promise.all([
      fsp.readdir(this.readyDir),
      fsp.readdir(this.claimedDir),
      fsp.readdir(this.dlqDir),
    ]);
    let due = 0;
    let delayed = 0;
    for (const n of ready) {
      if (!READY_NAME.test(n)) continue;
      if (dueOf(n) <= now) due++;
      else delayed++;
    }
    return {
      ready: due,
      delayed,
      inFlight: claimed.filter((n) => CLAIMED_NAME.test(n)).length,
      dead: dead.filter((n) => DEAD_NAME.test(n)).length,
    };
  }

  async listDead(limit = 100): Promise<DeadTask[]> {
    const out: DeadTask[] = [];
    for (const { dead } of await this.readDead(limit)) out.push(dead);
    return out;
  }

  async retryDead(ids?: string[]): Promise<number> {
    const wanted = ids ? new Set(ids) : null;
    let n = 0;
    for (const { file, dead } of await this.readDead(Infinity)) {
      if (wanted && !wanted.has(dead.task.id)) continue;
      const queueDir = path.join(this.root, dead.queue);
      const readyDir = path.join(queueDir, 'ready');
      await fsp.mkdir(readyDir, { recursive: true });
      const text = dead.raw ?? JSON.stringify({ ...dead.task, attempt: 1 });
      await this.writeDurable(readyDir, this.newName(Date.now()), text);
      // Two operators retrying the same task at once may both re-queue it: at-least-once.
      if (await unlinkQuiet(file)) n++;
    }
    if (n > 0) this.listingStale = true;
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
