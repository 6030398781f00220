/**
 * The broker layer of the `task` worker class: one small interface, two implementations
 * (`spool:PATH`, embedded, and `redis://…`, Redis Streams). Delivery is at-least-once: a
 * delivery stays claimed until `ack`, `fail`, `deadLetter` or `release` settles it, and a
 * claim whose process died (or stopped renewing) expires after `leaseMs` and the task is
 * delivered again with `attempt + 1` and a "lease expired" history entry.
 *
 * While a delivery is outstanding the broker renews its lease in the background, so a slow
 * handler is not redelivered to a second worker just because it runs longer than `leaseMs`;
 * only a dead process — or one whose event loop is blocked for a whole lease — loses its claims.
 */
export interface TaskAttempt {
  /** The attempt that ended (1-based). */
  attempt: number;
  /** When it ended, epoch ms. */
  at: number;
  error: string;
}

export interface TaskRecord {
  id: string;
  name: string;
  /** JSON value. */
  payload: unknown;
  /**
   * This delivery's attempt, 1-based. A lease expiry also counts as an attempt, so a task that
   * crashes its worker every time still reaches its retry limit; the consumer should dead-letter
   * a delivery whose attempt already exceeds `maxRetries + 1`.
   */
  attempt: number;
  /** Per-task override of the worker's `maxRetries`. */
  maxRetries?: number;
  /** Epoch ms of the first enqueue. */
  enqueuedAt: number;
  /** One entry per earlier attempt that did not succeed. */
  history: TaskAttempt[];
}

export interface Delivery {
  task: TaskRecord;
  /** Broker-specific claim handle; pass the Delivery back as is. */
  receipt: unknown;
  /**
   * Set when the stored task could not be parsed; then `task.name` is '', `task.payload` is
   * null and `task.id` is the broker's own handle for the entry. Dead-letter such deliveries.
   */
  raw?: string;
}

export interface EnqueueOptions {
  /** Not before this many ms from now. */
  delay?: number;
  /**
   * How long to wait for a broker that cannot be reached (ms, default 5000) before failing.
   * A task is reported enqueued only once the broker has it.
   */
  timeout?: number;
  maxRetries?: number;
  /** The task id (default: a random UUID). Ids are not deduplicated. */
  id?: string;
}

/**
 * What a finished task left for its producer (`resultTtl`): the handler's return value, or
 * the error that ended it for good (the last attempt's, or why it was not run). A task that
 * failed and was retried leaves only the result of its last attempt.
 */
export interface TaskResult {
  id: string;
  name: string;
  status: 'succeeded' | 'failed';
  /** The handler's return value as JSON (undefined became null), when it succeeded. */
  value?: unknown;
  /** The final error, when it failed. */
  error?: string;
  /** Attempts made, this one included. */
  attempts: number;
  /** Epoch ms. */
  finishedAt: number;
}

/** A result to keep beside the outcome that settles a delivery: its JSON and how long to keep it. */
export interface KeptResult {
  json: string;
  ttlMs: number;
}

export interface BrokerStats {
  /** Waiting and due now. */
  ready: number;
  /** Waiting for their due time (delayed or backing off). */
  delayed: number;
  /** Claimed by a consumer and not yet settled. */
  inFlight: number;
  /** In the dead-letter queue. */
  dead: number;
}

export interface DeadTask {
  /** The task as of its last attempt; `history` ends with the error that killed it. */
  task: TaskRecord;
  error: string;
  /** Epoch ms. */
  deadAt: number;
  /** The queue it came from; `retryDead` sends it back there. */
  queue: string;
  /** The unparsable stored form, when that is why it died. */
  raw?: string;
}

/** Whether the broker can be reached, and since when. */
export interface BrokerHealth {
  up: boolean;
  /** Epoch ms of the last change. */
  since: number;
  /** Why it is down. */
  error?: string;
}

export interface Broker {
  /**
   * Claims up to `max` due tasks. Waits up to `waitMs` for at least one (0: do not wait);
   * resolves early with [] when `close()` is called.
   */
  fetch(max: number, waitMs: number): Promise<Delivery[]>;
  /**
   * The task is done; forget it (and keep `result` for its producer). A claim lost to lease
   * expiry is ignored (it ran twice).
   */
  ack(d: Delivery, result?: KeptResult): Promise<void>;
  /** Schedules attempt `attempt + 1` at `retryAt` (epoch ms) with `error` added to the history. */
  fail(d: Delivery, error: string, retryAt: number): Promise<void>;
  /** Moves the task to the dead-letter queue with its last error and attempt history (and keeps `result`). */
  deadLetter(d: Delivery, error: string, result?: KeptResult): Promise<void>;
  /**
   * Gives back unfinished work (on shutdown) so it is delivered again soon, same attempt.
   * Without it the claim would wait for its lease to expire.
   */
  release?(d: Delivery): Promise<void>;
  /**
   * Hands back at once, as their next attempt with `reason` in the history, the deliveries
   * claimed by `consumer`, whose process is known to be gone (the master saw it exit): they
   * need not wait for their lease. Returns how many.
   */
  releaseConsumer(consumer: string, reason: string): Promise<number>;
  enqueue(name: string, payload: unknown, opts?: EnqueueOptions): Promise<string>;
  /**
   * A schedule's run: enqueues unless a run of schedule `key` at `tick` (epoch ms) or later
   * was enqueued already, by this process or any other on the same broker. Resolves with
   * the task id, or null when another arbiter had it. Ticks of one key only move forward.
   */
  enqueueScheduled(key: string, tick: number, name: string, payload: unknown, opts?: EnqueueOptions): Promise<string | null>;
  /** The latest tick enqueued for schedule `key`, or null when none ever was. */
  lastScheduled(key: string): Promise<number | null>;
  /** The kept result of task `id` on this queue, or null (not finished, expired, never kept). */
  getResult(id: string): Promise<TaskResult | null>;
  /** Waits up to `timeoutMs` for the result of task `id`; null when none came. */
  waitResult(id: string, timeoutMs: number): Promise<TaskResult | null>;
  stats(): Promise<BrokerStats>;
  /** Oldest first; default limit 100. */
  listDead(limit?: number): Promise<DeadTask[]>;
  /** Sends dead tasks (all, or those with these task ids) back to their queue as attempt 1. */
  retryDead(ids?: string[]): Promise<number>;
  /** Deletes dead tasks (all, or those with these task ids). */
  purgeDead(ids?: string[]): Promise<number>;
  /** Reachability, for brokers that can be unreachable (Redis); called on every change. */
  onHealth?(listener: (h: BrokerHealth) => void): void;
  /** What about this broker's configuration could lose tasks, as warnings for the start-up log. */
  durabilityWarnings?(): Promise<string[]>;
  /** Stops timers and blocking reads; does not settle outstanding deliveries (leases will). */
  close(): Promise<void>;
}

export interface OpenBrokerOptions {
  queue: string;
  /** Dead-letter queue name; default `${queue}:dead`. */
  dlq?: string;
  /** This consumer's name, unique per process; default `${hostname}:${pid}`. */
  consumer?: string;
  /** How long a claim survives without renewal; default 30 000 ms. */
  leaseMs?: number;
  /** Base of a relative spool path; default process.cwd(). */
  cwd?: string;
  /** Redis: refuse to enqueue beyond this many waiting tasks; default 1 000 000 (0: no cap). */
  maxLen?: number;
  /** Told what the broker's connection went through (a failover to a new primary). */
  onEvent?: (e: BrokerEvent) => void;
}

/** Redis Sentinel: the connection now goes to `address`, the primary after a failover. */
export type BrokerEvent = { kind: 'primary'; address: string; previous: string | null; master: string };

/** What the implementations get: every option resolved. */
export interface ResolvedBrokerOptions {
  queue: string;
  dlq: string;
  consumer: string;
  leaseMs: number;
  cwd: string;
  maxLen: number;
  onEvent?: (e: BrokerEvent) => void;
}
