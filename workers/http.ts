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
import { RequestObserver, drain, listenAll, loadTls, logAppError } from './http-base.js';

class HttpWorker implements WorkerInstance {
  private readonly server: http.Server;
  /** Servers of the listeners after the first: they hand their connections to `server`. */
  private readonly extra: net.Server[] = [];
  private readonly sockets = new Set<Socket>();
  /** Idle at the last sweep of a graceful stop: closed at the next. */
  private idle = new Set<Socket>();
  private requests = 0;
  private stopping = false;
  private lastConnection = 0;
  private readonly observer: RequestObserver;

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
    const options: http.ServerOptions = {
      keepAliveTimeout: s.keepalive * 1000,
      // Node's own cap on the whole head; our finer limits are checked per request below.
      maxHeaderSize: Math.max(16384, s.limitRequestLine + s.limitRequestFields * (s.limitRequestFieldSize + 2)),
      requestTimeout: 0,
    };
    this.server = tls ? https.createServer({ ...options, ...tls }) : http.createServer(options);
    this.server.maxHeadersCount = s.limitRequestFields > 0 ? s.limitRequestFields + 1 : 0;
    this.server.maxConnections = s.workerConnections;
    this.server.on('request', this.wrap(handler));
    this.server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      this.lastConnection = Date.now();
      socket.once('close', () => this.sockets.delete(socket));
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
    // A server can only listen once: listeners after the first feed the same handler.
    return listenAll(this.ctx.listeners, this.ctx.settings.backlog, (i) => (i === 0 ? this.server : this.extraServer()));
  }

  /** A listening server that hands its connections to the main http server. */
  private extraServer(): net.Server {
    const srv = net.createServer({ pauseOnConnect: false }, (socket) => this.server.emit('connection', socket));
    this.extra.push(srv);
    return srv;
  }

  async stop(graceful: boolean, opts: { keepAccepting?: boolean } = {}): Promise<void> {
    this.stopping = true;
    const servers = [this.server as net.Server, ...this.extra];
    // net.Server's close, not http.Server's: Node's http close also drops idle keep-alive
    // connections at once, which is the reset we are avoiding.
    const closeListeners = () =>
      Promise.all(servers.map((srv) => new Promise<void>((resolve) => net.Server.prototype.close.call(srv, () => resolve())))).then(() => undefined);
    if (!graceful) {
      for (const s of this.sockets) s.destroy();
      await closeListeners();
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
      closeListeners,
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
