/**
 * Listening sockets. The master binds each address once and keeps the descriptor; workers
 * receive the descriptors at spawn and accept on them directly, so a worker can die or be
 * replaced while the socket keeps queueing connections, and no connection is ever passed
 * through the master.
 *
 * The master binds but does not listen: if it listened, libuv would start accepting on its
 * event loop too. The first worker's listen(2) puts the shared socket into the listening
 * state, and from then on it stays listening for as long as the master holds it, whatever
 * happens to the workers.
 */
import { connect } from 'node:net';
import * as net from 'node:net';
import { lookup } from 'node:dns/promises';
import { existsSync, lstatSync, unlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { getSystemErrorName } from 'node:util';
import { SettingError } from './core/errors.js';
import { ENV } from './core/protocol.js';
import { handTo, type Ids } from './users.js';

export type Address =
  | { kind: 'tcp'; host: string; port: number; v6: boolean }
  | { kind: 'unix'; path: string }
  | { kind: 'fd'; fd: number };

/** A bound socket owned by the master. */
export interface Listener {
  /** As the user wrote it, or as it was found (systemd, ARBITER_FDS). */
  label: string;
  kind: 'tcp' | 'unix';
  fd: number;
  /** Unix socket file to remove on exit. */
  unlinkOnExit?: string;
  /** The libuv handle; kept so the descriptor stays open. */
  handle: { fd: number; close(): void; getsockname?(out: object): number };
}

export class BindError extends Error {}

/** Parse one `bind` entry. Throws a SettingError naming the entry. */
export function parseAddress(text: string, cwd = process.cwd()): Address {
  const bad = (why: string) => new SettingError(`invalid bind address "${text}": ${why}`);
  if (text.startsWith('unix:')) {
    const p = text.slice(5);
    if (!p) throw bad('unix: needs a path');
    return { kind: 'unix', path: path.resolve(cwd, p) };
  }
  if (text.startsWith('fd://')) {
    const n = text.slice(5);
    if (!/^\d+$/.test(n)) throw bad('fd:// needs a descriptor number');
    return { kind: 'fd', fd: Number(n) };
  }
  let host: string;
  let port: string;
  const v6 = /^\[([0-9a-fA-F:.%a-zA-Z]+)\](?::(\d+))?$/.exec(text);
  if (v6) {
    if (!net.isIPv6(v6[1]!.split('%')[0]!)) throw bad('not an IPv6 address');
    host = v6[1]!;
    port = v6[2] ?? '8000';
  } else if (/^\d+$/.test(text)) {
    host = '0.0.0.0';
    port = text;
  } else {
    const colon = text.lastIndexOf(':');
    if (colon === -1) {
      host = text;
      port = '8000';
    } else {
      host = text.slice(0, colon);
      port = text.slice(colon + 1);
    }
    if (host.includes(':')) throw bad('write IPv6 addresses in brackets, e.g. [::1]:8000');
    if (!/^[A-Za-z0-9.-]+$/.test(host)) throw bad('not a host name or IPv4 address');
  }
  if (!/^\d+$/.test(port) || Number(port) > 65535) throw bad('the port must be a number from 0 to 65535');
  return { kind: 'tcp', host, port: Number(port), v6: !!v6 };
}

export function labelOf(a: Address): string {
  if (a.kind === 'unix') return `unix:${a.path}`;
  if (a.kind === 'fd') return `fd://${a.fd}`;
  return a.v6 ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

type RawHandle = Listener['handle'];
// Node's own bind-without-listen, the primitive the cluster module uses for shared handles.
const createServerHandle: (
  address: string | null,
  port: number | null,
  addressType: number | null,
  fd?: number,
  flags?: number,
) => RawHandle | number = (net as any)._createServerHandle;

function bindFailure(label: string, code: number): BindError {
  const name = getSystemErrorName(code);
  const why: Record<string, string> = {
    EADDRINUSE: 'address already in use',
    EACCES: 'permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)',
    EADDRNOTAVAIL: 'address not available on this machine',
    EBADF: 'not an open descriptor',
    ENOTSOCK: 'not a socket',
    EINVAL: 'not a listening socket',
  };
  return new BindError(`cannot bind ${label}: ${why[name] ?? name} (${name})`);
}

/** Is a unix socket file left by a dead process? (Nobody answers on it.) */
function staleSocket(file: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect(file);
    c.once('connect', () => {
      c.destroy();
      resolve(false);
    });
    c.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED' || err.code === 'ENOENT'));
  });
}

const UV_TCP_REUSEPORT = 4;

export interface BindOptions {
  reusePort: boolean;
  cwd: string;
  /** The workers' user and group: a unix socket is handed to them, so they can connect to it too. */
  owner?: Ids;
}

async function bindOne(text: string, opts: BindOptions): Promise<Listener> {
  const a = parseAddress(text, opts.cwd);
  const label = labelOf(a);
  if (a.kind === 'fd') return adopt(a.fd, label);
  if (a.kind === 'unix') {
    if (existsSync(a.path)) {
      if (!lstatSync(a.path).isSocket()) throw new BindError(`cannot bind ${label}: the path exists and is not a socket`);
      if (!(await staleSocket(a.path))) throw new BindError(`cannot bind ${label}: address already in use (another server answers on it)`);
      unlinkSync(a.path);
    }
    const h = createServerHandle(a.path, -1, -1);
    if (typeof h === 'number') throw bindFailure(label, h);
    if (opts.owner) handTo(opts.owner, a.path, false);
    return { label, kind: 'unix', fd: h.fd, handle: h, unlinkOnExit: a.path };
  }
  let host = a.host;
  if (!net.isIP(host)) {
    try {
      host = (await lookup(host)).address;
    } catch {
      throw new BindError(`cannot bind ${label}: cannot resolve host "${a.host}"`);
    }
  }
  const family = net.isIP(host.split('%')[0]!);
  const flags = opts.reusePort ? UV_TCP_REUSEPORT : 0;
  const h = createServerHandle(host, a.port, family, undefined, flags);
  if (typeof h === 'number') throw bindFailure(label, h);
  // libuv defers EADDRINUSE from bind(2) to listen(2), which here happens in a worker, on
  // a copy that would then listen on a random port. Check that the bind really took.
  const out: { port?: number } = {};
  if (h.getsockname?.(out) !== 0 || !out.port || (a.port !== 0 && out.port !== a.port)) {
    h.close();
    throw bindFailure(label, -os.constants.errno.EADDRINUSE);
  }
  return { label: withRealPort(label, h), kind: 'tcp', fd: h.fd, handle: h };
}

/** Port 0 means "any free port": show the one the kernel picked. */
function withRealPort(label: string, h: RawHandle): string {
  const out: { port?: number } = {};
  if (h.getsockname && h.getsockname(out) === 0 && out.port !== undefined) return label.replace(/:\d+$/, `:${out.port}`);
  return label;
}

/** Take over an already-open listening descriptor (systemd, fd://N, a USR2 parent). */
export function adopt(fd: number, label: string): Listener {
  const h = createServerHandle(null, null, null, fd);
  if (typeof h === 'number') throw bindFailure(label, h);
  const kind = (h as any).constructor?.name === 'Pipe' ? 'unix' : 'tcp';
  return { label: label.startsWith('fd://') && kind === 'tcp' ? withRealPort(describeTcp(h) ?? label, h) : label, kind, fd: h.fd, handle: h };
}

function describeTcp(h: RawHandle): string | null {
  const out: { address?: string; port?: number; family?: string } = {};
  if (!h.getsockname || h.getsockname(out) !== 0 || out.port === undefined) return null;
  return out.family === 'IPv6' ? `[${out.address}]:${out.port}` : `${out.address}:${out.port}`;
}

/**
 * Descriptors systemd passed us (socket activation). Honoured only when LISTEN_PID names
 * this process, as sd_listen_fds(3) requires; the variables are removed so that workers
 * and re-executed masters do not take them for their own.
 */
export function systemdListeners(env: NodeJS.ProcessEnv): Listener[] {
  const count = Number(env.LISTEN_FDS ?? 0);
  const forUs = env.LISTEN_PID === undefined || Number(env.LISTEN_PID) === process.pid;
  const names = (env.LISTEN_FDNAMES ?? '').split(':');
  delete env.LISTEN_FDS;
  delete env.LISTEN_PID;
  delete env.LISTEN_FDNAMES;
  if (!count || !forUs) return [];
  const out: Listener[] = [];
  for (let i = 0; i < count; i++) {
    const name = names[i] && names[i] !== 'unknown' ? ` (${names[i]})` : '';
    out.push(adopt(3 + i, `systemd fd ${3 + i}${name}`));
  }
  return out;
}

/** Listeners handed over by the master that re-executed us (USR2): `ARBITER_FDS=3=LABEL,4=LABEL`. */
export function inheritedFromParent(env: NodeJS.ProcessEnv): Map<string, number> {
  const out = new Map<string, number>();
  for (const part of (env[ENV.FDS] ?? '').split(',')) {
    const m = /^(\d+)=(.+)$/.exec(part);
    if (m) out.set(m[2]!, Number(m[1]));
  }
  delete env[ENV.FDS];
  return out;
}

/**
 * Bind every address of `binds`, reusing descriptors handed over by a parent master where
 * the label matches (and taking them out of `inherited`: what is left there after every pool
 * bound is for `closeInherited`). Everything bound so far is closed again if one address fails.
 */
export async function openListeners(
  binds: string[],
  opts: BindOptions & { inherited?: Map<string, number> },
): Promise<Listener[]> {
  const out: Listener[] = [];
  const inherited = opts.inherited ?? new Map<string, number>();
  try {
    for (const text of binds) {
      const label = labelOf(parseAddress(text, opts.cwd));
      const fd = inherited.get(label);
      if (fd !== undefined) {
        inherited.delete(label);
        out.push({ ...adopt(fd, label), unlinkOnExit: label.startsWith('unix:') ? label.slice(5) : undefined });
      } else {
        out.push(await bindOne(text, opts));
      }
    }
  } catch (err) {
    closeListeners(out, { unlink: true });
    throw err;
  }
  return out;
}

/** A parent's listeners nobody asked for any more (bind changed across USR2). */
export function closeInherited(inherited: Map<string, number>): void {
  for (const fd of inherited.values()) adopt(fd, `fd://${fd}`).handle.close();
  inherited.clear();
}

export function closeListeners(listeners: Listener[], opts: { unlink: boolean }): void {
  for (const l of listeners) {
    try {
      l.handle.close();
    } catch {
      /* already closed */
    }
    if (opts.unlink && l.unlinkOnExit) {
      try {
        unlinkSync(l.unlinkOnExit);
      } catch {
        /* gone already */
      }
    }
  }
}

/**
 * The listeners for a `bind` (HUP, or a pool added by HUP): the ones in `current` (every
 * pool's) where the address stays, freshly bound where it is new. Nothing is closed here:
 * the master closes what no pool uses any more once every pool has its listeners (workers of
 * the old generation hold their own copies and keep accepting until they leave). If a new
 * address cannot be bound, what this call bound is closed again and it throws.
 */
export async function bindReusing(current: Listener[], binds: string[], opts: BindOptions): Promise<Listener[]> {
  const byLabel = new Map(current.map((l) => [l.label, l]));
  const next: Listener[] = [];
  const fresh: Listener[] = [];
  try {
    for (const text of binds) {
      const kept = byLabel.get(labelOf(parseAddress(text, opts.cwd)));
      if (kept) next.push(kept);
      else {
        const [l] = await openListeners([text], opts);
        fresh.push(l!);
        next.push(l!);
      }
    }
  } catch (err) {
    closeListeners(fresh, { unlink: true });
    throw err;
  }
  return next;
}
