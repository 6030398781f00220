/**
 * The master↔worker protocol: everything the two processes must agree on. The IPC messages
 * (both sides switch on `t`), the boot description the master puts in the worker's
 * environment, the descriptor layout, the exit codes, the stuck report the master takes
 * for the master, and the names of arbiter's own environment variables. Keep messages small:
 * heartbeats cross the channel every second.
 */
import type { WorkerSettings } from './settings.js';

// ---------------------------------------------------------------------------------------
// Exit codes (SPEC §4), of the master and of a worker.

export const EXIT = {
  /** Clean stop. */
  OK: 0,
  /** Runtime failure, including a listener that cannot be bound. */
  RUNTIME: 1,
  /** Usage or config error, and any failure under --check-config. */
  USAGE: 2,
  /** The app cannot be loaded; from a worker: "I could not boot", which stops the arbiter on a first boot. */
  BOOT: 3,
} as const;

// ---------------------------------------------------------------------------------------
// Descriptors. A worker finds listener i at WORKER_FD_BASE + i (0 is /dev/null, 1 and 2 are
// pipes to the master, which writes what comes through them to the log; 3 is the IPC
// channel), then, for an access log to `-`, the master's own stdout (WorkerBoot.stdoutFd). A master started
// by USR2 finds the listeners at REEXEC_FD_BASE + i, then its hand-over pipe.

export const WORKER_FD_BASE = 4;
export const REEXEC_FD_BASE = 3;

/** What a worker is told about each listener it inherits. */
export interface InheritedListener {
  fd: number;
  label: string;
  kind: 'tcp' | 'unix';
}

// ---------------------------------------------------------------------------------------
// Environment variables that are arbiter's plumbing, not settings.

export const ENV = {
  /** JSON `WorkerBoot`, master → worker. */
  WORKER: 'ARBITER_WORKER',
  /** Extra command-line arguments, as GUNICORN_CMD_ARGS. */
  CMD_ARGS: 'ARBITER_CMD_ARGS',
  /** Listeners handed to a USR2 master: `3=LABEL,4=LABEL`. */
  FDS: 'ARBITER_FDS',
  /** Set in a USR2 master: the pid of the master that started it. */
  UPGRADE_FROM: 'ARBITER_UPGRADE_FROM',
  /** Set in a USR2 master: the name it takes over from the old master once it serves. */
  UPGRADE_NAME: 'ARBITER_UPGRADE_NAME',
  /** Set in a USR2 master: the descriptor on which it tells the old master how its start went. */
  UPGRADE_FD: 'ARBITER_UPGRADE_FD',
  /** The per-user runtime directory, instead of $XDG_RUNTIME_DIR/arbiter or /tmp/arbiter-UID. */
  RUNTIME_DIR: 'ARBITER_RUNTIME_DIR',
  /** Set in a daemon started by `-D`: report to the launcher until serving. */
  DAEMON: 'ARBITER_DAEMON',
  /** Test and tuning knobs of the task class. */
  TASK_BACKOFF_MS: 'ARBITER_TASK_BACKOFF_MS',
  TASK_LEASE_MS: 'ARBITER_TASK_LEASE_MS',
  /** Keep the native WHATWG Response in fetch workers. */
  NATIVE_RESPONSE: 'ARBITER_NATIVE_RESPONSE',
} as const;

export const RESERVED_ENV: ReadonlySet<string> = new Set(Object.values(ENV));

// ---------------------------------------------------------------------------------------
// Boot.

/** The name of the one pool an arbiter runs when the config has no `pools`. */
export const MAIN_POOL = 'main';

/** What the master puts in ARBITER_WORKER. */
export interface WorkerBoot {
  settings: WorkerSettings;
  listeners: InheritedListener[];
  /** The config file to load the worker-side hooks from. */
  configFile: string | null;
  /** The pool this worker belongs to (`main` without `pools`): its hooks are that pool's. */
  pool: string;
  /** Gunicorn's worker "age": the master's sequence number for this worker. */
  age: number;
  /** The master's stdout, where an access log to `-` goes (the worker's own fd 1 is a pipe to the log). */
  stdoutFd?: number;
}

/** Where a worker's event loop was stuck, as the master found it (src/stack-capture.ts). */
export interface StuckReport {
  pid: number;
  silentMs: number;
  /** What the worker was serving ("GET /slow", "task sendEmail id=42"), or ''. */
  working: string;
  /** JavaScript frames, innermost first, `at fn (file:line:col)`. */
  stack: string[];
}

// ---------------------------------------------------------------------------------------
// Counters.

/** What a worker has done so far; shipped with every heartbeat. */
export interface WorkerCounters {
  /** HTTP requests answered, or tasks finished (any outcome). */
  requests: number;
  /** Requests or tasks being worked on right now. */
  active: number;
  /** Responses by status class, HTTP classes only: index 1..5 for 1xx..5xx. */
  statuses?: number[];
  /** Task classes only. */
  tasks?: TaskCounters;
  /** Resident set size in bytes. */
  rss: number;
  /**
   * Event-loop delay since the previous heartbeat, milliseconds beyond the sampling interval
   * (workers/loop-delay.ts): how long callbacks wait for the loop.
   */
  loopDelay?: { mean: number; max: number };
  /**
   * Request latency, HTTP classes only, and only while `metricsBind` is set. Per-bucket
   * counts (not cumulative) for the upper bounds in LATENCY_BUCKETS, then one count for
   * +Inf, then the sum of all durations in seconds: length LATENCY_BUCKETS.length + 2.
   */
  latency?: number[];
}

/** What a worker class reports; the runtime adds `rss` and `loopDelay`. */
export type ClassCounters = Omit<WorkerCounters, 'rss' | 'loopDelay'>;

/** Upper bounds, in seconds, of the request-latency histogram (Prometheus' defaults). */
export const LATENCY_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export interface TaskCounters {
  processed: number;
  failed: number;
  retried: number;
  dead: number;
  /** Per task name: count and total milliseconds. */
  durations: Record<string, { count: number; totalMs: number; maxMs: number }>;
}

/** What the worker is busy with, for the WORKER TIMEOUT line. */
export interface CurrentWork {
  /** "GET /slow" or "task sendEmail 42". */
  what: string;
  since: number;
}

/**
 * One metric of the app's own prom-client registry, as `register.getMetricsAsJSON()` gives
 * it (exemplars and timestamps left out). The master merges every worker's (src/app-metrics.ts).
 */
export interface AppMetric {
  name: string;
  help: string;
  type: string;
  /** How workers' values of the metric combine: sum, first, min, max, average or omit. */
  aggregator?: string;
  values: { value: number; labels: Record<string, string | number>; metricName?: string }[];
}

// ---------------------------------------------------------------------------------------
// Messages.

/** Why a worker asks to be replaced. */
export type RetireReason = 'max-requests' | 'memory';

export type WorkerMessage =
  | { t: 'booted'; pid: number; appKind: 'node' | 'fetch' | 'task'; picked?: string }
  /** Send listener `index` again (the worker closed its copy to stop accepting at workerConnections). */
  | { t: 'listener'; index: number }
  | { t: 'heartbeat'; counters: WorkerCounters; current?: CurrentWork }
  | { t: 'retire'; reason: RetireReason; detail: string }
  | { t: 'bootError'; message: string; detail?: string }
  /**
   * The app's prom-client metrics: the answer to a `metrics` request (`id`), or, with
   * `final`, the last word of a worker that is stopping. `metrics` is null when the app has
   * no prom-client registry.
   */
  | { t: 'metrics'; id: number; metrics: AppMetric[] | null; final?: boolean };

export type MasterMessage =
  /**
   * `keepAccepting`: the whole arbiter is stopping and no other worker will take new
   * connections, so keep accepting (answering with `Connection: close`) until clients stop
   * coming; a client then never meets a refused or reset connection. When a replacement
   * serves (reload, recycling, scale-down) the worker stops accepting at once.
   */
  | { t: 'stop'; graceful: boolean; keepAccepting?: boolean }
  | { t: 'reopenLogs' }
  /** The master looked where it was stuck and has done: close the inspector it opened. */
  | { t: 'closeInspector' }
  /** Listener `index`, as the handle that comes with this message. */
  | { t: 'listener'; index: number }
  /** Send the app's prom-client metrics (only while `metricsBind` is set). */
  | { t: 'metrics'; id: number };
