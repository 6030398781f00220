/**
 * The access log: Gunicorn's format atoms, compiled once into a function, or JSON lines.
 * Both HTTP worker classes describe a finished request as an `AccessEntry`.
 */
import { isIP } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';

export interface AccessEntry {
  /** The peer's address (before X-Forwarded-For). */
  peer: string;
  method: string;
  url: string;
  /** `1.1`, `1.0`. */
  version: string;
  status: number;
  /** Body bytes sent, when known. */
  bytes: number | null;
  /** Epoch milliseconds when the request began. */
  startedAt: number;
  durationMicros: number;
  reqHeader(name: string): string | undefined;
  resHeader(name: string): string | undefined;
}

type Part = string | ((e: AccessEntry) => string);

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const pad = (n: number, w = 2) => String(n).padStart(w, '0');

/** `[10/Oct/2000:13:55:36 +0000]`, as Apache and Gunicorn write it. */
function clf(ms: number): string {
  const d = new Date(ms);
  const off = -d.getTimezoneOffset();
  const sign = off >= 0 ? '+' : '-';
  const tz = `${sign}${pad(Math.floor(Math.abs(off) / 60))}${pad(Math.abs(off) % 60)}`;
  return `[${pad(d.getDate())}/${MONTHS[d.getMonth()]}/${d.getFullYear()}:${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ${tz}]`;
}

const dash = (v: string | number | null | undefined) => (v === undefined || v === null || v === '' ? '-' : String(v));

function remote(trusted: (ip: string) => boolean) {
  return (e: AccessEntry): string => {
    if (trusted(e.peer)) {
      const xff = e.reqHeader('x-forwarded-for');
      if (xff) return xff.split(',')[0]!.trim();
    }
    return e.peer || '-';
  };
}

function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

function atoms(trusted: (ip: string) => boolean): Record<string, (e: AccessEntry) => string> {
  return {
    h: remote(trusted),
    l: () => '-',
    u: () => '-',
    t: (e) => clf(e.startedAt),
    r: (e) => `${e.method} ${e.url} HTTP/${e.version}`,
    m: (e) => e.method,
    U: (e) => pathOf(e.url),
    q: (e) => {
      const q = e.url.indexOf('?');
      return q === -1 ? '' : e.url.slice(q + 1);
    },
    H: (e) => `HTTP/${e.version}`,
    s: (e) => String(e.status),
    B: (e) => String(e.bytes ?? 0),
    b: (e) => dash(e.bytes),
    f: (e) => dash(e.reqHeader('referer')),
    a: (e) => dash(e.reqHeader('user-agent')),
    T: (e) => String(Math.floor(e.durationMicros / 1e6)),
    M: (e) => String(Math.round(e.durationMicros / 1000)),
    D: (e) => String(Math.round(e.durationMicros)),
    L: (e) => (e.durationMicros / 1e6).toFixed(6),
    p: () => `<${process.pid}>`,
  };
}

export function trustedProxies(list: string[]): (ip: string) => boolean {
  if (list.includes('*')) return () => true;
  const set = new Set(list.map(normalizeIp));
  return (ip) => set.has(normalizeIp(ip));
}

function normalizeIp(ip: string): string {
  return ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip;
}

/**
 * Compile a format. `json` gives one JSON object per line; anything else is a Gunicorn
 * format string, where an unknown atom is an error naming it.
 */
export function compileFormat(format: string, forwardedAllowIps: string[]): (e: AccessEntry) => string {
  const trusted = trustedProxies(forwardedAllowIps);
  const table = atoms(trusted);
  if (format === 'json') {
    const h = table.h!;
    return (e) =>
      JSON.stringify({
        time: new Date(e.startedAt).toISOString(),
        remote: h(e),
        method: e.method,
        url: e.url,
        version: e.version,
        status: e.status,
        bytes: e.bytes,
        duration_us: Math.round(e.durationMicros),
        referer: e.reqHeader('referer') ?? null,
        user_agent: e.reqHeader('user-agent') ?? null,
        pid: process.pid,
      });
  }
  const parts: Part[] = [];
  const re = /%\((\{([^}]+)\}([ioe])|[A-Za-z])\)s/g;
  let last = 0;
  for (let m = re.exec(format); m; m = re.exec(format)) {
    if (m.index > last) parts.push(format.slice(last, m.index));
    last = re.lastIndex;
    if (m[2]) {
      const name = m[2].toLowerCase();
      const kind = m[3];
      parts.push(
        kind === 'i'
          ? (e) => dash(e.reqHeader(name))
          : kind === 'o'
            ? (e) => dash(e.resHeader(name))
            : () => dash(process.env[m![2]!]),
      );
      continue;
    }
    const atom = table[m[1]!];
    if (!atom) throw new Error(`unknown access log atom %(${m[1]})s in accessLogFormat`);
    parts.push(atom);
  }
  if (last < format.length) parts.push(format.slice(last));
  return (e) => {
    let out = '';
    for (const p of parts) out += typeof p === 'string' ? p : p(e);
    return out;
  };
}

export interface AccessLog {
  log(e: AccessEntry): void;
  reopen(): void;
  flush(): void;
}

/** Where an access log to `-` goes: the master's stdout (a worker's own fd 1 is a pipe to the log). */
let stdoutFd = 1;
export function setAccessLogStdout(fd: number): void {
  stdoutFd = fd;
}

/** The access log writer: buffered, flushed on exit, reopened on USR1. */
export function openAccessLog(target: string, format: string, forwardedAllowIps: string[]): AccessLog {
  const line = compileFormat(format, forwardedAllowIps);
  // sonic-boom (pino's writer) buffers and writes asynchronously; loaded only when a worker logs access.
  const { createRequire } = process.getBuiltinModule('node:module');
  const SonicBoom = createRequire(import.meta.url)('sonic-boom') as typeof import('sonic-boom').default;
  const dest = new SonicBoom({ dest: target === '-' ? stdoutFd : target, sync: false, append: true, mkdir: true, minLength: 4096 });
  const flush = () => {
    try {
      dest.flushSync();
    } catch {
      /* nothing buffered, or the file is gone */
    }
  };
  process.once('exit', flush);
  // Buffered for speed under load, but never more than half a second behind.
  setInterval(() => {
    try {
      dest.flush();
    } catch {
      /* nothing buffered yet */
    }
  }, 500).unref();
  return {
    log: (e) => dest.write(line(e) + '\n'),
    reopen: () => dest.reopen(),
    flush,
  };
}

/**
 * An entry for a request served through Node's req/res objects (both HTTP classes). `at.url`
 * is the target as received, taken when the request began: routers rewrite req.url.
 */
export function nodeEntry(
  req: IncomingMessage,
  res: ServerResponse,
  at: { url: string; peer: string; bytes: number | null; startedAt: number; durationMicros: number },
): AccessEntry {
  return {
    ...at,
    method: req.method!,
    version: req.httpVersion,
    status: res.statusCode,
    reqHeader: (name) => {
      const v = req.headers[name];
      return Array.isArray(v) ? v.join(', ') : v;
    },
    resHeader: (name) => {
      const v = res.getHeader(name);
      return v === undefined ? undefined : String(v);
    },
  };
}
