/**
 * The package's public API: `defineConfig` for typed config files, and `enqueue` for tasks.
 * Importing it loads nothing else: a config file that only wants `defineConfig` pays for
 * nothing, and the broker is loaded on the first `enqueue()`.
 */
import type { Broker, TaskResult } from './core/brokers/types.js';
import type { ArbiterConfig } from './core/settings.js';

export type { ArbiterConfig, Settings } from './core/settings.js';
export type { TaskContext, TaskHandler, TaskHandlers, TaskAttempt } from './core/tasks.js';
export type { BrokerStats, DeadTask, TaskResult } from './core/brokers/types.js';
export type { PoolConfig, ScheduleEntry } from './core/settings.js';

/** Identity function that gives editors the types of every setting and hook. */
export function defineConfig(config: ArbiterConfig): ArbiterConfig {
  return config;
}

// ---------------------------------------------------------------------------------------
// Producer side of the `task` worker class.

export interface EnqueueOpts {
  /** Run no earlier than this many ms from now. */
  delay?: number;
  /** Retries after a failed attempt, for this task (overrides the workers' `maxRetries`). */
  maxRetries?: number;
  /** Task id (default: a random UUID); returned, and shown in logs and `arbiter dlq list`. */
  id?: string;
  /** Default: `ARBITER_BROKER`, else `spool:.arbiter-spool` (relative to the current directory). */
  broker?: string;
  /** Default: `ARBITER_QUEUE` (one queue), else `default`. */
  queue?: string;
}

/** Where a task went: what `result()` and `resultOf()` look in. */
export type WhereOpts = Pick<EnqueueOpts, 'broker' | 'queue'>;

const brokers = new Map<string, Promise<Broker>>();

async function brokerFor(opts: WhereOpts): Promise<{ broker: Broker; queue: string }> {
  const { resolve } = await import('./config.js');
  const cli: Record<string, unknown> = {};
  if (opts.broker !== undefined) cli.broker = opts.broker;
  if (opts.queue !== undefined) cli.queue = [opts.queue];
  // The producer's own options over ARBITER_* over the defaults; a config file is the server's.
  const { settings } = await resolve({ cli, env: process.env, cwd: process.cwd(), configFile: 'skip' }, ['broker', 'queue']);
  const url = settings.broker;
  if (settings.queue.length !== 1)
    throw new Error(`queue ${JSON.stringify(settings.queue.join(','))} names ${settings.queue.length} queues; a task goes to one: pass { queue }`);
  const queue = settings.queue[0]!;
  // Spool paths are relative to the directory the producer runs in.
  const key = `${url.startsWith('spool:') ? `${process.cwd()}\n` : ''}${url}\n${queue}`;
  // Loaded before the lookup: no await between looking and caching, or concurrent first calls would each open one.
  const { openBroker } = await import('./core/brokers/open.js');
  let b = brokers.get(key);
  if (!b) {
    b = openBroker(url, { queue, cwd: process.cwd() });
    brokers.set(key, b);
    // A failed open is not cached: the next call tries again.
    b.catch(() => brokers.delete(key));
  }
  return { broker: await b, queue };
}

/** A task that failed for good: its last error, after `attempts` attempts (or why it was not run). */
export class TaskFailedError extends Error {
  readonly attempts: number;
  readonly taskId: string;
  constructor(result: TaskResult) {
    super(result.error ?? 'task failed');
    this.name = 'TaskFailedError';
    this.attempts = result.attempts;
    this.taskId = result.id;
  }
}

/** No result within the timeout: the task has not finished, or its workers keep none (`resultTtl` 0). */
export class ResultTimeoutError extends Error {
  constructor(id: string, timeoutMs: number) {
    super(`no result for task ${id} within ${timeoutMs} ms (not finished yet, or the workers keep no results: set resultTtl)`);
    this.name = 'ResultTimeoutError';
  }
}

/**
 * What `enqueue()` resolves with: the task's id and a way to wait for its result. It stands
 * for its id where a string is wanted: `${handle}`, `String(handle)`, `handle == id` and
 * JSON give the id; use `handle.id` for a real string (`===`, Map keys, `assert.equal`).
 */
export class TaskHandle {
  constructor(
    readonly id: string,
    readonly queue: string,
    private readonly where: WhereOpts,
  ) {}

  /**
   * Waits up to `timeout` ms (default 30 000) for the task to finish: resolves with the
   * handler's return value, rejects with a TaskFailedError carrying its final error, or a
   * ResultTimeoutError. Needs `resultTtl` on the workers.
   */
  result(opts: { timeout?: number } = {}): Promise<unknown> {
    return resultOf(this.id, { ...this.where, queue: this.queue, ...opts });
  }

  toString(): string {
    return this.id;
  }

  toJSON(): string {
    return this.id;
  }

  [Symbol.toPrimitive](): string {
    return this.id;
  }
}

/**
 * Puts a task on a queue for `-k task` workers and resolves once the broker has it durably
 * (spool: fsynced; Redis: acknowledged by the server, and by replicas with `?wait=N`). The
 * payload must be JSON. Resolves with a TaskHandle: its `id`, and `result()`.
 */
export async function enqueue(name: string, payload: unknown, opts: EnqueueOpts = {}): Promise<TaskHandle> {
  const { broker, queue } = await brokerFor(opts);
  const o: { delay?: number; maxRetries?: number; id?: string } = {};
  if (opts.delay !== undefined) o.delay = opts.delay;
  if (opts.maxRetries !== undefined) o.maxRetries = opts.maxRetries;
  if (opts.id !== undefined) o.id = opts.id;
  const id = await broker.enqueue(name, payload, o);
  const where: WhereOpts = {};
  if (opts.broker !== undefined) where.broker = opts.broker;
  return new TaskHandle(id, queue, where);
}

/** The result of task `id` (as TaskHandle.result), for a producer that kept only the id. */
export async function resultOf(id: string, opts: WhereOpts & { timeout?: number } = {}): Promise<unknown> {
  const timeout = opts.timeout ?? 30_000;
  const { broker } = await brokerFor(opts);
  const r = await broker.waitResult(id, timeout);
  if (!r) throw new ResultTimeoutError(id, timeout);
  if (r.status === 'failed') throw new TaskFailedError(r);
  return r.value;
}

/** Closes the brokers `enqueue()` opened (Redis connections keep a process alive). */
export async function closeBrokers(): Promise<void> {
  const open = [...brokers.values()];
  brokers.clear();
  await Promise.allSettled(open.map(async (p) => (await p).close()));
}
