/**
 * The worker-class contract. A worker class is a module whose default export implements
 * `WorkerClass`; the built-in `http`, `h11` and `task` classes and any custom class given
 * with `-k ./my-class.js` are driven the same way by the worker runtime (runtime.ts).
 */
import type { Logger } from 'pino';
import type { Settings } from '../src/settings.js';
import type { InheritedListener } from '../src/sockets.js';
import type { TaskCounters } from '../src/messages.js';

/** The settings a worker sees: everything but the hooks, which live in the config file. */
export type WorkerSettings = Omit<Settings, 'workers'> & { workers: number };

export interface Hooks {
  /** Run a hook if configured; its exceptions and rejections are logged with its name, never thrown. */
  run(name: string, ...args: unknown[]): Promise<void>;
  has(name: string): boolean;
}

export interface WorkerContext {
  settings: WorkerSettings;
  listeners: InheritedListener[];
  log: Logger;
  hooks: Hooks;
  /** Gunicorn's worker "age": the master's sequence number for this worker. */
  age: number;
  /**
   * Call once per finished request or task. Returns false once `maxRequests` is reached,
   * after which the runtime arranges the worker's graceful retirement.
   */
  done(): void;
  /** The work most recently started, for the WORKER TIMEOUT report. Cheap: one assignment. */
  working(what: string | { method?: string; url?: string } | null): void;
}

export interface WorkerInstance {
  /** Resolves once the worker accepts work. */
  start(): Promise<void>;
  /**
   * Graceful: stop accepting, finish what is in flight (HTTP responses carry
   * `Connection: close`), then resolve. Quick: drop everything now.
   */
  stop(graceful: boolean, opts?: { keepAccepting?: boolean }): Promise<void>;
  counters(): { requests: number; active: number; statuses?: number[]; tasks?: TaskCounters };
  /** USR1: reopen any log files the class writes itself. */
  reopenLogs?(): void;
}

export interface WorkerClass {
  readonly name: string;
  /**
   * Turn the app module's export into what this class runs, or throw an AppLoadError that
   * names the export and what was found. Called in the master too, to validate before binding.
   */
  adapt(value: unknown, settings: WorkerSettings, where: string): Promise<{ app: unknown; picked: string }>;
  create(ctx: WorkerContext, app: unknown): WorkerInstance;
  /** Task classes take no listeners; the master then binds nothing. Default true. */
  readonly listens?: boolean;
}
