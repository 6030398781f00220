/**
 * Script mode (interface `listen`): a module that creates its own server and calls
 * `listen()` while it loads. A `ListenCapture` stands in for `net.Server.prototype.listen`
 * while such a module loads, so that its calls bind nothing: the master's app check records
 * what each server asked for (to bind that when no `bind` is given), and a worker hands each
 * server the inherited listener of the same rank, the way a `cluster` worker's listen()
 * takes the primary's handle instead of binding (Node's lib/internal/cluster/child.js).
 *
 * Servers are ranked by their first listen() call: the first server to call it takes
 * listener 0, the next listener 1, and so on. A server that calls listen() again keeps its
 * rank.
 */
import net from 'node:net';

/** What one listen() call asked for, as Node's own argument rules read it. */
export type Asked = { port: number; host: string | null } | { path: string } | { handle: true };

export interface ListenCall {
  server: net.Server;
  asked: Asked;
  /** The server's rank: which listener it takes. */
  index: number;
}

const realListen = net.Server.prototype.listen;

/**
 * listen() as Node has it, for arbiter's own servers: while a capture is installed the
 * prototype's listen is the capture's.
 */
export function listenReally(server: net.Server, handle: object, backlog: number, cb?: () => void): net.Server {
  return (realListen as (...args: unknown[]) => net.Server).call(server, handle, backlog, cb);
}

function badPort(value: unknown): Error {
  return Object.assign(new RangeError(`options.port should be >= 0 and < 65536. Received ${String(value)}.`), { code: 'ERR_SOCKET_BAD_PORT' });
}

function portOf(value: unknown): number {
  if (value === undefined || value === null || value === '') return 0;
  const n = typeof value === 'number' ? value : typeof value === 'string' ? Number(value) : NaN;
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw badPort(value);
  return n;
}

/**
 * The address a listen() call asks for: `(port?, host?, backlog?, cb?)`, `(path, ...)`,
 * `(options, cb?)` or `(handle, ...)`. A string that is not a number is a pipe path, as in
 * Node's normalizeArgs.
 */
export function askedOf(args: readonly unknown[]): Asked {
  const a0 = args[0];
  if (a0 !== null && typeof a0 === 'object') {
    const o = a0 as Record<string, unknown>;
    if (o.fd !== undefined || o._handle !== undefined || o.handle !== undefined) return { handle: true };
    if (typeof o.path === 'string' && o.path !== '') return { path: o.path };
    return { port: portOf(o.port), host: typeof o.host === 'string' && o.host !== '' ? o.host : null };
  }
  if (typeof a0 === 'string' && !(Number(a0) >= 0)) return { path: a0 };
  return { port: portOf(a0), host: typeof args[1] === 'string' && args[1] !== '' ? args[1] : null };
}

/** For log lines and errors: `port 3000`, `127.0.0.1:3000`, `unix:/tmp/app.sock`. */
export function describeAsked(a: Asked): string {
  if ('path' in a) return `unix:${a.path}`;
  if ('handle' in a) return 'a handle';
  if (a.host === null) return `port ${a.port}`;
  return net.isIPv6(a.host) ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/**
 * The `bind` entry that serves what a listen() call asked for, as `node server.js` would
 * listen: no host means every interface (`::`, which also takes IPv4, where the machine has
 * IPv6). Null for a handle or descriptor: nothing to bind.
 */
export function bindFor(a: Asked, ipv6: boolean): string | null {
  if ('handle' in a) return null;
  if ('path' in a) return `unix:${a.path}`;
  if (a.host === null) return ipv6 ? `[::]:${a.port}` : `0.0.0.0:${a.port}`;
  return net.isIPv6(a.host) ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/** How long a module may take, after it loaded, to make its first listen() call. */
export const FIRST_LISTEN_MS = 30_000;
/** With fewer servers than listeners: no further listen() call for this long means there are no more. */
export const LISTEN_QUIET_MS = 200;
const POLL_MS = 20;

export class ListenCapture {
  readonly calls: ListenCall[] = [];
  private readonly rank = new Map<net.Server, number>();
  private take: ((call: ListenCall) => void) | null = null;
  private lastCallAt = 0;
  private installed = false;

  install(): void {
    if (this.installed) return;
    this.installed = true;
    const capture = this;
    net.Server.prototype.listen = function listen(this: net.Server, ...args: unknown[]) {
      return capture.listen(this, args);
    } as typeof realListen;
  }

  /** Give listen() back to Node (the module turned out to export an app). */
  uninstall(): void {
    if (!this.installed) return;
    this.installed = false;
    net.Server.prototype.listen = realListen;
  }

  /** Servers in rank order. */
  get servers(): net.Server[] {
    return [...this.rank.keys()];
  }

  /** From now on each call goes to `take`: first the ones made so far, in order, then each as it comes. */
  serve(take: (call: ListenCall) => void): void {
    this.take = take;
    for (const call of this.calls) take(call);
  }

  private listen(server: net.Server, args: unknown[]): net.Server {
    // Node registers the callback as a one-time 'listening' listener; so does this.
    const cb = args.length > 0 && typeof args[args.length - 1] === 'function' ? (args.pop() as () => void) : undefined;
    const asked = askedOf(args);
    if (cb) server.once('listening', cb);
    let index = this.rank.get(server);
    if (index === undefined) {
      index = this.rank.size;
      this.rank.set(server, index);
    }
    const call: ListenCall = { server, asked, index };
    this.calls.push(call);
    this.lastCallAt = Date.now();
    this.take?.(call);
    return server;
  }

  /**
   * Wait for the module's servers: until `want` of them called listen(), or, once at least
   * one did, until none has come for LISTEN_QUIET_MS. With none yet: until `firstMs`, or
   * until `idle()` says the module has nothing left that could still call it. Resolves to
   * the number of servers.
   */
  settle(o: { want: number; firstMs: number; idle?: () => boolean }): Promise<number> {
    const started = Date.now();
    // Looked at from a timer, never at once: what the module's own promise chains do next
    // runs first. Idle counts only when seen twice in a row.
    let idleBefore = false;
    return new Promise((resolve) => {
      const timer = setInterval(() => {
        const n = this.rank.size;
        const now = Date.now();
        const idle = n === 0 && o.idle?.() === true;
        if (n >= o.want || (n > 0 && now - this.lastCallAt >= LISTEN_QUIET_MS) || (n === 0 && (now - started >= o.firstMs || (idle && idleBefore)))) {
          clearInterval(timer);
          resolve(n);
        }
        idleBefore = idle;
      }, POLL_MS);
    });
  }
}

/**
 * For the master's check: a server "listens" without binding. Its callback and 'listening'
 * listeners run and address() answers what it asked for, so a script that awaits one
 * server's listen() before it starts the next goes on loading.
 */
export function pretendListening(call: ListenCall): void {
  const { server, asked } = call;
  const address =
    'path' in asked ? asked.path : 'handle' in asked ? null : { address: asked.host ?? '::', family: asked.host && net.isIPv4(asked.host) ? 'IPv4' : 'IPv6', port: asked.port };
  Object.defineProperty(server, 'address', { value: () => address, configurable: true, writable: true });
  Object.defineProperty(server, 'listening', { value: true, configurable: true, writable: true });
  process.nextTick(() => server.emit('listening'));
}

/**
 * For `settle()`'s idle: a thread with nothing left to run but settle's own poll (one
 * timer), no handle or request that keeps its event loop alive. Such a module will never
 * call listen() (a pending promise with nothing behind it never settles).
 */
export function nothingPending(): boolean {
  let timers = 0;
  for (const r of process.getActiveResourcesInfo()) {
    if (r === 'Timeout') timers++;
    else if (r !== 'CloseReq') return false;
  }
  return timers <= 1;
}
