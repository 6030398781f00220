/**
 * The `task` worker class: consumes tasks from a broker (workers/task/brokers) and runs the
 * app's handlers with bounded concurrency, under the same master, policies and signals as
 * the HTTP classes. It binds nothing (`listens: false`).
 *
 * Delivery is at-least-once. A task is acknowledged only after its handler resolved; a
 * failed attempt is scheduled again with exponential backoff and jitter until `maxRetries`
 * retries are used up, then it goes to the dead-letter queue with its last error and
 * attempt history. Unknown task names, unparsable entries and deliveries that already used
 * up their attempts (their worker kept dying: each lease expiry counts) go straight to the
 * dead-letter queue with the reason.
 *
 * Stopping gracefully (TERM, HUP, recycling) stops fetching, lets the tasks in flight finish
 * within `gracefulTimeout` and releases what did not finish so another worker gets it at
 * once. A quick stop (INT, QUIT) releases everything at once. Either way nothing is lost:
 * what was not settled comes back when its lease expires, even after SIGKILL.
 *
 * Leases. A claimed task stays ours while the broker renews its lease in the background, on
 * the event loop, at least every half lease. The lease is also how long the tasks of a worker
 * that died wait before they are delivered again (up to 1.5 leases, with the reaper's period).
 * So it is a trade: long enough that a live worker whose event loop stalls keeps its claims,
 * short enough that a crash is repaired quickly. A worker whose loop is blocked for `timeout`
 * is killed by the master anyway, so: leaseMs = 2 × timeout (a stall as long as `timeout`
 * keeps its claims), at least 5 s and at most 30 s (BullMQ's lock, Celery's usual choice);
 * 30 s when `timeout` is 0. With `timeout` above 15 s a stall between 15 s and `timeout` may
 * lose the claim: the task then runs once more elsewhere (at-least-once), it is never lost.
 * `ARBITER_TASK_LEASE_MS` overrides it.
 *
 * Backoff before retry n (n = the attempt that failed): base × 2^(n-1), capped at 5 minutes,
 * times a random factor in [0.75, 1.25). base is 1 s; `ARBITER_TASK_BACKOFF_MS` overrides it.
 *
 * Results (`resultTtl` > 0): the handler's return value, as JSON, is kept with the ack; the
 * error that ends a task for good (its last attempt, or why it was not run) with the
 * dead-letter. Attempts that fail and are retried keep nothing, so a task that succeeds on
 * its third attempt leaves that success. A value that is not JSON, or whose JSON is larger
 * than `maxResultSize`, is kept as an error that says so; the task itself still succeeded.
 *
 * Queues: `queue: [high, default]` consumes both, the first while it has tasks (see
 * src/core/brokers/priority.ts).
 */
import type { Logger } from '../../src/core/logging.js';
import { openQueues } from '../../src/core/brokers/open.js';
import { consumerName, resolveOptions } from '../../src/core/brokers/records.js';
import type { Broker, BrokerEvent, Delivery, KeptResult, TaskAttempt, TaskResult } from '../../src/core/brokers/types.js';
import { redactUrl } from '../../src/core/brokers/url.js';
import { LIFECYCLE_EXPORTS } from '../../src/core/app.js';
import { AppLoadError, SettingError, oneLine } from '../../src/core/errors.js';
import type { TaskCounters } from '../../src/core/protocol.js';
import { closest } from '../../src/core/suggest.js';
import type { TaskContext, TaskHandler } from '../../src/core/tasks.js';
import type { WorkerClass, WorkerContext, WorkerInstance, WorkerSettings } from '../contract.js';
import { monotonicMs } from '../loop-delay.js';

/** How long one fetch waits for work; also how long a stop waits for the fetch in progress. */
const FETCH_WAIT_MS = 1000;
const BACKOFF_CAP_MS = 300_000;
const DEFAULT_BACKOFF_MS = 1000;
/**
 * Prefetch: while handlers are quick (recent mean under PREFETCH_FAST_MS), a worker also
 * claims up to PREFETCH_FACTOR × concurrency tasks beyond its free slots, so one broker
 * round trip feeds many tasks. Slow tasks are never hoarded: a task that waits in our buffer
 * could be running on an idle worker, so with slow handlers we claim only free slots.
 */
const PREFETCH_FACTOR = 3;
const PREFETCH_FAST_MS = 5;
/** Per-task-name duration records kept; names beyond that are counted under "(other)". */
const MAX_DURATION_NAMES = 200;

/** What `adapt()` makes of the export. */
export interface TaskApp {
  /** Named handlers; null when one function handles every name. */
  named: Map<string, TaskHandler> | null;
  any: TaskHandler | null;
}

export class TaskTimeoutError extends Error {
  constructor(seconds: number) {
    super(`task timed out after ${seconds} s (taskTimeout)`);
    this.name = 'TaskTimeoutError';
  }
}

export function leaseMsFor(s: Pick<WorkerSettings, 'timeout'>, env: NodeJS.ProcessEnv = process.env): number {
  const forced = Number(env.ARBITER_TASK_LEASE_MS);
  if (env.ARBITER_TASK_LEASE_MS && Number.isFinite(forced) && forced >= 50) return forced;
  return s.timeout > 0 ? Math.min(30_000, Math.max(5000, 2 * s.timeout * 1000)) : 30_000;
}

export function backoffMs(attempt: number, env: NodeJS.ProcessEnv = process.env): number {
  const forced = Number(env.ARBITER_TASK_BACKOFF_MS);
  const base = env.ARBITER_TASK_BACKOFF_MS && Number.isFinite(forced) && forced >= 0 ? forced : DEFAULT_BACKOFF_MS;
  const raw = Math.min(BACKOFF_CAP_MS, base * 2 ** Math.min(attempt - 1, 30));
  return Math.round(raw * (0.75 + Math.random() * 0.5));
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') {
    const keys = Object.keys(value);
    return keys.length ? `an object with no handler functions (keys: ${keys.slice(0, 6).join(', ')})` : 'an empty object';
  }
  return `${typeof value} ${JSON.stringify(value)}`;
}

/** The module's lifecycle exports (startup, shutdown, onServer) are not task handlers. */
const NOT_HANDLERS: ReadonlySet<string> = new Set(['constructor', ...LIFECYCLE_EXPORTS]);

function handlersOf(value: unknown): Map<string, TaskHandler> {
  const out = new Map<string, TaskHandler>();
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return out;
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) if (typeof v === 'function' && !NOT_HANDLERS.has(k)) out.set(k, v as TaskHandler);
  // Methods of a class instance live on its prototype.
  let proto = Object.getPrototypeOf(value) as object | null;
  while (proto && proto !== Object.prototype) {
    for (const k of Object.getOwnPropertyNames(proto)) {
      if (NOT_HANDLERS.has(k) || out.has(k)) continue;
      const d = Object.getOwnPropertyDescriptor(proto, k);
      if (d && typeof d.value === 'function') out.set(k, (d.value as TaskHandler).bind(value));
    }
    proto = Object.getPrototypeOf(proto) as object | null;
  }
  return out;
}

type Outcome = { ok: true; value: unknown } | { ok: false; err: unknown };

interface InFlight {
  d: Delivery;
  name: string;
  started: number;
  /** The attempt has an outcome (or was released): late results of the handler are ignored. */
  over: boolean;
  controller: AbortController | null;
  timer: NodeJS.Timeout | null;
}

/** The `ctx` a handler gets; logger and signal are made on first use, most handlers need neither. */
class Ctx implements TaskContext {
  private _log: Logger | null = null;
  constructor(
    private readonly entry: InFlight,
    private readonly parentLog: Logger,
    readonly maxRetries: number,
  ) {}
  get id(): string {
    return this.entry.d.task.id;
  }
  get name(): string {
    return this.entry.d.task.name;
  }
  get attempt(): number {
    return this.entry.d.task.attempt;
  }
  get enqueuedAt(): number {
    return this.entry.d.task.enqueuedAt;
  }
  get history(): readonly TaskAttempt[] {
    return this.entry.d.task.history;
  }
  get signal(): AbortSignal {
    return (this.entry.controller ??= new AbortController()).signal;
  }
  get log(): Logger {
    return (this._log ??= this.parentLog.child({ task: this.entry.d.task.id, taskName: this.entry.d.task.name, attempt: this.entry.d.task.attempt }));
  }
}

class TaskWorker implements WorkerInstance {
  private broker: Broker | null = null;
  /** Handlers running: what `concurrency` bounds. */
  private readonly inFlight = new Set<InFlight>();
  /**
   * Outcomes being written to the broker (ack, fail, dead-letter). They no longer hold a
   * slot, so the next fetch goes out while the acks of the last batch are on the wire.
   */
  private readonly settling = new Set<InFlight>();
  /** Claimed ahead of a free slot (see PREFETCH_FACTOR); started in order as slots free. */
  private buffer: Delivery[] = [];
  private bufferHead = 0;
  /** Moving mean of handler run time, ms; NaN until the first task ends (no prefetch before). */
  private meanMs = Number.NaN;
  private readonly concurrency: number;
  private readonly maxRetries: number;
  private readonly taskTimeoutMs: number;
  private readonly leaseMs: number;
  private readonly resultTtlMs: number;
  private stopping = false;
  private quick = false;
  /** The broker's connection is up (brokers that can be unreachable say when it is not). */
  private brokerUp = true;
  private loopDone: Promise<void> = Promise.resolve();
  private stopped: Promise<void> | null = null;
  /** Wakes the fetch loop when a slot frees or a stop begins. */
  private wakeLoop: (() => void) | null = null;
  /** Wakes the drain when the last task settles or a quick stop overrides it. */
  private wakeDrain: (() => void) | null = null;
  private readonly known: string;

  private finished = 0;
  private readonly tc: TaskCounters = { processed: 0, failed: 0, retried: 0, dead: 0, durations: {} };
  private durationNames = 0;

  constructor(
    private readonly ctx: WorkerContext,
    private readonly app: TaskApp,
  ) {
    const s = ctx.settings;
    this.concurrency = Math.max(1, Math.floor(s.concurrency));
    this.maxRetries = s.maxRetries;
    this.taskTimeoutMs = s.taskTimeout > 0 ? s.taskTimeout * 1000 : 0;
    this.leaseMs = leaseMsFor(s);
    this.resultTtlMs = s.resultTtl * 1000;
    this.known = app.named ? [...app.named.keys()].join(', ') : '';
  }

  async start(): Promise<void> {
    const s = this.ctx.settings;
    this.broker = await openQueues(s.broker, s.queue, {
      ...(s.dlq ? { dlq: s.dlq } : {}),
      consumer: consumerName(process.pid),
      leaseMs: this.leaseMs,
      cwd: process.cwd(),
      onEvent: (e) => this.brokerEvent(e),
    });
    this.broker.onHealth?.((h) => (this.brokerUp = h.up));
    const queues = s.queue.map((q) => `"${q}"`).join(', then ');
    this.ctx.log.info(
      { event: 'task_consuming', broker: redactUrl(s.broker), queue: s.queue, concurrency: this.concurrency, leaseMs: this.leaseMs },
      `consuming ${s.queue.length === 1 ? 'queue' : 'queues'} ${queues} from ${redactUrl(s.broker)}, ${this.concurrency} at a time`,
    );
    this.loopDone = this.loop().catch((err) => {
      // The loop catches everything itself; this is a bug, but it must not go unseen.
      this.ctx.log.error({ err, event: 'task_loop_failed' }, `task fetch loop failed: ${oneLine(err)}`);
    });
  }

  private brokerEvent(e: BrokerEvent): void {
    if (e.kind === 'primary')
      this.ctx.log.warn(
        { event: 'broker_failover', master: e.master, primary: e.address, previous: e.previous },
        `redis: following the new primary of "${e.master}" at ${e.address}` + (e.previous ? ` (was ${e.previous}): a failover` : ''),
      );
  }

  // ------------------------------------------------------------------ fetching

  private async loop(): Promise<void> {
    const broker = this.broker!;
    let errors = 0;
    while (!this.stopping) {
      const free = this.concurrency - this.inFlight.size;
      const ahead = this.meanMs < PREFETCH_FAST_MS ? this.concurrency * PREFETCH_FACTOR : 0;
      const want = free + ahead - this.buffered();
      if (want <= 0 || (free <= 0 && this.buffered() > 0)) {
        await new Promise<void>((resolve) => (this.wakeLoop = resolve));
        this.wakeLoop = null;
        continue;
      }
      let batch: Delivery[];
      try {
        // Never block while work is waiting in the buffer: it will need the slots first.
        batch = await broker.fetch(want, this.buffered() > 0 || free <= 0 ? 0 : FETCH_WAIT_MS);
        if (errors > 0 && this.brokerUp) this.ctx.log.info({ event: 'task_fetch_recovered' }, `fetching tasks works again after ${errors} failure${errors === 1 ? '' : 's'}`);
        errors = 0;
      } catch (err) {
        errors++;
        const wait = Math.min(5000, 100 * 2 ** Math.min(errors - 1, 6));
        // Loud at first, then once a minute or so. An outage of the broker itself is the
        // master's to report, once for the whole arbiter (src/task-brokers.ts).
        if (!this.brokerUp) this.ctx.log.debug({ event: 'task_fetch_failed', err, failures: errors }, `fetching tasks failed while the broker is away (${oneLine(err)})`);
        else if (errors <= 3 || errors % 12 === 0)
          this.ctx.log.error({ event: 'task_fetch_failed', err, failures: errors }, `fetching tasks failed (${oneLine(err)}); trying again in ${wait} ms`);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, wait);
          this.wakeLoop = () => {
            clearTimeout(t);
            resolve();
          };
        });
        this.wakeLoop = null;
        continue;
      }
      if (this.stopping) {
        // Fetched while the stop began: give it back untouched, same attempt.
        await Promise.allSettled(batch.map((d) => this.release(d)));
        break;
      }
      for (const d of batch) {
        if (this.inFlight.size < this.concurrency) this.begin(d);
        else this.buffer.push(d);
      }
      // Slots may have freed while the fetch was out (their wake-up found nobody waiting): look again.
      if (batch.length === 0 && this.inFlight.size >= this.concurrency) {
        // Everything busy and nothing more to take: wait for a slot instead of polling.
        await new Promise<void>((resolve) => (this.wakeLoop = resolve));
        this.wakeLoop = null;
      }
    }
    // Stopped: what waited in the buffer never started; give it back.
    const left = this.takeBuffer();
    if (left.length > 0) await Promise.allSettled(left.map((d) => this.release(d)));
  }

  private buffered(): number {
    return this.buffer.length - this.bufferHead;
  }

  private takeBuffer(): Delivery[] {
    const out = this.buffer.slice(this.bufferHead);
    this.buffer = [];
    this.bufferHead = 0;
    return out;
  }

  private wake(): void {
    const w = this.wakeLoop;
    this.wakeLoop = null;
    w?.();
  }

  // ------------------------------------------------------------------ running

  private begin(d: Delivery): void {
    const entry: InFlight = { d, name: d.task.name, started: monotonicMs(), over: false, controller: null, timer: null };
    this.inFlight.add(entry);
    void this.execute(entry);
  }

  private async execute(entry: InFlight): Promise<void> {
    const { d } = entry;
    const task = d.task;
    const maxRetries = task.maxRetries ?? this.maxRetries;
    try {
      if (d.raw !== undefined) {
        const shown = d.raw.length > 120 ? `${d.raw.slice(0, 120)}…` : d.raw;
        return await this.dead(entry, `unparsable task: not a task record written by arbiter: ${shown}`, false);
      }
      const handler = this.app.named ? this.app.named.get(task.name) : this.app.any;
      if (!handler) {
        const near = this.app.named ? closest(task.name, [...this.app.named.keys()]) : undefined;
        return await this.dead(
          entry,
          `unknown task name "${task.name}": this worker handles ${this.known || '(nothing)'}` + (near ? ` — did you mean "${near}"?` : ''),
          false,
        );
      }
      if (task.attempt > maxRetries + 1) {
        const last = task.history[task.history.length - 1]?.error ?? 'unknown';
        return await this.dead(entry, `not run: attempt ${task.attempt} is past maxRetries ${maxRetries} + 1 (last error: ${last})`, false);
      }
      this.ctx.working(`task ${task.name} id=${task.id}`);
      let outcome: Outcome;
      try {
        outcome = await this.runHandler(entry, handler, maxRetries);
      } finally {
        if (entry.timer) clearTimeout(entry.timer);
        this.record(entry);
      }
      if (entry.over) return; // released by a stop meanwhile
      entry.over = true;
      if (outcome.ok) {
        this.tc.processed++;
        const kept = this.resultTtlMs > 0 ? this.succeeded(task, outcome.value) : undefined;
        await this.settle(entry, 'ack', () => this.broker!.ack(d, kept));
        return;
      }
      this.tc.failed++;
      const error = oneLine(outcome.err);
      if (task.attempt <= maxRetries) {
        const wait = backoffMs(task.attempt);
        this.tc.retried++;
        this.ctx.log.warn(
          { event: 'task_failed', task: task.id, taskName: task.name, attempt: task.attempt, retryInMs: wait },
          `task ${task.name} id=${task.id} failed (attempt ${task.attempt} of ${maxRetries + 1}): ${error}; retrying in ${(wait / 1000).toFixed(1)} s`,
        );
        await this.settle(entry, 'fail', () => this.broker!.fail(d, error, Date.now() + wait));
      } else {
        await this.dead(entry, error, true);
      }
    } catch (err) {
      // Our own bug or a broker error outside settle(): log; the lease brings the task back.
      this.ctx.log.error({ event: 'task_error', err, task: task.id }, `task ${task.name || '?'} id=${task.id}: ${oneLine(err)}`);
    } finally {
      this.vacate(entry);
    }
  }

  /** Frees the entry's slot (once) and wakes the fetch loop. */
  private vacate(entry: InFlight): void {
    if (!this.inFlight.delete(entry)) return;
    if (this.bufferHead < this.buffer.length && !this.stopping) {
      const next = this.buffer[this.bufferHead++]!;
      if (this.bufferHead === this.buffer.length) {
        this.buffer = [];
        this.bufferHead = 0;
      }
      this.begin(next);
    }
    if (this.inFlight.size === 0) {
      this.ctx.working(null);
      if (this.settling.size === 0) this.wakeDrain?.();
    }
    this.wake();
  }

  /** The result of a task that succeeded, as it will be kept; an error result when it cannot be kept. */
  private succeeded(task: Delivery['task'], value: unknown): KeptResult {
    const base = { id: task.id, name: task.name, attempts: task.attempt, finishedAt: Date.now() };
    let json: string | undefined;
    let problem: string | null = null;
    try {
      json = JSON.stringify({ ...base, status: 'succeeded', value: value === undefined ? null : value } satisfies TaskResult);
    } catch (err) {
      problem = `the task succeeded, but its return value is not JSON (${oneLine(err)}); nothing else was kept`;
    }
    const max = this.ctx.settings.maxResultSize;
    if (json !== undefined && max > 0 && Buffer.byteLength(json) > max)
      problem = `the task succeeded, but its result of ${Buffer.byteLength(json)} bytes is larger than maxResultSize (${max} bytes); nothing else was kept`;
    if (problem === null) return { json: json!, ttlMs: this.resultTtlMs };
    this.ctx.log.warn({ event: 'task_result_dropped', task: task.id, taskName: task.name }, `task ${task.name} id=${task.id}: ${problem}`);
    return this.failedResult(task, problem);
  }

  private failedResult(task: Delivery['task'], error: string): KeptResult {
    const r: TaskResult = { id: task.id, name: task.name, status: 'failed', error, attempts: task.attempt, finishedAt: Date.now() };
    return { json: JSON.stringify(r), ttlMs: this.resultTtlMs };
  }

  private runHandler(entry: InFlight, handler: TaskHandler, maxRetries: number): Promise<Outcome> {
    const ctx = new Ctx(entry, this.ctx.log, maxRetries);
    return new Promise((resolve) => {
      if (this.taskTimeoutMs > 0) {
        entry.timer = setTimeout(() => {
          const err = new TaskTimeoutError(this.ctx.settings.taskTimeout);
          // The signal tells a cooperative handler to stop; either way the slot is freed now.
          (entry.controller ??= new AbortController()).abort(err);
          resolve({ ok: false, err });
        }, this.taskTimeoutMs);
      }
      let r: unknown;
      try {
        r = handler(entry.d.task.payload, ctx);
      } catch (err) {
        resolve({ ok: false, err });
        return;
      }
      if (r !== null && typeof r === 'object' && typeof (r as PromiseLike<unknown>).then === 'function') {
        (r as PromiseLike<unknown>).then(
          (value) => resolve({ ok: true, value }),
          (err: unknown) => resolve({ ok: false, err }),
        );
      } else {
        resolve({ ok: true, value: r });
      }
    });
  }

  private record(entry: InFlight): void {
    const ms = monotonicMs() - entry.started;
    this.meanMs = Number.isNaN(this.meanMs) ? ms : this.meanMs * 0.9 + ms * 0.1;
    let name = entry.name;
    let rec = this.tc.durations[name];
    if (!rec) {
      if (this.durationNames >= MAX_DURATION_NAMES) name = '(other)';
      rec = this.tc.durations[name] ??= (this.durationNames++, { count: 0, totalMs: 0, maxMs: 0 });
    }
    rec.count++;
    rec.totalMs += ms;
    if (ms > rec.maxMs) rec.maxMs = ms;
  }

  private async dead(entry: InFlight, error: string, ran: boolean): Promise<void> {
    entry.over = true;
    const t = entry.d.task;
    this.tc.dead++;
    this.ctx.log.error(
      { event: 'task_dead', task: t.id, taskName: t.name, attempt: t.attempt, error },
      `task ${t.name || '(unparsable)'} id=${t.id} moved to the dead-letter queue` + (ran ? ` after ${t.attempt} attempt${t.attempt === 1 ? '' : 's'}` : '') + `: ${error}`,
    );
    const kept = this.resultTtlMs > 0 && entry.d.raw === undefined ? this.failedResult(t, error) : undefined;
    await this.settle(entry, 'deadLetter', () => this.broker!.deadLetter(entry.d, error, kept));
  }

  private async settle(entry: InFlight, what: string, op: () => Promise<void>): Promise<void> {
    this.settling.add(entry);
    this.vacate(entry);
    try {
      await op();
    } catch (err) {
      // Not settled: the claim expires after its lease and the task comes back (at-least-once).
      this.ctx.log.error(
        { event: 'task_settle_failed', task: entry.d.task.id, op: what, err },
        `could not ${what} task ${entry.d.task.id}: ${oneLine(err)}; it will be delivered again after its lease`,
      );
    }
    this.settling.delete(entry);
    if (this.settling.size === 0 && this.inFlight.size === 0) this.wakeDrain?.();
    this.finished++;
    this.ctx.done();
  }

  private async release(d: Delivery): Promise<void> {
    try {
      await this.broker!.release?.(d);
    } catch (err) {
      this.ctx.log.warn({ event: 'task_release_failed', task: d.task.id, err }, `could not release task ${d.task.id}: ${oneLine(err)}; it comes back after its lease`);
    }
  }

  // ------------------------------------------------------------------ stopping

  stop(graceful: boolean): Promise<void> {
    this.stopping = true;
    this.wake();
    if (!graceful) {
      this.quick = true;
      this.wakeDrain?.();
    }
    return (this.stopped ??= this.shutdown());
  }

  private async shutdown(): Promise<void> {
    const s = this.ctx.settings;
    const log = this.ctx.log;
    // The runtime exits on its own at gracefulTimeout - 100 ms: keep time to release and close.
    const graceMs = s.gracefulTimeout * 1000;
    const budget = this.quick ? 0 : Math.max(0, graceMs - Math.min(2000, Math.max(300, graceMs * 0.1)));
    const inFlightAtStop = this.inFlight.size;
    if (budget > 0 && this.inFlight.size + this.settling.size > 0) {
      log.info({ event: 'task_draining', inFlight: this.inFlight.size }, `stopping: waiting up to ${(budget / 1000).toFixed(1)} s for ${this.inFlight.size} task(s) in flight`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, budget);
        this.wakeDrain = () => {
          clearTimeout(timer);
          resolve();
        };
        if (this.inFlight.size + this.settling.size === 0 || this.quick) this.wakeDrain();
      });
      this.wakeDrain = null;
    }
    // The fetch in progress returns within FETCH_WAIT_MS and releases what it brought.
    await Promise.race([this.loopDone, sleep(this.quick ? 200 : FETCH_WAIT_MS + 500)]);
    const left = [...this.inFlight].filter((e) => !e.over);
    for (const e of left) {
      e.over = true;
      if (e.timer) clearTimeout(e.timer);
      e.controller?.abort(new Error('worker stopping'));
    }
    if (left.length > 0) {
      log.warn(
        { event: 'task_released', count: left.length, tasks: left.slice(0, 20).map((e) => e.d.task.id) },
        `stopping: released ${left.length} unfinished task(s) for redelivery`,
      );
      await Promise.race([Promise.allSettled(left.map((e) => this.release(e.d))), sleep(1500)]);
    } else if (inFlightAtStop > 0) {
      log.info({ event: 'task_drained', count: inFlightAtStop }, `stopping: all ${inFlightAtStop} task(s) in flight finished`);
    }
    // Outcomes still being written (an ack racing the stop) get a moment to land.
    for (let waited = 0; this.settling.size > 0 && waited < 1000; waited += 20) await sleep(20);
    await Promise.race([this.broker?.close(), sleep(2500)]);
  }

  counters() {
    return { requests: this.finished, active: this.inFlight.size + this.settling.size, tasks: this.tc };
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

const taskClass: WorkerClass = {
  name: 'task',
  listens: false,
  async adapt(value, settings, where) {
    // Queue names are settings: a bad one is a usage error, found before forking (the
    // broker URL's grammar is checked by the settings table).
    try {
      if (settings.queue.length === 0) throw new Error('queue is empty: name at least one queue');
      if (new Set(settings.queue).size !== settings.queue.length) throw new Error(`queue names a queue twice: ${settings.queue.join(', ')}`);
      for (const queue of settings.queue) resolveOptions({ queue, ...(settings.dlq ? { dlq: settings.dlq } : {}), leaseMs: leaseMsFor(settings) });
    } catch (err) {
      throw new SettingError((err as Error).message);
    }
    if (typeof value === 'function') {
      return { app: { named: null, any: value as TaskHandler } satisfies TaskApp, picked: 'task: one function for every task name' };
    }
    const named = handlersOf(value);
    if (named.size === 0)
      throw new AppLoadError(
        `export ${where} is ${describe(value)}, not task handlers (an object of named handler functions, e.g. { sendEmail: async (payload, ctx) => … }, or one function)`,
      );
    const names = [...named.keys()];
    return {
      app: { named, any: null } satisfies TaskApp,
      picked: `task: ${names.length} handler${names.length === 1 ? '' : 's'} (${names.slice(0, 8).join(', ')}${names.length > 8 ? ', …' : ''})`,
    };
  },
  create(ctx, app) {
    return new TaskWorker(ctx, app as TaskApp);
  },
};

export default taskClass;
