/**
 * The `http` worker class: Node's own http (or https) server on the inherited listeners, or,
 * in script mode, the servers the app module made itself, each given the inherited listener
 * of its rank when it calls listen() (src/core/listen.ts).
 *
 * Either way the worker sees every request and connection of those servers (`host()`), so
 * the same policies hold: limits, keep-alive and headerTimeout, `Connection: close` once a
 * graceful stop began, counters, the access log.
 *
 * Graceful stop without resets: a keep-alive client may have its next request on the wire
 * at the moment we stop, so a connection is never closed while it might be carrying one.
 * Instead each connection's next response says `Connection: close` and Node closes it after
 * that response; connections that stay idle for a while after the stop began are closed.
 * Upgraded connections (WebSocket) are left to the app, which hears of the stop through
 * `shutdown()` and its server's 'close' event (fired once no HTTP request is left, however
 * many upgraded connections remain), until gracefulTimeout.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net from 'node:net';
import type { Socket } from 'node:net';
import { adaptHttpApp, type Framework, type HttpApp, type NodeHandler, type ScriptApp } from '../src/core/app.js';
import { AppLoadError, oneLine } from '../src/core/errors.js';
import { describeAsked, type ListenCall } from '../src/core/listen.js';
import { nodeEntry } from './accesslog.js';
import type { WorkerClass, WorkerContext, WorkerInstance } from './contract.js';
import { ConnectionCap, Listening, RequestObserver, closeFramework, drain, forwardUpgrades, httpsModule, loadTls, logAppError, startFramework, tlsModule } from './http-base.js';

/**
 * A whole request (head and body) must arrive within this (Node's default): a client that
 * trickles its body cannot hold a connection for ever. The head has `headerTimeout`.
 */
const REQUEST_TIMEOUT_MS = 300_000;
/** How often Node looks for connections past their header or request deadline. */
const DEADLINE_CHECK_MS = 250;
/** What the socket had read when its last request began (see idle()). */
const READ_AT_REQUEST = Symbol('arbiter.readAtRequest');

/** On a TCP socket of a TLS server: the TLS socket over it, which is what HTTP uses. */
const TLS_SOCKET = Symbol('arbiter.tlsSocket');

type Tracked = Socket & { [READ_AT_REQUEST]?: number; [TLS_SOCKET]?: Tracked; _httpMessage?: ServerResponse | null; _parent?: Tracked };

/**
 * The worker tracks accepted (TCP) sockets; under TLS, HTTP's state (the response in
 * progress, what was read) is on the TLS socket over each.
 */
function httpSide(socket: Tracked): Tracked {
  return socket[TLS_SOCKET] ?? socket;
}

function isHttpServer(srv: net.Server): srv is http.Server {
  // A script's https server means node:https is loaded already; a plain one never loads it here.
  return srv instanceof http.Server || srv instanceof httpsModule().Server;
}

class HttpWorker implements WorkerInstance {
  /** The servers requests come through: ours for an exported app, or the script's own. */
  private readonly servers: net.Server[] = [];
  private readonly sockets = new Set<Tracked>();
  /** Connections handed to an `upgrade` listener: the app's now, not HTTP's. */
  private readonly upgraded = new Set<Socket>();
  /** Idle at the last sweep of a graceful stop: closed at the next. */
  private idle = new Set<Socket>();
  private requests = 0;
  private stopping = false;
  private lastConnection = 0;
  private readonly observer: RequestObserver;
  private readonly listening: Listening;
  private readonly cap: ConnectionCap;
  /** Our server, for an exported app; null in script mode. */
  private readonly own: http.Server | null = null;
  private readonly script: ScriptApp | null = null;
  private readonly framework: Framework | null = null;
  private readonly adopting: Promise<void>[] = [];
  private booted = false;
  private readonly lineLimit: number;
  private readonly fieldLimit: number;
  private readonly fieldSize: number;
  private readonly noKeepalive: boolean;

  constructor(
    private readonly ctx: WorkerContext,
    app: HttpApp,
  ) {
    const s = ctx.settings;
    this.lineLimit = s.limitRequestLine;
    this.fieldLimit = s.limitRequestFields;
    this.fieldSize = s.limitRequestFieldSize;
    this.noKeepalive = s.keepalive === 0;
    this.observer = new RequestObserver(ctx);
    if (app.kind === 'listen') {
      this.script = app.script;
      // Binds beyond the script's servers feed its first one (checked in start()).
      this.listening = new Listening(ctx, () => this.forwarder(this.servers[0]!));
    } else {
      const tls = loadTls(s);
      const handler =
        app.kind === 'node' ? app.handler : fetchToNode!(app.fetch, { https: !!tls, onError: (err) => logAppError(ctx, err) });
      this.framework = app.kind === 'node' ? (app.framework ?? null) : null;
      const server = tls ? httpsModule().createServer({ ...serverOptions(s), ...tls }) : http.createServer(serverOptions(s));
      server.maxHeadersCount = maxHeadersCount(s);
      server.on('request', this.guard(handler));
      this.own = server;
      this.host(server);
      this.listening = new Listening(ctx, (i) => (i === 0 ? server : this.forwarder(server)));
    }
    this.cap = new ConnectionCap(s.workerConnections, this.listening, () => this.evictIdle());
  }

  // ---------------------------------------------------------------- servers

  /**
   * Watch a server's requests and connections. An http(s) server of the script's gets the
   * worker's keep-alive and timeout settings; its 'request' and 'upgrade' events pass
   * through `admit()` and `upgrade()` on their way to the app's listeners, whoever attached
   * them (socket.io replaces the 'request' listeners it finds, for instance).
   */
  private host(srv: net.Server): void {
    this.servers.push(srv);
    if (isHttpServer(srv)) {
      if (srv !== this.own) applyPolicy(srv, this.ctx.settings);
      const emit = srv.emit;
      const admit = this.admit.bind(this);
      const upgrade = this.upgrade.bind(this);
      srv.emit = function (this: http.Server, type: string | symbol, a?: unknown, b?: unknown) {
        if (type === 'request') {
          if (!admit(a as IncomingMessage, b as ServerResponse)) return true;
        } else if (type === 'upgrade') upgrade(b as Socket);
        // eslint-disable-next-line prefer-rest-params
        return Reflect.apply(emit, this, arguments) as boolean;
      } as typeof srv.emit;
    }
    if (!(srv instanceof http.Server) && srv instanceof tlsModule().Server) srv.on('secureConnection', (t: Tracked) => t._parent && (t._parent[TLS_SOCKET] = t));
    srv.on('connection', (socket: Tracked) => {
      this.cap.admit(this.sockets.size);
      this.sockets.add(socket);
      this.lastConnection = Date.now();
      socket.once('close', () => {
        this.sockets.delete(socket);
        this.cap.released(this.sockets.size, this.stopping);
      });
    });
  }

  /** A listener beyond the first: its connections go to `target`, as if accepted there. */
  private forwarder(target: net.Server): net.Server {
    return net.createServer({ pauseOnConnect: false }, (socket) => target.emit('connection', socket));
  }

  /** Script mode: a server's listen() call takes the listener of its rank. */
  private adopt(call: ListenCall): void {
    const { server, index } = call;
    const n = this.ctx.listeners.length;
    if (index >= n) {
      const err = Object.assign(
        new Error(
          `listen() of the script's server ${index + 1} (${describeAsked(call.asked)}) has no listener to take: arbiter has ${n} (bind), ` +
            `taken by the script's servers in the order they call listen()`,
        ),
        { code: 'EADDRNOTAVAIL' },
      );
      this.ctx.log.error({ event: 'listen_unbound' }, err.message);
      process.nextTick(() => server.emit('error', err));
      return;
    }
    if (!this.servers.includes(server)) this.host(server);
    const listened = this.listening.adopt(index, server).catch((err) => {
      const e = new AppLoadError(`the script's server ${index + 1} cannot listen on ${this.ctx.listeners[index]!.label}: ${oneLine(err)}`);
      if (!this.booted) throw e;
      this.ctx.log.error({ event: 'listen_failed' }, e.message);
    });
    if (!this.booted) this.adopting.push(listened);
  }

  // ---------------------------------------------------------------- requests

  /** Our server's request listener: an app error becomes a 500 (or a closed connection). */
  private guard(handler: NodeHandler) {
    return (req: IncomingMessage, res: ServerResponse) => {
      try {
        const r = handler(req, res) as Promise<unknown> | undefined;
        if (r && typeof r.catch === 'function') r.catch((err) => this.appError(err, res));
      } catch (err) {
        this.appError(err, res);
      }
    };
  }

  /** Every request, before the app: limits, counters and policy. False: answered here. Keep it lean. */
  private admit(req: IncomingMessage, res: ServerResponse): boolean {
    const ctx = this.ctx;
    this.requests++;
    const socket = req.socket as Tracked;
    socket[READ_AT_REQUEST] = socket.bytesRead;
    ctx.working(req);
    ctx.done();
    if (this.stopping || this.noKeepalive) {
      res.setHeader('Connection', 'close');
      if (this.stopping) this.idle.delete(socket._parent ?? socket);
    }
    const rejected = this.checkLimits(req);
    if (rejected) {
      res.writeHead(rejected, { 'content-type': 'text/plain', connection: 'close' });
      res.end(`${http.STATUS_CODES[rejected]}\n`);
      return false;
    }
    if (this.observer.watching) this.observe(req, res);
    return true;
  }

  /** A connection handed to an upgrade listener: counted, and no longer HTTP's to close. */
  private upgrade(socket: Socket): void {
    this.requests++;
    this.ctx.done();
    const tcp = (socket as Tracked)._parent ?? socket;
    this.upgraded.add(tcp);
    this.idle.delete(tcp);
    tcp.once('close', () => this.upgraded.delete(tcp));
    // It no longer holds its server's 'close' event: that says "no HTTP request is left",
    // which is when apps close what their requests used, and WebSocket libraries (engine.io)
    // close their connections.
    const held = tcp as Socket & { _server?: { _connections: number } | null };
    if (held._server) {
      held._server._connections--;
      held._server = null;
    }
  }

  private checkLimits(req: IncomingMessage): number {
    const lineLimit = this.lineLimit;
    const fieldLimit = this.fieldLimit;
    const fieldSize = this.fieldSize;
    // "GET " + target + " HTTP/1.1"
    if (lineLimit > 0 && req.method!.length + req.url!.length + 10 > lineLimit) return 414;
    const raw = req.rawHeaders;
    if (fieldLimit > 0 && raw.length > fieldLimit * 2) return 431;
    if (fieldSize > 0)
      for (let i = 0; i < raw.length; i += 2) if (raw[i]!.length + raw[i + 1]!.length + 2 > fieldSize) return 431;
    return 0;
  }

  private observe(req: IncomingMessage, res: ServerResponse): void {
    const observer = this.observer;
    const t = observer.begin(req);
    const socket = req.socket;
    const before = socket.bytesWritten;
    // As received: routers rewrite req.url (Express's mounted apps and static files).
    const url = req.url!;
    res.once('finish', () => {
      observer.count(res.statusCode);
      observer.end(t, req, res, (durationMicros) => {
        // Body bytes: what went to the socket for this response, less its head.
        const head = (res as unknown as { _header?: string })._header;
        const sent = socket.bytesWritten - before - (head ? Buffer.byteLength(head) : 0);
        return nodeEntry(req, res, { url, peer: socket.remoteAddress ?? '', bytes: head && sent >= 0 ? sent : null, startedAt: t.startedAt, durationMicros });
      });
    });
  }

  private appError(err: unknown, res: ServerResponse): void {
    logAppError(this.ctx, err);
    if (!res.headersSent) {
      res.writeHead(500, { 'content-type': 'text/plain', connection: 'close' });
      res.end('Internal Server Error\n');
    } else {
      res.destroy();
    }
  }

  // ---------------------------------------------------------------- lifecycle

  async start(): Promise<void> {
    const own = this.own;
    if (own) {
      if (this.framework) {
        await startFramework(this.framework);
        forwardUpgrades(own, this.framework);
      }
      await this.ctx.app.onServer(own);
      return this.listening.start();
    }
    const script = this.script!;
    for (const srv of script.capture.servers) await this.ctx.app.onServer(srv);
    script.capture.serve((call) => this.adopt(call));
    await Promise.all(this.adopting);
    const servers = this.servers.length;
    const binds = this.ctx.listeners.length;
    if (servers > 1 && servers < binds)
      throw new AppLoadError(
        `the script has ${servers} servers but arbiter has ${binds} listeners (bind): give one bind per server, in the order they call listen(), or one server for every bind`,
      );
    // One server takes every bind.
    await this.listening.start();
    this.booted = true;
  }


  /**
   * Close the oldest idle keep-alive connection: no request in progress and nothing read
   * since its last request began (a connection that has sent part of a head is not idle:
   * headerTimeout deals with it). Approximate for a request whose body arrived after its
   * head: that connection is not taken for idle until Node's keep-alive timeout closes it.
   */
  private evictIdle(): boolean {
    for (const socket of this.sockets) {
      const http = httpSide(socket);
      if (http._httpMessage || this.upgraded.has(socket)) continue;
      const read = http[READ_AT_REQUEST] ?? 0;
      if (http.bytesRead !== read) continue;
      socket.destroy();
      return true;
    }
    return false;
  }

  async stop(graceful: boolean, opts: { keepAccepting?: boolean } = {}): Promise<void> {
    this.stopping = true;
    if (!graceful) {
      for (const s of this.sockets) s.destroy();
      this.listening.close();
      return;
    }
    for (const socket of this.sockets) {
      const res = httpSide(socket)._httpMessage;
      if (res && !res.headersSent) res.setHeader('Connection', 'close');
      else if (!res && !this.upgraded.has(socket)) this.idle.add(socket);
    }
    // A framework closes once no HTTP request is left: it refuses requests while closing.
    const framework = this.framework;
    let closed: Promise<void> | null = null;
    // Sockets idle at the stop get IDLE_AFTER_STOP_MS to bring a request (answered with
    // Connection: close); then they are closed. Responses that were under way with
    // keep-alive end as idle sockets and are caught the same way.
    await drain({
      open: () => this.sockets.size,
      longLived: () => this.upgraded.size,
      lastAccept: () => this.lastConnection,
      keepAccepting: opts.keepAccepting ?? false,
      listening: this.listening,
      stoppedAccepting: () => void this.ctx.app.shutdown(),
      httpDone: framework ? () => (closed = closeFramework(this.ctx, framework)) : undefined,
      sweep: () => {
        for (const socket of this.idle) socket.destroy();
        this.idle.clear();
        for (const socket of this.sockets) if (!httpSide(socket)._httpMessage && !this.upgraded.has(socket)) this.idle.add(socket);
      },
    });
    await closed;
    await this.ctx.app.shutdown();
    this.observer.flush();
  }

  counters() {
    let active = this.upgraded.size;
    for (const s of this.sockets) if (httpSide(s)._httpMessage) active++;
    return { requests: this.requests, active, ...this.observer.counters() };
  }

  reopenLogs(): void {
    this.observer.reopen();
  }
}

function serverOptions(s: WorkerContext['settings']): http.ServerOptions {
  const headersTimeout = s.headerTimeout * 1000;
  return {
    keepAliveTimeout: s.keepalive * 1000,
    // Node's own cap on the whole head; our finer limits are checked per request.
    maxHeaderSize: Math.max(16384, s.limitRequestLine + s.limitRequestFields * (s.limitRequestFieldSize + 2)),
    // headerTimeout: Node answers 408 and closes; counted from the connection or the
    // previous response, not refreshed by each byte (slowloris).
    headersTimeout,
    requestTimeout: headersTimeout > 0 ? Math.max(REQUEST_TIMEOUT_MS, headersTimeout) : 0,
    connectionsCheckingInterval: DEADLINE_CHECK_MS,
  };
}

/**
 * The worker's settings on a server the script made: what the constructor options of ours
 * say, set as the properties Node reads them from (before it listens: the deadline checks
 * start on 'listening'). A header size the script chose itself is kept.
 */
function applyPolicy(srv: http.Server, s: WorkerContext['settings']): void {
  const o = serverOptions(s);
  const target = srv as http.Server & { maxHeaderSize?: number; connectionsCheckingInterval?: number };
  target.keepAliveTimeout = o.keepAliveTimeout!;
  target.headersTimeout = o.headersTimeout!;
  target.requestTimeout = o.requestTimeout!;
  target.connectionsCheckingInterval = o.connectionsCheckingInterval!;
  target.maxHeaderSize ??= o.maxHeaderSize;
  srv.maxHeadersCount = maxHeadersCount(s);
}

function maxHeadersCount(s: WorkerContext['settings']): number {
  return s.limitRequestFields > 0 ? s.limitRequestFields + 1 : 0;
}

/** Loaded by adapt() for a fetch app only (see the same in h11/worker.ts: Node's fetch implementation is some 5 MB). */
let fetchToNode: typeof import('./fetch.js').fetchToNode | undefined;

const httpClass: WorkerClass = {
  name: 'http',
  scripts: 'run',
  async adapt(value, settings, where) {
    const adapted = await adaptHttpApp(value, settings, where);
    if (adapted.app.kind === 'fetch') fetchToNode ??= (await import('./fetch.js')).fetchToNode;
    return adapted;
  },
  create(ctx, app) {
    const worker = new HttpWorker(ctx, app as HttpApp);
    return worker;
  },
};

export default httpClass;
