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
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { adaptHttpApp, oneLine, type HttpApp } from '../src/app.js';
import { nodeEntry, openAccessLog, type AccessLog } from './accesslog.js';
import type { WorkerClass, WorkerContext, WorkerInstance } from './contract.js';
import { fetchToNode } from './fetch.js';
import { LATENCY_BUCKETS } from '../src/messages.js';

/** How long a connection may sit idle after a graceful stop began before we close it. */
const IDLE_AFTER_STOP_MS = 500;
/** Still accepting at a whole-arbiter stop: leave once no client has come for this long. */
const QUIET_MS = 1000;

class HttpWorker implements WorkerInstance {
  private readonly server: http.Server;
  private readonly sockets = new Set<Socket>();
  private requests = 0;
  private readonly statuses = [0, 0, 0, 0, 0, 0];
  private stopping = false;
  private lastConnection = 0;
  private readonly accessLog: AccessLog | null;
  /** Per-bucket latency counts, +Inf, then the sum in seconds (see WorkerCounters.latency); null unless metrics are on. */
  private readonly latency: number[] | null;

  constructor(
    private readonly ctx: WorkerContext,
    app: HttpApp,
  ) {
    const s = ctx.settings;
    const tls = s.certfile && s.keyfile ? { cert: readFileSync(s.certfile), key: readFileSync(s.keyfile) } : null;
    const handler =
      app.kind === 'node'
        ? app.handler
        : fetchToNode(app.fetch, { https: !!tls, onError: (err) => ctx.log.error({ err }, `app error: ${oneLine(err)}`) });
    this.accessLog = s.accessLog ? openAccessLog(s.accessLog, s.accessLogFormat, s.forwardedAllowIps) : null;
    this.latency = s.metricsBind ? new Array<number>(LATENCY_BUCKETS.length + 2).fill(0) : null;
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
    const observe = this.accessLog !== null || this.latency !== null || ctx.hooks.has('postRequest') || ctx.hooks.has('preRequest');
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
      if (observe) this.observe(req, res);
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
    const started = Date.now();
    const t0 = process.hrtime.bigint();
    const hooks = this.ctx.hooks;
    if (hooks.has('preRequest')) void hooks.run('preRequest', { pid: process.pid }, req);
    const socket = req.socket;
    const before = socket.bytesWritten;
    res.once('finish', () => {
      const micros = Number(process.hrtime.bigint() - t0) / 1000;
      this.statuses[Math.floor(res.statusCode / 100)]!++;
      const latency = this.latency;
      if (latency !== null) {
        const seconds = micros / 1e6;
        let i = 0;
        while (i < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[i]!) i++;
        latency[i]!++;
        latency[LATENCY_BUCKETS.length + 1]! += seconds;
      }
      if (this.accessLog === null && !hooks.has('postRequest')) return;
      // Body bytes: what went to the socket for this response, less its head.
      const head = (res as unknown as { _header?: string })._header;
      const sent = socket.bytesWritten - before - (head ? Buffer.byteLength(head) : 0);
      this.accessLog?.log(nodeEntry(req, res, { peer: req.socket.remoteAddress ?? '', bytes: head && sent >= 0 ? sent : null, startedAt: started, durationMicros: micros }));
      if (hooks.has('postRequest')) void hooks.run('postRequest', { pid: process.pid }, req, res, micros / 1000);
    });
  }

  private appError(err: unknown, res: ServerResponse): void {
    this.ctx.log.error({ err }, `app error: ${oneLine(err)}`);
    if (!res.headersSent) {
      res.writeHead(500, { 'content-type': 'text/plain', connection: 'close' });
      res.end('Internal Server Error\n');
    } else {
      res.destroy();
    }
  }

  start(): Promise<void> {
    const backlog = this.ctx.settings.backlog;
    return Promise.all(
      this.ctx.listeners.map(
        (l) =>
          new Promise<void>((resolve, reject) => {
            // Each inherited descriptor is a listening socket of our own to accept on; a
            // server can only listen once, so extra listeners feed the same handler.
            const srv = l === this.ctx.listeners[0] ? this.server : this.extraServer();
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

  private readonly extra: net.Server[] = [];

  /** A listening server that hands its connections to the main http server. */
  private extraServer(): net.Server {
    const srv = net.createServer({ pauseOnConnect: false }, (socket) => this.server.emit('connection', socket));
    this.extra.push(srv);
    return srv;
  }

  private idle = new Set<Socket>();

  async stop(graceful: boolean, opts: { keepAccepting?: boolean } = {}): Promise<void> {
    this.stopping = true;
    const servers = [this.server as net.Server, ...this.extra];
    // net.Server's close, not http.Server's: Node's http close also drops idle keep-alive
    // connections at once, which is the reset we are avoiding.
    const closeListeners = () =>
      Promise.all(servers.map((srv) => new Promise<void>((resolve) => net.Server.prototype.close.call(srv, () => resolve()))));
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
    let closing: Promise<unknown> | null = opts.keepAccepting ? null : closeListeners();
    await new Promise<void>((resolve) => {
      // Sockets idle at the stop get IDLE_AFTER_STOP_MS to bring a request (answered with
      // Connection: close); then they are closed. Responses that were under way with
      // keep-alive end as idle sockets and are caught the same way.
      const sweep = setInterval(() => {
        for (const socket of this.idle) socket.destroy();
        this.idle.clear();
        for (const socket of this.sockets) if (!(socket as any)._httpMessage) this.idle.add(socket);
        if (this.sockets.size === 0 && (closing || Date.now() - this.lastConnection >= QUIET_MS)) {
          clearInterval(sweep);
          resolve();
        }
      }, IDLE_AFTER_STOP_MS);
    });
    closing ??= closeListeners();
    await closing;
    this.accessLog?.flush();
  }

  counters() {
    let active = 0;
    for (const s of this.sockets) if ((s as any)._httpMessage) active++;
    return this.latency === null
      ? { requests: this.requests, active, statuses: this.statuses }
      : { requests: this.requests, active, statuses: this.statuses, latency: this.latency };
  }

  reopenLogs(): void {
    this.accessLog?.reopen();
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
