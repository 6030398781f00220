/**
 * The `h11` worker class: arbiter's own HTTP/1.1 engine (./engine) over raw `net` sockets
 * (`tls` with certfile/keyfile) on the inherited listeners. Same policies as `http`
 * (limits, keepalive, graceful stop with `Connection: close`, access log, counters, hooks);
 * see README.md beside this file.
 */
import net from 'node:net';
import type { Socket } from 'node:net';
import { adaptHttpApp, type Framework, type HttpApp, type NodeHandler, type FetchHandler } from '../../src/core/app.js';
import { AppLoadError, oneLine } from '../../src/core/errors.js';
import { nodeEntry } from '../accesslog.js';
import type { WorkerClass, WorkerContext, WorkerInstance } from '../contract.js';
import { ConnectionCap, IDLE_AFTER_STOP_MS, Listening, RequestObserver, closeFramework, drain, forwardUpgrades, loadTls, logAppError, startFramework, tlsModule, type TlsMaterial } from '../http-base.js';
import { H11Server } from './server.js';
import { Conn, clock, type ConnOwner, type Exchange } from './conn.js';
import { createDateCache, type H11Options, type RequestEvent } from './engine/index.js';
import type { FetchEx } from './fetch.js';
import { NodeEx, nodeAppError, upgradeRequest } from './node.js';

/**
 * The fetch interface's modules, loaded by adapt() for a fetch app only: what they build on
 * (Request, Response, Headers) is Node's fetch implementation, some 5 MB that a worker serving
 * a node-interface app never needs (SPEC §11).
 */
type FetchSide = typeof import('./fetch.js') & Pick<typeof import('../fetch.js'), 'fetchToNode'> & Pick<typeof import('../fetch-light.js'), 'installLightResponse'>;
let fx: FetchSide;

async function adapt(value: unknown, settings: { interface: 'auto' | 'node' | 'fetch' | 'listen' }, where: string): Promise<{ app: HttpApp; picked: string }> {
  const adapted = await adaptHttpApp(value, settings, where);
  if (adapted.app.kind === 'fetch') {
    const [own, shared, light] = await Promise.all([import('./fetch.js'), import('../fetch.js'), import('../fetch-light.js')]);
    fx = { ...own, fetchToNode: shared.fetchToNode, installLightResponse: light.installLightResponse };
  }
  return adapted;
}

/** A connection we half-closed is destroyed if the peer has not closed its side by then. */
const LINGER_MS = 5000;
/** Before the first request when keepalive is 0: how long a client may take to send a head. */
const FIRST_REQUEST_MS = 10_000;
/** A request body must have arrived this long after its head (as -k http: Node's requestTimeout). */
const REQUEST_BODY_MS = 300_000;

class H11Worker implements WorkerInstance, ConnOwner {
  private readonly conns = new Set<Conn>();
  /** Connections that count toward workerConnections: open and not closing. */
  private holding = 0;
  private readonly listening: Listening;
  private readonly cap: ConnectionCap;
  private requests = 0;
  private active = 0;
  stopping = false;
  readonly closeEach: boolean;
  private readonly observer: RequestObserver;
  private readonly observe: boolean;
  private readonly opts: H11Options;
  private readonly idleMs: number;
  private readonly headerMs: number;
  private readonly scheme: string;
  private readonly tlsOpts: TlsMaterial | null;
  private readonly nodeHandler: NodeHandler | null;
  private readonly fetchHandler: FetchHandler | null;
  private sweepTimer: NodeJS.Timeout | null = null;
  private readonly framework: Framework | null = null;
  private readonly onFetchError = (ex: FetchEx, err: unknown) => {
    this.logAppError(err);
    fx.fetchAppError(ex);
  };

  constructor(
    private readonly ctx: WorkerContext,
    app: HttpApp,
  ) {
    const s = ctx.settings;
    this.tlsOpts = loadTls(s);
    this.scheme = this.tlsOpts ? 'https' : 'http';
    this.observer = new RequestObserver(ctx);
    this.observe = this.observer.watching;
    this.closeEach = s.keepalive === 0;
    this.idleMs = s.keepalive > 0 ? s.keepalive * 1000 : FIRST_REQUEST_MS;
    this.headerMs = s.headerTimeout * 1000;
    this.listening = new Listening(ctx, () => this.newServer());
    this.cap = new ConnectionCap(s.workerConnections, this.listening, () => this.evictIdle());
    this.opts = {
      limitRequestLine: s.limitRequestLine,
      limitRequestFields: s.limitRequestFields,
      limitRequestFieldSize: s.limitRequestFieldSize,
      maxBodySize: s.limitRequestBody > 0 ? s.limitRequestBody : Infinity,
      date: createDateCache(() => clock.now),
    };
    if (app.kind === 'listen') throw new AppLoadError('-k h11 cannot run a script-mode module');
    if (app.kind === 'node') {
      this.nodeHandler = app.handler;
      this.fetchHandler = null;
      this.framework = app.framework ?? null;
      this.requestListener = (req) => this.runNode((req as unknown as { _h11: NodeEx })._h11);
    } else {
      this.nodeHandler = null;
      this.fetchHandler = app.fetch;
      fx.installLightResponse();
      this.requestListener = fx.fetchToNode(app.fetch, { https: !!this.tlsOpts, onError: (err) => this.logAppError(err) });
    }
    this.server = new H11Server({
      address: () => this.listening.servers[0]?.address() ?? null,
      closeListeners: () => this.listening.close(),
      connections: () => this.conns.size + this.upgraded.size,
      closeIdle: () => {
        while (this.evictIdle());
      },
    });
    this.server.on('request', this.requestListener);
  }

  /** What onServer() gets: http.Server's events and the methods WebSocket libraries use. */
  readonly server: H11Server;
  /**
   * The server's own 'request' listener. While it is the only one, requests go straight to
   * the app; when a library replaced or added listeners (socket.io), they are emitted.
   */
  private readonly requestListener: NodeHandler;
  /** Sockets handed to an 'upgrade' listener, until they close. */
  private readonly upgraded = new Set<Socket>();

  // ---------------------------------------------------------------- connections

  private lastAccept = 0;

  private onConnection = (sock: Socket): void => {
    this.lastAccept = clock.now;
    this.cap.admit(this.holding);
    if (this.tlsOpts) sock.setNoDelay(true);
    const watched = this.server.listenerCount('connection') !== 0;
    this.conns.add(new Conn(sock, this, this.opts, clock.now, !watched));
    this.holding++;
    if (watched) this.server.emit('connection', sock);
  };

  get takesUpgrades(): boolean {
    return this.server.listenerCount('upgrade') !== 0;
  }

  /** A connection handed over to the app's 'upgrade' listener: counted, and kept until it closes. */
  upgrade(conn: Conn, ev: RequestEvent, head: Buffer): void {
    this.requests++;
    this.ctx.done();
    const sock = conn.sock;
    this.upgraded.add(sock);
    sock.once('close', () => this.upgraded.delete(sock));
    try {
      this.server.emit('upgrade', upgradeRequest(ev, sock), sock, head);
    } catch (err) {
      this.logAppError(err);
      sock.destroy();
    }
  }

  connReleased(): void {
    this.cap.released(--this.holding, this.stopping);
  }

  connClosed(conn: Conn): void {
    this.conns.delete(conn);
  }

  /** The oldest idle keep-alive connection makes room (see ConnectionCap). */
  private evictIdle(): boolean {
    for (const c of this.conns) {
      if (!c.busy && !c.partial && !c.dead && c.closingSince === 0) {
        c.endGracefully();
        return true;
      }
    }
    return false;
  }

  // ---------------------------------------------------------------- requests

  startRequest(conn: Conn, ev: RequestEvent): Exchange {
    this.requests++;
    this.active++;
    const ctx = this.ctx;
    ctx.done();
    if (this.stopping || this.closeEach) conn.h.startClosing();
    const direct = (this.server as unknown as { _events: Record<string, unknown> })._events.request === this.requestListener;
    if (this.nodeHandler !== null || !direct) {
      const x = new NodeEx(conn, ev);
      ctx.working(x.req);
      if (this.observe) this.observeNode(x);
      if (direct) this.runNode(x);
      else {
        try {
          this.server.emit('request', x.req, x.res);
        } catch (err) {
          this.logAppError(err);
          nodeAppError(x);
        }
      }
      return x;
    }
    const ex = new fx.FetchEx(conn, ev, this.scheme);
    ctx.working(ex);
    if (this.observe) this.observeFetch(ex);
    let result: unknown;
    try {
      result = this.fetchHandler!(ex as unknown as Request);
    } catch (err) {
      this.onFetchError(ex, err);
      return ex;
    }
    if (result !== null && typeof result === 'object' && typeof (result as Promise<unknown>).then === 'function' && !(result instanceof Response)) {
      (result as Promise<Response>).then(
        (res) => fx.writeFetchResponse(ex, res, this.onFetchError),
        (err) => this.onFetchError(ex, err),
      );
    } else {
      fx.writeFetchResponse(ex, result, this.onFetchError);
    }
    return ex;
  }

  private runNode(x: NodeEx): void {
    try {
      const r = this.nodeHandler!(x.req, x.res) as Promise<unknown> | undefined;
      if (r !== undefined && r !== null && typeof r.then === 'function') {
        r.then(undefined, (err) => {
          this.logAppError(err);
          nodeAppError(x);
        });
      }
    } catch (err) {
      this.logAppError(err);
      nodeAppError(x);
    }
  }

  requestFinished(_conn: Conn, status: number): void {
    this.active--;
    this.observer.count(status);
  }

  requestAborted(): void {
    this.active--;
  }

  countStatus(status: number): void {
    this.observer.count(status);
  }

  logAppError(err: unknown): void {
    logAppError(this.ctx, err);
  }

  // ---------------------------------------------------------------- access log and hooks

  private observeNode(x: NodeEx): void {
    const { req, res } = x;
    const t = this.observer.begin(req);
    // As received: routers rewrite req.url (Express's mounted apps and static files).
    const url = req.url!;
    res.once('finish', () => {
      this.observer.end(t, req, res, (durationMicros) => {
        const len = res.getHeader('content-length');
        return nodeEntry(req, res, { url, peer: x.conn.sock.remoteAddress ?? '', bytes: len === undefined ? null : Number(len), startedAt: t.startedAt, durationMicros });
      });
    });
  }

  private observeFetch(ex: FetchEx): void {
    const t = this.observer.begin(ex);
    const peer = ex._conn.sock.remoteAddress ?? '';
    const ev = ex._ev;
    (ex as Exchange).onFlushed = (status: number) => {
      this.observer.end(t, ex, { status }, (durationMicros) => ({
        peer,
        method: ev.method,
        url: ev.target,
        version: ev.version,
        status,
        bytes: null,
        startedAt: t.startedAt,
        durationMicros,
        reqHeader: (name) => ex.headers.get(name) ?? undefined,
        resHeader: () => undefined,
      }));
    };
  }

  // ---------------------------------------------------------------- lifecycle

  async start(): Promise<void> {
    if (this.framework) {
      await startFramework(this.framework);
      forwardUpgrades(this.server, this.framework);
    }
    await this.ctx.app.onServer(this.server);
    this.sweepTimer = setInterval(() => this.sweep(), 250);
    this.sweepTimer.unref();
    await this.listening.start();
    this.server.emitListening();
  }

  private newServer(): net.Server {
    const srv = this.tlsOpts
      ? tlsModule().createServer({ ...this.tlsOpts, allowHalfOpen: true }, this.onConnection)
      : net.createServer({ allowHalfOpen: true, noDelay: true } as net.ServerOpts, this.onConnection);
    srv.on('error', (err) => this.ctx.log.error({ err }, `listener error: ${oneLine(err)}`));
    if (this.tlsOpts) srv.on('tlsClientError', noop);
    return srv;
  }

  /**
   * Every 250 ms: the coarse clock (and so the Date header), then the deadlines. Between
   * requests a connection has `keepalive` to start the next head and `headerTimeout` to
   * finish it, both counted from its previous response (or its accept): bytes do not move
   * either clock, so a client sending a byte at a time gets its 408 like a silent one.
   */
  private sweep(): void {
    const now = (clock.now = Date.now());
    const stopping = this.stopping;
    let idle: Conn[] | null = null;
    for (const c of this.conns) {
      if (c.closingSince !== 0) {
        if (c.lingered(now, LINGER_MS)) c.closeNow();
      } else if (!c.busy) {
        const waited = now - c.idleSince;
        if (c.partial) {
          if (this.headerMs > 0 && waited >= this.headerMs) c.timeOut(408);
        } else if (waited >= (stopping ? IDLE_AFTER_STOP_MS : this.idleMs)) (idle ??= []).push(c);
      } else if (c.h.readState === 'body' && now - c.requestSince > REQUEST_BODY_MS) {
        c.closeNow();
      }
    }
    // Close in the check phase, after this loop iteration's I/O was read: a request that
    // already reached us makes the connection busy and saves it.
    if (idle !== null) setImmediate(closeIdle, idle);
  }

  async stop(graceful: boolean, opts: { keepAccepting?: boolean } = {}): Promise<void> {
    this.stopping = true;
    if (!graceful) {
      for (const c of this.conns) c.closeNow();
      for (const sock of this.upgraded) sock.destroy();
      this.listening.close();
      this.server.emitClose();
      return;
    }
    // Responses not yet started say `Connection: close`; idle connections get
    // IDLE_AFTER_STOP_MS to bring a request (answered with Connection: close), then close.
    for (const c of this.conns) {
      if (c.busy) c.h.startClosing();
      else c.idleSince = clock.now;
    }
    // The sweep timer closes the idle ones; leaving before the accept queue is empty
    // (keepAccepting) would strand connections in it. A framework closes once no HTTP
    // request is left: it refuses requests while closing.
    let frameworkClosed: Promise<void> | null = null;
    await drain({
      open: () => this.conns.size + this.upgraded.size,
      longLived: () => this.upgraded.size,
      lastAccept: () => this.lastAccept,
      keepAccepting: opts.keepAccepting ?? false,
      listening: this.listening,
      stoppedAccepting: () => void this.ctx.app.shutdown(),
      httpDone: () => {
        this.server.emitClose();
        if (this.framework) frameworkClosed = closeFramework(this.ctx, this.framework);
      },
    });
    await frameworkClosed;
    await this.ctx.app.shutdown();
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.observer.flush();
  }

  counters() {
    return { requests: this.requests, active: this.active, ...this.observer.counters() };
  }

  reopenLogs(): void {
    this.observer.reopen();
  }
}

function noop(): void {}

function closeIdle(conns: Conn[]): void {
  const now = clock.now;
  for (const c of conns) {
    // Still idle, and not since a request it served in between (idleSince moved on).
    if (!c.busy && !c.partial && !c.dead && c.closingSince === 0 && now - c.idleSince >= IDLE_AFTER_STOP_MS) c.endGracefully();
  }
}

const h11Class: WorkerClass = {
  name: 'h11',
  // Its engine serves, not a script's http.Server: a script gets a line saying so.
  scripts: 'refuse',
  adapt,
  create(ctx, app) {
    return new H11Worker(ctx, app as HttpApp);
  },
};

export default h11Class;
