/**
 * What the two HTTP worker classes (`http`, `h11`) share, so that they cannot drift apart:
 * TLS material, listening on the inherited descriptors, request observation (status
 * classes, the latency histogram, the access log, `preRequest`/`postRequest`), app errors,
 * and the drain of a graceful stop. Each class keeps only its serving loop.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import type { Framework } from '../src/core/app.js';
import { AppLoadError, appStack, oneLine } from '../src/core/errors.js';
import { listenReally } from '../src/core/listen.js';
import { LATENCY_BUCKETS } from '../src/core/protocol.js';
import { openAccessLog, type AccessEntry, type AccessLog } from './accesslog.js';

/**
 * node:tls and node:https, loaded when a worker serves TLS: a plain worker does without their
 * 1 MB (SPEC §11). Through process.getBuiltinModule, not createRequire: node:module would
 * bring its source-map support into every worker.
 */
export const tlsModule = (): typeof import('node:tls') => process.getBuiltinModule('node:tls');
export const httpsModule = (): typeof import('node:https') => process.getBuiltinModule('node:https');
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
  private readonly listened: Promise<void>[] = [];
  private paused = false;
  private resuming = false;
  private closed = false;

  constructor(
    private readonly ctx: WorkerContext,
    private readonly serverFor: (i: number) => net.Server,
  ) {}

  /**
   * Listener i goes to a server of the app's own (script mode: the server whose listen()
   * ranked i). Resolves once it listens; its own 'listening' listeners (the listen()
   * callback) run then.
   */
  adopt(i: number, srv: net.Server): Promise<void> {
    this.servers[i] = srv;
    return (this.listened[i] = listenOn(srv, { fd: this.ctx.listeners[i]!.fd }, this.ctx.settings.backlog));
  }

  /** Every listener not adopted gets serverFor(i); resolves once all listen. */
  start(): Promise<void> {
    const backlog = this.ctx.settings.backlog;
    return Promise.all(
      this.ctx.listeners.map((l, i) => {
        if (this.servers[i]) return this.listened[i];
        const srv = this.serverFor(i);
        this.servers[i] = srv;
        // The backlog goes as an argument: Node ignores options.backlog when listening on an fd.
        return (this.listened[i] = listenOn(srv, { fd: l.fd }, backlog));
      }),
    ).then(() => undefined);
  }

  /** Stop accepting for now (workerConnections reached). */
  pause(): void {
    if (this.paused || this.closed) return;
    this.paused = true;
    for (const srv of this.servers) {
      if (!srv.listening) continue;
      // A pause is no close: the server's 'close' event (apps and libraries attached with
      // onServer listen to it) must not fire if its connections end while it is paused.
      holdClose(srv);
      net.Server.prototype.close.call(srv);
    }
  }

  /** Accept again: listen on copies of the listeners the master sends. */
  resume(): void {
    if (!this.paused || this.resuming || this.closed) return;
    this.resuming = true;
    void Promise.all(
      this.servers.map(async (srv, i) => {
        const handle = await this.ctx.listener(i);
        if (this.closed) return;
        await listenOn(srv, handle, this.ctx.settings.backlog);
        releaseClose(srv);
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

  /**
   * For good (a stop): only the listening handles. net.Server's close, which for an
   * http.Server also leaves the idle keep-alive connections alone (http.Server's own close
   * would drop them, a reset a graceful stop must not cause). Each server's 'close' event
   * comes once its connections are gone.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const srv of this.servers) {
      if (!srv) continue;
      const held = releaseClose(srv);
      if (srv.listening || held) net.Server.prototype.close.call(srv);
    }
  }
}

const HELD = Symbol('arbiter.closeHeld');
type Holdable = net.Server & { _emitCloseIfDrained?: () => void; [HELD]?: true };

function holdClose(srv: Holdable): void {
  srv[HELD] = true;
  srv._emitCloseIfDrained = noop;
}

/** True if the server was held. */
function releaseClose(srv: Holdable): boolean {
  if (!srv[HELD]) return false;
  delete srv[HELD];
  delete srv._emitCloseIfDrained;
  return true;
}

function noop(): void {}

function listenOn(srv: net.Server, handle: object, backlog: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    listenReally(srv, handle, backlog, () => {
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

/** Fastify's ready(), Nest's init(): a failure is a boot failure. */
export async function startFramework(framework: Framework): Promise<void> {
  try {
    await framework.start();
  } catch (err) {
    throw new AppLoadError(`${framework.name} app failed to start: ${oneLine(err)}`, appStack(err));
  }
}

/**
 * WebSocket plugins (@fastify/websocket, Nest gateways) attach to the framework's own
 * server, which never listens here: the upgrades that come to ours are passed on to it.
 */
export function forwardUpgrades(ours: NodeJS.EventEmitter, framework: Framework): void {
  const theirs = framework.server();
  if (theirs && theirs !== ours && theirs.listenerCount('upgrade') > 0)
    ours.on('upgrade', (req: unknown, socket: unknown, head: unknown) => theirs.emit('upgrade', req, socket, head));
}

/** Fastify's close() (its onClose hooks), Nest's close(); a failure is logged. */
export function closeFramework(ctx: WorkerContext, framework: Framework): Promise<void> {
  return framework.close().then(
    () => undefined,
    (err) => ctx.log.error({ err }, `${framework.name} close() failed: ${oneLine(err)}`),
  );
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
 * client has come for QUIET_MS and no connection but long-lived ones (upgraded: WebSocket)
 * is left. `stoppedAccepting` is told when they close, or with keepAccepting once no client
 * has come for QUIET_MS (the app's shutdown() runs then: an app that ends its event streams
 * there must hear it while they are still open). Resolves once no connection is left;
 * `sweep`, called every IDLE_AFTER_STOP_MS, closes the ones that stayed idle. Long-lived
 * connections stay until they end (the app ends them) or the runtime's gracefulTimeout.
 */
export async function drain(o: {
  open: () => number;
  longLived?: () => number;
  lastAccept: () => number;
  keepAccepting: boolean;
  listening: Listening;
  sweep?: () => void;
  stoppedAccepting: () => void;
  /** Once the listeners closed and only long-lived connections are left. */
  httpDone?: () => void;
}): Promise<void> {
  let closed = false;
  let told = false;
  let httpDone = false;
  const tell = () => {
    if (told) return;
    told = true;
    o.stoppedAccepting();
  };
  const close = () => {
    closed = true;
    o.listening.close();
    tell();
  };
  if (!o.keepAccepting) close();
  await new Promise<void>((resolve) => {
    let lastSweep = Date.now();
    const check = setInterval(() => {
      const now = Date.now();
      if (o.sweep && now - lastSweep >= IDLE_AFTER_STOP_MS) {
        lastSweep = now;
        o.sweep();
      }
      const open = o.open();
      const http = open - (o.longLived?.() ?? 0);
      const quiet = now - o.lastAccept() >= QUIET_MS;
      if (!closed && quiet) {
        if (http === 0) close();
        else tell();
      }
      if (closed && http === 0 && !httpDone) {
        httpDone = true;
        o.httpDone?.();
      }
      if (closed && open === 0) {
        clearInterval(check);
        resolve();
      }
    }, DRAIN_POLL_MS);
  });
}
