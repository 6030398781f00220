/**
 * The master↔worker protocol. Every message on the IPC channel is one of these; both
 * sides switch on `t`. Keep them small: heartbeats cross the channel every second.
 */

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
   * Request latency, HTTP classes only, and only while something observes requests
   * (`metricsBind`, an access log or request hooks). Per-bucket counts (not cumulative) for
   * the upper bounds in LATENCY_BUCKETS, then one count for +Inf, then the sum of all
   * durations in seconds: length LATENCY_BUCKETS.length + 2.
   */
  latency?: number[];
}

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

export type WorkerMessage =
  | { t: 'booted'; pid: number; appKind: 'node' | 'fetch' | 'task'; picked?: string }
  | { t: 'heartbeat'; counters: WorkerCounters; current?: CurrentWork }
  | { t: 'retire'; reason: 'max-requests' | 'memory'; detail: string }
  | { t: 'bootError'; message: string; detail?: string };

export type MasterMessage =
  /**
   * `keepAccepting`: the whole arbiter is stopping and no other worker will take new
   * connections, so keep accepting (answering with `Connection: close`) until clients stop
   * coming; a client then never meets a refused or reset connection. When a replacement
   * serves (reload, recycling, scale-down) the worker stops accepting at once.
   */
  | { t: 'stop'; graceful: boolean; keepAccepting?: boolean }
  | { t: 'reopenLogs' };
