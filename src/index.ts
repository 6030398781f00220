/**
 * The package's public API: `defineConfig` for typed config files, and `enqueue` for tasks.
 * Importing it loads nothing else: a config file that only wants `defineConfig` pays for
 * nothing, and the broker is loaded on the first `enqueue()`.
 */
import type { Broker } from './core/brokers/types.js';
import type { ArbiterConfig } from './core/settings.js';

export type { ArbiterConfig, Settings } from './core/settings.js';
export type { TaskContext, TaskHandler, TaskHandlers, TaskAttempt } from './core/tasks.js';
export type { BrokerStats, DeadTask } from './core/brokers/types.js';

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
  /** Default: `ARBITER_QUEUE`, else `default`. */
  queue?: string;
}

const brokers = new Map<string, Promise<Broker>>();

async function brokerFor(opts: EnqueueOpts): Promise<Broker> {
  const { resolve } = await import('./config.js');
  const cli: Record<string, unknown> = {};
  if (opts.broker !== undefined) cli.broker = opts.broker;
  if (opts.queue !== undefined) cli.queue = opts.queue;
  // The producer's own options over ARBITER_* over the defaults; a config file is the server's.
  const { settings } = await resolve({ cli, env: process.env, cwd: process.cwd(), configFile: 'skip' }, ['broker', 'queue']);
  const { broker: url, queue } = settings;
  // Spool paths are relative to the directory the producer runs in.
  const key = `${url.startsWith('spool:') ? `${process.cwd()}\n` : ''}${url}\n${queue}`;
  let b = brokers.get(key);
  if (!b) {
    const { openBroker } = await import('./core/brokers/open.js');
    b = openBroker(url, { queue, cwd: process.cwd() });
    brokers.set(key, b);
    // A failed open is not cached: the next call tries again.
    b.catch(() => brokers.delete(key));
  }
  return b;
}

/**
 * Puts a task on a queue for `-k task` workers and resolves with its id once the broker has
 * it durably (spool: fsynced; Redis: acknowledged by the server). The payload must be JSON.
 */
export async function enqueue(name: string, payload: unknown, opts: EnqueueOpts = {}): Promise<string> {
  const broker = await brokerFor(opts);
  const o: { delay?: number; maxRetries?: number; id?: string } = {};
  if (opts.delay !== undefined) o.delay = opts.delay;
  if (opts.maxRetries !== undefined) o.maxRetries = opts.maxRetries;
  if (opts.id !== undefined) o.id = opts.id;
  return broker.enqueue(name, payload, o);
}

/** Closes the brokers `enqueue()` opened (Redis connections keep a process alive). */
export async function closeBrokers(): Promise<void> {
  const open = [...brokers.values()];
  brokers.clear();
  await Promise.allSettled(open.map(async (p) => (await p).close()));
}
