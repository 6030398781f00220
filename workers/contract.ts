/**
 * The worker-class contract. A worker class is a module whose default export implements
 * `WorkerClass`; the built-in `http`, `h11` and `task` classes and any custom class given
 * with `-k ./my-class.js` are driven the same way by the worker runtime (runtime.ts).
 */
import type { Logger } from '../src/core/logging.js';
import type { Hooks } from '../src/core/hooks.js';
import type { ClassCounters, InheritedListener } from '../src/core/protocol.js';
import type { WorkerSettings } from '../src/core/settings.js';

export type { Hooks, WorkerSettings };

export interface WorkerContext {
  settings: WorkerSettings;
  listeners: InheritedListener[];
  log: Logger;
  hooks: Hooks;
  /** Gunicorn's worker "age": the master's sequence number for this worker. */
  age: number;
  /**
   * Call once per request or task. When `maxRequests` is reached the runtime asks the
   * master to retire the worker gracefully; the class goes on serving until told to stop.
   */
  done(): void;
  /** The work most recently started, for the WORKER TIMEOUT report. Cheap: one assignment. */
  working(what: string | { method?: string; url?: string } | null): void;
  /**
   * A fresh copy of inherited listener `index`, sent by the master: a class that closed its
   * listening server to stop accepting (workerConnections) listens on it to accept again.
   */
  listener(index: number): Promise<object>;
  /** The app module's lifecycle exports (SPEC §3), for the class to call at its moments. */
  app: AppLifecycle;
}

/**
 * The module's `onServer(server)` and `shutdown()`, safe to call whether it exports them or
 * not (`startup()` the runtime runs itself, before `start()`).
 */
export interface AppLifecycle {
  /** Once per server, when it exists and before it serves. A throw is a boot failure. */
  onServer(server: object): Promise<void>;
  /**
   * Once, when a graceful stop has stopped accepting (requests in flight still run). Errors
   * are logged. A class that does not call it gets it called after its stop() resolved.
   */
  shutdown(): Promise<void>;
}

export interface WorkerInstance {
  /** Resolves once the worker accepts work. */
  start(): Promise<void>;
  /**
   * Graceful: stop accepting, finish what is in flight (HTTP responses carry
   * `Connection: close`), then resolve. Quick: drop everything now.
   */
  stop(graceful: boolean, opts?: { keepAccepting?: boolean }): Promise<void>;
  counters(): ClassCounters;
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
  /**
   * Script-mode modules (interface `listen`: the module creates its server and calls
   * listen() itself). `run`: the class runs them, adapt() gets a ScriptApp. `refuse`: such a
   * module is a usage error that names the class. Unset: listen() calls are not watched.
   */
  readonly scripts?: 'run' | 'refuse';
}
