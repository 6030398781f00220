/**
 * The `http` worker class: Node's own http (or https) server on the inherited listeners.
 *
 * Graceful stop without resets: a keep-alive client may have its next request on the wire
 * at the moment we stop, so a connection is never closed while it might be carrying one.
 * Instead each connection's next response says `Connection: close` and Node closes it after
 * that response; connections that stay idle for a while after the stop began are closed.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { Socket } from 'node:net';
import { adaptHttpApp, type HttpApp } from '../src/core/app.js';
import { nodeEntry } from './accesslog.js';
import type { WorkerClass, WorkerContext, WorkerInstance } from './contract.js';
import { fetchToNode } from './fetch.js';
import { ConnectionCap, Listening, RequestObserver, drain, loadTls, logAppError } from './http-base.js';

/**
 * A whole request (head and body) must arrive within this (Node's default): a client that
 * trickles its body cannot hold a connection for ever. The head has `headerTimeout`.
 */
const REQUEST_TIMEOUT_MS = 300_000;
/** How often Node looks for connections past their header or request deadline. */
const DEADLINE_CHECK_MS = 250;
/** What the socket had read when its last request began (see idle()). */
const READ_AT_REQUEST = Symbol('arbiter.readAtRequest');

class HttpWorker implements WorkerInstance {
  private readonly server: http.Server;
  private readonly sockets = new Set<Socket>();
  /** Idle at the last sweep of a graceful stop: closed at the next. */
  private idle = new Set<Socket>();
  private requests = 0;
  private stopping = false;
  private lastConnection = 0;
  private readonly observer: RequestObserver;
  private readonly listening: Listening;
  private readonly cap: ConnectionCap;

  constructor(
    private readonly ctx: WorkerContext,
    app: HttpApp,
  ) {
    const s = ctx.settings;
    const tls = loadTls(s);
    const handler =
      app.kind === 'node'
        ? app.handler
        : fetchToNode(app.fetch, { https: !!tls, onError: (err) => logAppError(ctx, err) });
    this.observer = new RequestObserver(ctx);
    const headersTimeout = s.headerTimeout * 1000;
    const options: http.ServerOptions = {
      keepAliveTimeout: s.keepalive * 1000,
      // Node's own cap on the whole head; our finer limits are checked per request below.
      maxHeaderSize: Math.max(16384, s.limitRequestLine + s.limitRequestFields * (s.limitRequestFieldSize + 2)),
      // headerTimeout: Node answers 408 and closes; counted from the connection or the
      // previous response, not refreshed by each byte (slowloris).
      headersTimeout,
      requestTimeout: headersTimeout > 0 ? Math.max(REQUEST_TIMEOUT_MS, headersTimeout) : 0,
      connectionsCheckingInterval: DEADLINE_CHECK_MS,
    };
    this.server = tls ? https.createServer({ ...options, ...tls }) : http.createServer(options);
    this.server.maxHeadersCount = s.limitRequestFields > 0 ? s.limitRequestFields + 1 : 0;
    this.server.on('request', this.wrap(handler));
    this.listening = new Listening(ctx, (i) => (i === 0 ? this.server : this.extraServer()));
    this.cap = new ConnectionCap(s.workerConnections, this.listening, () => this.evictIdle());
    this.server.on('connection', (socket: Socket) => {
      this.cap.admit(this.sockets.size);
      this.sockets.add(socket);
      this.lastConnection = Date.now();
      socket.once('close', () => {
        this.sockets.delete(socket);
        this.cap.released(this.sockets.size, this.stopping);
      });
    });
  }

  /** The per-request path: limits, counters and policy, then the app. Keep it lean. */
  private wrap(handler: (req: IncomingMessage, res: ServerResponse) => unknown) {
    const s = this.ctx.settings;
    const ctx = this.ctx;
    const lineLimit = s.limitRequestLine;
    const fieldLimit = s.limitRequestFields;
    const fieldSize = s.limitRequestFieldSize;
    const noKeepalive = s.keepalive === 0;
    const watching = this.observer.watching;
    return (req: IncomingMessage, res: ServerResponse) => {
      this.requests++;
      (req.socket as Socket & { [READ_AT_REQUEST]?: number })[READ_AT_REQUEST] = req.socket.bytesRead;
      ctx.working(req);
      ctx.done();
      if (this.stopping || noKeepalive) {
        res.setHeader('Connection', 'close');
        if (this.stopping) this.idle.delete(req.socket);
      }
      const rejected = this.checkLimits(req, lineLimit, fieldLimit, fieldSize);
      if (rejected) {
        res.writeHead(rejected, { 'content-type': 'text/plain', connection: 'close' });
        res.end(`${http.STATUS_CODES[rejected]}\n`);
        return;
      }
      if (watching) this.observe(req, res);
      try {
        const r = handler(req, res) as Promise<unknown> | undefined;
        if (r && typeof r.catch === 'function') r.catch((err) => this.appError(err, res));
      } catch (err) {
        this.appError(err, res);
      }
    };
  }

  private checkLimits(req: IncomingMessage, lineLimit: number, fieldLimit: number, fieldSize: number): number {
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
    res.once('finish', () => {
      observer.count(res.statusCode);
      observer.end(t, req, res, (durationMicros) => {
        // Body bytes: what went to the socket for this response, less its head.
        const head = (res as unknown as { _header?: string })._header;
        const sent = socket.bytesWritten - before - (head ? Buffer.byteLength(head) : 0);
        return nodeEntry(req, res, { peer: socket.remoteAddress ?? '', bytes: head && sent >= 0 ? sent : null, startedAt: t.startedAt, durationMicros });
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

  start(): Promise<void> {
    return this.listening.start();
  }

  /**
   * Close the oldest idle keep-alive connection: no request in progress and nothing read
   * since its last request began (a connection that has sent part of a head is not idle:
   * headerTimeout deals with it). Approximate for a request whose body arrived after its
   * head: that connection is not taken for idle until Node's keep-alive timeout closes it.
   */
  private evictIdle(): boolean {
    for (const socket of this.sockets) {
      if ((socket as any)._httpMessage) continue;
      const read = (socket as Socket & { [READ_AT_REQUEST]?: number })[READ_AT_REQUEST] ?? 0;
      if (socket.bytesRead !== read) continue;
      socket.destroy();
      return true;
    }
    return false;
  }

  /** A server can listen only once: listeners after the first hand their connections to the main one. */
  private extraServer(): net.Server {
    return net.createServer({ pauseOnConnect: false }, (socket) => this.server.emit('connection', socket));
  }

  async stop(graceful: boolean, opts: { keepAccepting?: boolean } = {}): Promise<void> {
    this.stopping = true;
    if (!graceful) {
      for (const s of this.sockets) s.destroy();
      await this.listening.close();
      return;
    }
    for (const socket of this.sockets) {
      const res = (socket as any)._httpMessage as ServerResponse | null;
      if (res && !res.headersSent) res.setHeader('Connection', 'close');
      else if (!res) this.idle.add(socket);
    }
    // Sockets idle at the stop get IDLE_AFTER_STOP_MS to bring a request (answered with
    // Connection: close); then they are closed. Responses that were under way with
    // keep-alive end as idle sockets and are caught the same way.
    await drain({
      open: () => this.sockets.size,
      lastAccept: () => this.lastConnection,
      keepAccepting: opts.keepAccepting ?? false,
      listening: this.listening,
      sweep: () => {
        for (const socket of this.idle) socket.destroy();
        this.idle.clear();
        for (const socket of this.sockets) if (!(socket as any)._httpMessage) this.idle.add(socket);
      },
    });
    this.observer.flush();
  }

  counters() {
    let active = 0;
    for (const s of this.sockets) if ((s as any)._httpMessage) active++;
    return { requests: this.requests, active, ...this.observer.counters() };
  }

  reopenLogs(): void {
    this.observer.reopen();
  }
}

const httpClass: WorkerClass = {
  name: 'http',
  adapt: adaptHttpApp,
  create(ctx, app) {
    return new HttpWorker(ctx, app as HttpApp);
  },
};

export default httpClass;
