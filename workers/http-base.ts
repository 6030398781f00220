/**
 * What the two HTTP worker classes (`http`, `h11`) share, so that they cannot drift apart:
 * TLS material, listening on the inherited descriptors, request observation (status
 * classes, the latency histogram, the access log, `preRequest`/`postRequest`), app errors,
 * and the drain of a graceful stop. Each class keeps only its serving loop.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { oneLine } from '../src/core/errors.js';
import { LATENCY_BUCKETS } from '../src/core/protocol.js';
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
 * The worker's listening servers, one per inherited listener. `serverFor(i)` makes the
 * server that takes listener i's connections (once). A worker can stop accepting without
 * dropping anything: closing its servers closes only its own copies of the descriptors; the
 * master's copy keeps the socket listening, and new connections wait in the kernel's queue
 * for another worker, or for this one once it asks the master for fresh copies.
 */
export class Listening {
  readonly servers: net.Server[] = [];
  private paused = false;
  private resuming = false;
  private closed = false;

  constructor(
    private readonly ctx: WorkerContext,
    private readonly serverFor: (i: number) => net.Server,
  ) {}

  start(): Promise<void> {
    const backlog = this.ctx.settings.backlog;
    return Promise.all(
      this.ctx.listeners.map((l, i) => {
        const srv = this.serverFor(i);
        this.servers.push(srv);
        // The backlog goes as an argument: Node ignores options.backlog when listening on an fd.
        return listenOn(srv, { fd: l.fd }, backlog);
      }),
    ).then(() => undefined);
  }

  /** Stop accepting for now (workerConnections reached). */
  pause(): void {
    if (this.paused || this.closed) return;
    this.paused = true;
    void this.closeServers();
  }

  /** Accept again: listen on copies of the listeners the master sends. */
  resume(): void {
    if (!this.paused || this.resuming || this.closed) return;
    this.resuming = true;
    void Promise.all(
      this.servers.map(async (srv, i) => {
        const handle = await this.ctx.listener(i);
        if (!this.closed) await listenOn(srv, handle, this.ctx.settings.backlog);
      }),
    )
      .catch((err) => this.ctx.log.error({ err }, `cannot listen again: ${oneLine(err)}`))
      .finally(() => {
        this.resuming = false;
        this.paused = false;
      });
  }

  get accepting(): boolean {
    return !this.paused && !this.closed;
  }

  /** For good (a stop). */
  close(): Promise<void> {
    this.closed = true;
    return this.closeServers();
  }

  // net.Server's close for every server, http ones included: http.Server's own close would
  // also drop idle keep-alive connections, which is a reset a graceful stop must not cause.
  private closeServers(): Promise<void> {
    return Promise.all(
      this.servers.map((srv) => new Promise<void>((resolve) => (srv.listening ? net.Server.prototype.close.call(srv, () => resolve()) : resolve()))),
    ).then(() => undefined);
  }
}

function listenOn(srv: net.Server, handle: object, backlog: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(handle, backlog, () => {
      srv.off('error', reject);
      resolve();
    });
  });
}

/**
 * workerConnections. When a connection comes and the worker already holds the cap, the oldest
 * idle connection (nothing in progress, nothing read since its last request) makes room for
 * it: `evictIdle` closes one and says whether it found one. With none idle, the worker takes
 * this one and stops accepting until it is below the cap again, so that what it cannot take
 * waits in the listen queue for another worker instead of being accepted and dropped. An idle
 * client can hold a connection only while nobody needs the room; a slow one, only until
 * headerTimeout.
 */
export class ConnectionCap {
  constructor(
    private readonly cap: number,
    private readonly listening: Listening,
    private readonly evictIdle: () => boolean,
  ) {}

  /** A connection was accepted; `open` does not count it yet. Call before tracking it. */
  admit(open: number): void {
    if (open >= this.cap && !this.evictIdle()) this.listening.pause();
  }

  /** A connection ended; `open` no longer counts it. */
  released(open: number, stopping: boolean): void {
    if (open < this.cap && !stopping) this.listening.resume();
  }
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
  listening: Listening;
  sweep?: () => void;
}): Promise<void> {
  let closing: Promise<void> | null = o.keepAccepting ? null : o.listening.close();
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
  closing ??= o.listening.close();
  await closing;
}
