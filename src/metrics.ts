/**
 * Prometheus metrics, served by the master on `metricsBind` (`HOST:PORT`, `[v6]:PORT` or
 * `PORT`) at `GET /metrics`, text exposition format 0.0.4.
 *
 * After arbiter's own series come the app's own prom-client metrics, if it has any
 * (app-metrics.ts). Request and task counters are the sum of the workers' heartbeat counters. A worker's
 * counters leave with it, so this module keeps, per arbiter, the last counters of every
 * worker that exited: the totals it serves never go backwards across recycling, reloads,
 * crashes or scale-down (at most the last heartbeat interval of a dead worker is lost).
 *
 * Every series about workers carries a `pool` label (`main` without `pools`); the master's
 * own (uptime) does not.
 */
import http from 'node:http';
import type { Logger } from './core/logging.js';
import { appMetricsFor } from './app-metrics.js';
import { SettingError } from './core/errors.js';
import { LATENCY_BUCKETS, MAIN_POOL, type WorkerCounters } from './core/protocol.js';
import type { Arbiter } from './master.js';
import { parseAddress } from './sockets.js';
import { RESTART_REASONS, WORKER_STATES, type Transition } from './worker-handle.js';

export { LATENCY_BUCKETS };

const STATES = WORKER_STATES.filter((s) => s !== 'exited');
const REASONS = RESTART_REASONS;
const TASK_OUTCOMES = ['processed', 'failed', 'retried', 'dead'] as const;
const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
/** Connections the metrics endpoint holds at once. */
const METRICS_MAX_CONNECTIONS = 32;

/** Running totals: the retired workers' last counters plus, on demand, the live ones. */
export interface Totals {
  requests: number;
  /** Index 1..5: 1xx..5xx. */
  statuses: number[];
  /** Per-bucket counts, +Inf, sum (as WorkerCounters.latency). */
  latency: number[];
  tasks: Record<(typeof TASK_OUTCOMES)[number], number>;
  sawLatency: boolean;
  sawTasks: boolean;
  sawStatuses: boolean;
}

function emptyTotals(): Totals {
  return {
    requests: 0,
    statuses: [0, 0, 0, 0, 0, 0],
    latency: new Array<number>(LATENCY_BUCKETS.length + 2).fill(0),
    tasks: { processed: 0, failed: 0, retried: 0, dead: 0 },
    sawLatency: false,
    sawTasks: false,
    sawStatuses: false,
  };
}

function add(into: Totals, c: WorkerCounters | undefined): void {
  if (!c) return;
  into.requests += c.requests || 0;
  if (Array.isArray(c.statuses)) {
    into.sawStatuses = true;
    for (let i = 1; i <= 5; i++) into.statuses[i]! += Number(c.statuses[i]) || 0;
  }
  if (Array.isArray(c.latency) && c.latency.length === LATENCY_BUCKETS.length + 2) {
    into.sawLatency = true;
    for (let i = 0; i < c.latency.length; i++) into.latency[i]! += Number(c.latency[i]) || 0;
  }
  if (c.tasks) {
    into.sawTasks = true;
    for (const k of TASK_OUTCOMES) into.tasks[k] += Number(c.tasks[k]) || 0;
  }
}

/**
 * Folds each worker's last counters into a running total when it exits (the master's
 * lifecycle events say when). One per arbiter, made when it starts.
 */
export class CounterLedger {
  /** Per pool. */
  private readonly retired = new Map<string, Totals>();
  private readonly onTransition = (t: Transition) => {
    if (t.to !== 'exited') return;
    const pool = t.pool ?? MAIN_POOL;
    let into = this.retired.get(pool);
    if (!into) this.retired.set(pool, (into = emptyTotals()));
    add(into, t.worker.counters);
  };

  constructor(private readonly arbiter: Arbiter) {
    arbiter.events.on('transition', this.onTransition);
  }

  /** Retired plus live counters of one pool (of every pool without `pool`), right now. */
  totals(pool?: string): Totals {
    const t = emptyTotals();
    for (const [name, retired] of this.retired) {
      if (pool !== undefined && name !== pool) continue;
      add(t, {
        requests: retired.requests,
        active: 0,
        rss: 0,
        statuses: retired.sawStatuses ? retired.statuses : undefined,
        latency: retired.sawLatency ? retired.latency : undefined,
        tasks: retired.sawTasks ? { ...retired.tasks, durations: {} } : undefined,
      });
    }
    for (const g of this.arbiter.groups.values()) {
      if (pool !== undefined && g.name !== pool) continue;
      for (const w of g.workers.values()) add(t, w.counters);
    }
    return t;
  }

  close(): void {
    this.arbiter.events.off('transition', this.onTransition);
  }
}

const ledgers = new WeakMap<Arbiter, CounterLedger>();

/** The one ledger for this arbiter (created on first use). */
export function ledgerFor(arbiter: Arbiter): CounterLedger {
  let l = ledgers.get(arbiter);
  if (!l) ledgers.set(arbiter, (l = new CounterLedger(arbiter)));
  return l;
}

function num(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Infinity) return '+Inf';
  if (n === -Infinity) return '-Inf';
  return String(n);
}

/** Render the metrics text for an arbiter. */
export function renderMetrics(arbiter: Arbiter, ledger = ledgerFor(arbiter)): string {
  const out: string[] = [];
  const family = (name: string, type: 'counter' | 'gauge' | 'histogram', help: string) => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  };
  const sample = (name: string, labels: Record<string, string>, value: number) => {
    const l = Object.entries(labels)
      .map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`)
      .join(',');
    out.push(`${name}${l ? `{${l}}` : ''} ${num(value)}`);
  };

  const pools = [...arbiter.groups.values()].map((g) => {
    const byState: Record<string, number> = Object.fromEntries(STATES.map((s) => [s, 0]));
    let active = 0;
    let rss = 0;
    for (const w of g.workers.values()) {
      byState[w.state] = (byState[w.state] ?? 0) + 1;
      active += w.counters?.active ?? 0;
      rss += w.counters?.rss ?? 0;
    }
    const t = ledger.totals(g.name);
    return { g, byState, active, rss, t, isTask: g.settings.workerClass === 'task' || t.sawTasks };
  });
  const perPool = (name: string, type: 'counter' | 'gauge', help: string, each: (p: (typeof pools)[number], l: Record<string, string>) => void) => {
    family(name, type, help);
    for (const p of pools) each(p, { pool: p.g.name });
  };

  perPool('arbiter_workers', 'gauge', 'Worker processes by state.', (p, l) => {
    for (const s of STATES) sample('arbiter_workers', { ...l, state: s }, p.byState[s] ?? 0);
  });
  perPool('arbiter_target_workers', 'gauge', 'Workers the master keeps serving.', (p, l) => sample('arbiter_target_workers', l, p.g.target));
  perPool('arbiter_worker_restarts_total', 'counter', 'Workers replaced, by reason.', (p, l) => {
    for (const r of REASONS) sample('arbiter_worker_restarts_total', { ...l, reason: r }, p.g.restarts[r] ?? 0);
  });
  perPool('arbiter_pool_degraded', 'gauge', '1 while the pool has had more than maxRestarts unexpected deaths within restartWindow.', (p, l) =>
    sample('arbiter_pool_degraded', l, p.g.degraded ? 1 : 0));

  family('arbiter_master_uptime_seconds', 'gauge', 'Seconds since the master started.');
  sample('arbiter_master_uptime_seconds', {}, Math.round((Date.now() - arbiter.startedAt) / 10) / 100);

  perPool('arbiter_workers_rss_bytes', 'gauge', 'Resident memory of all workers, from their last heartbeats.', (p, l) => sample('arbiter_workers_rss_bytes', l, p.rss));
  perPool('arbiter_active', 'gauge', 'Requests being served, or tasks being run, right now.', (p, l) => sample('arbiter_active', l, p.active));

  const brokers = arbiter.brokers?.status() ?? [];
  if (brokers.length) {
    family('arbiter_broker_up', 'gauge', 'Whether the task broker can be reached (1) or not (0).');
    for (const b of brokers) sample('arbiter_broker_up', { broker: b.url }, b.up ? 1 : 0);
  }

  const http = pools.filter((p) => !p.isTask);
  if (http.length) {
    family('arbiter_requests_total', 'counter', 'HTTP responses by status class, over all workers past and present.');
    for (const { g, t } of http) for (let i = 1; i <= 5; i++) sample('arbiter_requests_total', { pool: g.name, status_class: `${i}xx` }, t.statuses[i] ?? 0);

    family('arbiter_request_duration_seconds', 'histogram', 'HTTP request duration, from the request head to the end of the response.');
    for (const { g, t } of http) {
      const l = { pool: g.name };
      let cumulative = 0;
      for (let i = 0; i < LATENCY_BUCKETS.length; i++) {
        cumulative += t.latency[i]!;
        sample('arbiter_request_duration_seconds_bucket', { ...l, le: String(LATENCY_BUCKETS[i]) }, cumulative);
      }
      cumulative += t.latency[LATENCY_BUCKETS.length]!;
      sample('arbiter_request_duration_seconds_bucket', { ...l, le: '+Inf' }, cumulative);
      sample('arbiter_request_duration_seconds_sum', l, Math.round(t.latency[LATENCY_BUCKETS.length + 1]! * 1e6) / 1e6);
      sample('arbiter_request_duration_seconds_count', l, cumulative);
    }
  }
  const tasks = pools.filter((p) => p.isTask);
  if (tasks.length) {
    family('arbiter_tasks_total', 'counter', 'Task attempts by outcome, over all workers past and present.');
    for (const { g, t } of tasks) for (const k of TASK_OUTCOMES) sample('arbiter_tasks_total', { pool: g.name, outcome: k }, t.tasks[k]);
  }
  return out.join('\n') + '\n';
}

/** `HOST:PORT`, `[v6]:PORT` or `PORT` (all interfaces) → where to listen. */
export function parseMetricsBind(bind: string): { host: string; port: number } {
  const text = bind.replace(/^https?:\/\//, '').replace(/\/metrics$/, '');
  const a = parseAddress(text);
  if (a.kind !== 'tcp') throw new SettingError(`metricsBind "${bind}": expected HOST:PORT, [v6]:PORT or PORT`);
  // A bare port means this machine only: metrics are for a local scraper or sidecar unless
  // an address says otherwise (0.0.0.0:9100 for a scraper elsewhere).
  return { host: /^\d+$/.test(text) ? '127.0.0.1' : a.host, port: a.port };
}

export interface MetricsServer {
  close(): void;
  /** Where it listens (the real port when PORT was 0); null while waiting to bind. */
  address(): { host: string; port: number } | null;
}

/**
 * Serve `GET /metrics` on `bind`. Rejects when the address cannot be bound, unless
 * `retryInUse` (a master started by USR2, while the old master still holds the port): then
 * it resolves at once and keeps trying every second until the port is free.
 */
export function startMetricsServer(
  arbiter: Arbiter,
  bind: string,
  log: Logger,
  opts: { retryInUse?: boolean } = {},
): Promise<MetricsServer> {
  const { host, port } = parseMetricsBind(bind);
  const ledger = ledgerFor(arbiter);
  const app = appMetricsFor(arbiter, log);
  const server = http.createServer({
    keepAliveTimeout: 5000,
    headersTimeout: 10_000,
    requestTimeout: 10_000,
    connectionsCheckingInterval: 1000,
  }, async (req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (url !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'content-type': 'text/plain', allow: 'GET, HEAD' }).end('method not allowed\n');
      return;
    }
    let body: string;
    try {
      const own = renderMetrics(arbiter, ledger);
      // Then the app's own prom-client metrics, merged over its workers (app-metrics.ts).
      body = own + (await app.render((name) => own.includes(`# TYPE ${name} `)));
    } catch (err) {
      log.error({ event: 'metrics_failed', err: String(err) }, `metrics: ${(err as Error).message}`);
      res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics failed\n');
      return;
    }
    res.writeHead(200, { 'content-type': CONTENT_TYPE, 'content-length': Buffer.byteLength(body) });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  // A scraper needs a connection or two. Beyond the cap the oldest connection with no request
  // in progress makes room (else the new one is closed), so idle clients can neither take the
  // descriptors the master needs to start workers nor lock a scraper out.
  const held = new Set<import('node:net').Socket>();
  server.on('connection', (socket) => {
    if (held.size >= METRICS_MAX_CONNECTIONS) {
      const idle = [...held].find((s) => !(s as { _httpMessage?: unknown })._httpMessage);
      (idle ?? socket).destroy();
      if (!idle) return;
    }
    held.add(socket);
    socket.once('close', () => held.delete(socket));
  });
  server.unref();
  let closed = false;
  let retry: NodeJS.Timeout | null = null;
  let bound: { host: string; port: number } | null = null;
  const handle: MetricsServer = {
    close() {
      closed = true;
      if (retry) clearTimeout(retry);
      server.close();
      server.closeAllConnections();
    },
    address: () => bound,
  };
  return new Promise((resolve, reject) => {
    let first = true;
    const attempt = () => {
      if (closed) return;
      const onError = (err: NodeJS.ErrnoException) => {
        if (opts.retryInUse && err.code === 'EADDRINUSE') {
          if (first) {
            log.info({ event: 'metrics_waiting', bind }, `metrics: ${bind} is in use (the old master?); will bind once it is free`);
            first = false;
            resolve(handle);
          }
          retry = setTimeout(attempt, 1000);
          retry.unref();
          return;
        }
        const e = new Error(`metrics: cannot listen on ${bind}: ${err.code ?? err.message}`);
        if (first) reject(e);
        else log.error({ event: 'metrics_failed', bind, err: err.code }, e.message);
      };
      server.once('error', onError);
      server.listen({ host, port, exclusive: true }, () => {
        server.off('error', onError);
        server.on('error', (err) => log.error({ event: 'metrics_error', err: String(err) }, `metrics: ${err.message}`));
        const a = server.address();
        bound = a && typeof a === 'object' ? { host: a.address, port: a.port } : { host, port };
        const shown = bound.host.includes(':') ? `[${bound.host}]:${bound.port}` : `${bound.host}:${bound.port}`;
        log.info({ event: 'metrics_listening', address: shown }, `metrics at http://${shown}/metrics`);
        if (first) {
          first = false;
          resolve(handle);
        }
      });
    };
    attempt();
  });
}

/**
 * The memory-limit warning (SPEC §7): once every worker has reported its RSS, and again
 * whenever the worker count changes, warn when `target` workers at their measured average
 * RSS plus the master do not fit in 90% of the cgroup memory limit. Checks every 5 s;
 * warns once per worker count. Returns a stop function.
 */
export function watchMemoryFit(
  arbiter: Arbiter,
  log: Logger,
  limit: { bytes: number | null; source: string },
  opts: { intervalMs?: number; threshold?: number } = {},
): () => void {
  if (!limit.bytes) return () => {};
  const threshold = opts.threshold ?? 0.9;
  let warnedFor = -1;
  const mb = (n: number) => `${Math.round(n / 1024 / 1024)} MB`;
  const check = () => {
    const serving = arbiter.workers().filter((w) => w.state === 'serving' && w.counters?.rss);
    if (serving.length === 0 || warnedFor === arbiter.target) return;
    const avg = serving.reduce((s, w) => s + w.counters!.rss, 0) / serving.length;
    const master = process.memoryUsage.rss();
    const need = arbiter.target * avg + master;
    if (need <= threshold * limit.bytes!) return;
    warnedFor = arbiter.target;
    log.warn(
      { event: 'memory_limit', workers: arbiter.target, workerRss: Math.round(avg), masterRss: master, limit: limit.bytes, source: limit.source },
      `memory: ${arbiter.target} workers × ${mb(avg)} RSS + master ${mb(master)} = ${mb(need)} will not fit in the memory limit ` +
        `${mb(limit.bytes!)} (${limit.source}); workers may be OOM-killed: lower workers, set maxWorkerMemory, or raise the limit`,
    );
  };
  const timer = setInterval(check, opts.intervalMs ?? 5000);
  timer.unref();
  return () => clearInterval(timer);
}
