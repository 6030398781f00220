/**
 * What `onServer(server)` gets under `-k h11`: an object with http.Server's events and the
 * methods WebSocket libraries use (`ws`, socket.io / engine.io, @hono/node-ws), over the
 * worker's engine. There is no Node http.Server under -k h11; this stands in for it.
 *
 * Events, as Node's server emits them:
 * - `request` (req, res): for a node app, when someone replaced or added `request` listeners
 *   (socket.io does, keeping ours inside its own); otherwise the worker calls the app
 *   directly, which is the same thing, faster.
 * - `upgrade` (req, socket, head): a request that proposes a protocol switch, when there is
 *   an `upgrade` listener; the socket is the listener's from then on (it writes the 101 or a
 *   refusal), `head` the bytes read past the request. Without a listener the request is an
 *   ordinary one, as in Node.
 * - `connection` (socket), `listening`, `close` (on a graceful stop, once no HTTP request is
 *   left, whatever upgraded connections remain), `error`.
 */
import { EventEmitter } from 'node:events';
import type { AddressInfo } from 'node:net';

/** What the server asks of its worker. */
export interface H11ServerHost {
  address(): AddressInfo | string | null;
  /** Stop accepting (the app closed its server). */
  closeListeners(): void;
  connections(): number;
  closeIdle(): void;
}

export class H11Server extends EventEmitter {
  listening = false;
  // Fields of Node's http.Server that libraries read or set; the worker's settings rule.
  timeout = 0;
  keepAliveTimeout = 5000;
  headersTimeout = 60_000;
  requestTimeout = 300_000;
  maxHeadersCount: number | null = null;
  maxRequestsPerSocket = 0;
  private closed = false;

  constructor(private readonly host: H11ServerHost) {
    super();
  }

  /**
   * Binds nothing: the worker's inherited listeners are this server's. The callback runs once
   * the worker listens, as a cluster worker's listen() would. (socket.io tells a server from
   * its options by this method.)
   */
  listen(...args: unknown[]): this {
    const cb = args[args.length - 1];
    if (typeof cb === 'function') {
      if (this.listening) process.nextTick(cb as () => void);
      else this.once('listening', cb as () => void);
    }
    return this;
  }

  address(): AddressInfo | string | null {
    return this.host.address();
  }

  /**
   * Stop accepting; `cb` (and 'close') once no HTTP request is left. As Node's: a server that
   * is not listening gives the callback ERR_SERVER_NOT_RUNNING.
   */
  close(cb?: (err?: Error) => void): this {
    if (!this.listening || this.closed) {
      if (cb) process.nextTick(cb, Object.assign(new Error('Server is not running.'), { code: 'ERR_SERVER_NOT_RUNNING' }));
      return this;
    }
    if (cb) this.once('close', cb);
    this.host.closeListeners();
    return this;
  }

  /** The worker says: listening (start), or closed (a stop, once no HTTP request is left). */
  emitListening(): void {
    this.listening = true;
    this.emit('listening');
  }

  emitClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.listening = false;
    this.emit('close');
  }

  getConnections(cb: (err: Error | null, count: number) => void): this {
    process.nextTick(cb, null, this.host.connections());
    return this;
  }

  closeIdleConnections(): void {
    this.host.closeIdle();
  }

  setTimeout(ms?: number, cb?: () => void): this {
    if (typeof ms === 'number') this.timeout = ms;
    if (cb) this.on('timeout', cb);
    return this;
  }

  ref(): this {
    return this;
  }

  unref(): this {
    return this;
  }
}
