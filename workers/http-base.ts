/**
 * What the two HTTP worker classes (`http`, `h11`) share, so that they cannot drift apart:
 * TLS material, listening on the inherited descriptors, request observation (status
 * classes, the latency histogram, the access log, `preRequest`/`postRequest`), app errors,
 * and the drain of a graceful stop. Each class keeps only its serving loop.
 */
import { readFileSync } from 'node:fs';
import type net from 'node:net';
import { oneLine } from '../src/core/errors.js';
import { LATENCY_BUCKETS, type InheritedListener } from '../src/core/protocol.js';
import { openAccessLog, type AccessEntry, type AccessLog } from './accesslog.js';
import type { WorkerContext } from './contract.js';

/** How long a connection may sit idle after a graceful stop began before we close it. */
export const IDLE_AFTER_STOP_MS = 500;
/** Still accepting at a whole-arbiter stop: leave once no client has come for this long. */
export const QUIET_MS = 1000;
/** How often a draining worker looks whether it is done. */
const DRAIN_POLL_MS = 50;

export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
}

/** The certificate and key (read once, at boot), or null for plain TCP. */
export function loadTls(s: WorkerContext['settings']): TlsMaterial | null {
  return s.certfile && s.keyfile ? { cert: readFileSync(s.certfile), key: readFileSync(s.keyfile) } : null;
}

/**
 * Listen on every inherited descriptor. Each is a listening socket of our own to accept on;
 * `serverFor` makes the server that takes listener i's connections.
 */
export function listenAll(listeners: readonly InheritedListener[], backlog: number, serverFor: (i: number) => net.Server): Promise<void> {
  return Promise.all(
    listeners.map(
      (l, i) =>
        new Promise<void>((resolve, reject) => {
          const srv = serverFor(i);
          srv.once('error', reject);
          // The backlog goes as an argument: Node ignores options.backlog when listening on an fd.
          srv.listen({ fd: l.fd }, backlog, () => {
            srv.off('error', reject);
            resolve();
          });
        }),
    ),
  ).then(() => undefined);
}

/** An app error the class answers itself (500, or a closed connection): logged once, here. */
export function logAppError(ctx: WorkerContext, err: unknown): void {
  ctx.log.error({ err }, `app error: ${oneLine(err)}`);
}

/** When one request began, for its latency, access log line and postRequest hook. */
export interface Timing {
  /** Epoch ms (the access log's %(t)s). */
  startedAt: number;
  /** performance.now(). */
  t0: number;
}

/**
 * Request observation. Counting status classes is cheap and done by the class; the rest needs
 * a start time and a finish callback per request, and is on only when something wants it
 * (`watching`): metrics (the latency histogram), an access log, or request hooks.
 */
export class RequestObserver {
  /** Responses by status class: index 1..5 for 1xx..5xx. */
  readonly statuses = [0, 0, 0, 0, 0, 0];
  /** Per-bucket latency counts, +Inf, then the sum in seconds (WorkerCounters.latency); null without metrics. */
  readonly latency: number[] | null;
  readonly accessLog: AccessLog | null;
  readonly watching: boolean;
  private readonly pre: boolean;
  private readonly post: boolean;

  constructor(private readonly ctx: WorkerContext) {
    const s = ctx.settings;
    this.accessLog = s.accessLog ? openAccessLog(s.accessLog, s.accessLogFormat, s.forwardedAllowIps) : null;
    this.latency = s.metricsBind ? new Array<number>(LATENCY_BUCKETS.length + 2).fill(0) : null;
    this.pre = ctx.hooks.has('preRequest');
    this.post = ctx.hooks.has('postRequest');
    this.watching = this.accessLog !== null || this.latency !== null || this.pre || this.post;
  }

  count(status: number): void {
    this.statuses[(status / 100) | 0]!++;
  }

  /** A request starts (only while watching). `req` is what preRequest gets. */
  begin(req: unknown): Timing {
    if (this.pre) void this.ctx.hooks.run('preRequest', { pid: process.pid }, req);
    return { startedAt: Date.now(), t0: performance.now() };
  }

  /** Its response finished: latency, access log line, postRequest(req, res, ms). */
  end(t: Timing, req: unknown, res: unknown, entry: (durationMicros: number) => AccessEntry): void {
    const ms = performance.now() - t.t0;
    const latency = this.latency;
    if (latency !== null) {
      const seconds = ms / 1000;
      let i = 0;
      while (i < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[i]!) i++;
      latency[i]!++;
      latency[LATENCY_BUCKETS.length + 1]! += seconds;
    }
    this.accessLog?.log(entry(ms * 1000));
    if (this.post) void this.ctx.hooks.run('postRequest', { pid: process.pid }, req, res, ms);
  }

  counters(): { statuses: number[]; latency?: number[] } {
    return this.latency === null ? { statuses: this.statuses } : { statuses: this.statuses, latency: this.latency };
  }

  reopen(): void {
    this.accessLog?.reopen();
  }

  flush(): void {
    this.accessLog?.flush();
  }
}

/**
 * The graceful stop's wait. Listeners close at once, unless `keepAccepting` (the whole
 * arbiter stops and nobody else takes new connections): then they stay open until no
 * client has come for QUIET_MS. Either way it resolves once no connection is left;
 * `sweep`, called every IDLE_AFTER_STOP_MS, closes the ones that stayed idle.
 */
export async function drain(o: {
  open: () => number;
  lastAccept: () => number;
  keepAccepting: boolean;
  closeListeners: () => Promise<void>;
  sweep?: () => void;
}): Promise<void> {
  let closing: Promise<void> | null = o.keepAccepting ? null : o.closeListeners();
  await new Promise<void>((resolve) => {
    let lastSweep = Date.now();
    const check = setInterval(() => {
      const now = Date.now();
      if (o.sweep && now - lastSweep >= IDLE_AFTER_STOP_MS) {
        lastSweep = now;
        o.sweep();
      }
      if (o.open() === 0 && (closing !== null || now - o.lastAccept() >= QUIET_MS)) {
        clearInterval(check);
        resolve();
      }
    }, DRAIN_POLL_MS);
  });
  closing ??= o.closeListeners();
  await closing;
}
