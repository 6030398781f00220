/**
 * The task-handler contract: what a `-k task` app module exports and what each handler sees.
 *
 *   import type { TaskHandlers } from 'arbiterd';
 *   export const handlers: TaskHandlers = { sendEmail: async (payload, ctx) => { ... } };
 */
import type { Logger } from './logging.js';
import type { TaskAttempt } from './brokers/types.js';

export type { TaskAttempt };

export interface TaskContext {
  /** The task id (the producer's, or a random UUID). */
  readonly id: string;
  /** The task name it was enqueued under. */
  readonly name: string;
  /** This attempt, 1-based; a lease that expired (the worker died) counts as an attempt. */
  readonly attempt: number;
  /** Retries allowed after a failed attempt (the task's own, or the `maxRetries` setting). */
  readonly maxRetries: number;
  /** Epoch ms of the first enqueue. */
  readonly enqueuedAt: number;
  /** The earlier attempts that did not succeed, oldest first. */
  readonly history: readonly TaskAttempt[];
  /**
   * Aborted after `taskTimeout` seconds (never when it is 0) and when the worker is stopped
   * at once. The attempt then counts as failed whether or not the handler stops.
   */
  readonly signal: AbortSignal;
  /** The worker's logger with the task's id and name bound. */
  readonly log: Logger;
}

/** One handler: resolve when done (the task is then acknowledged), throw or reject to fail. */
export type TaskHandler<P = any> = (payload: P, ctx: TaskContext) => unknown;

/** Named handlers, as the app module exports them for `-k task`. */
export type TaskHandlers = Record<string, TaskHandler>;
