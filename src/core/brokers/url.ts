/**
 * The broker URL grammar, in one place: the settings table checks `broker` with it, the
 * factory (open.ts) dispatches on it, the commands redact it for display.
 *
 *   spool:PATH                     embedded spool directory (relative to chdir / the current directory)
 *   redis://[[USER]:PASS@]HOST[:PORT][/DB]           one Redis server (rediss:// for TLS)
 *   redis+sentinel://[[USER]:PASS@]H1[:P1],H2[:P2],.../MASTER[/DB]
 *                                  the primary that Redis Sentinels at H1, H2, ... (port 26379 by
 *                                  default) name MASTER, followed across failovers; rediss+sentinel://
 *                                  for TLS to the servers and the sentinels
 *
 * Redis URLs take arbiter's own parameters too (ioredis gets the URL without them):
 *   ?wait=N              enqueue resolves only once N replicas have the task (Redis WAIT)
 *   &waitTimeout=MS      how long WAIT waits (default 1000); fewer replicas by then is an error
 *   &sentinelPassword=P  the sentinels' own password (sentinel URLs)
 */
export interface RedisTarget {
  /** One server: a redis:// or rediss:// URL for ioredis, without arbiter's parameters. */
  url?: string;
  /** Sentinel mode: where the sentinels are and the name they know the primary by. */
  sentinels?: { host: string; port: number }[];
  master?: string;
  db?: number;
  username?: string;
  password?: string;
  sentinelPassword?: string;
  tls: boolean;
  /** Replicas that must confirm every enqueue (0: the primary's reply is enough). */
  replicas: number;
  replicaTimeoutMs: number;
}

export type BrokerUrl = { kind: 'spool'; path: string } | { kind: 'redis'; url: string; target: RedisTarget };

export const DEFAULT_BROKER = 'spool:.arbiter-spool';

const EXPECTED = 'spool:PATH, redis://HOST:PORT/DB (rediss:// for TLS), or redis+sentinel://HOST:PORT,HOST:PORT/MASTER';
const OWN_PARAMS = ['wait', 'waitTimeout', 'sentinelPassword'];

export function parseBrokerUrl(url: string): BrokerUrl | null {
  try {
    return parseOrThrow(url);
  } catch {
    return null;
  }
}

function parseOrThrow(url: string): BrokerUrl | null {
  if (url.startsWith('spool:')) return { kind: 'spool', path: url.slice('spool:'.length) || '.arbiter-spool' };
  const sentinel = /^(rediss?)\+sentinel:\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/?@]+)\/([^/?]+)(?:\/(\d+))?\/?(?:\?(.*))?$/.exec(url);
  if (sentinel) {
    const [, scheme, user, pass, hosts, master, db, query] = sentinel;
    const params = ownParams(new URLSearchParams(query ?? ''), true);
    const sentinels = hosts!.split(',').map((h) => {
      const m = /^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::(\d{1,5}))?$/.exec(h.trim());
      if (!m || Number(m[2] ?? 26379) > 65535) throw new Error(`bad sentinel address ${h}`);
      return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2] ?? 26379) };
    });
    const target: RedisTarget = { sentinels, master: decodeURIComponent(master!), tls: scheme === 'rediss', ...params.values };
    if (db !== undefined) target.db = Number(db);
    if (user) target.username = decodeURIComponent(user);
    if (pass !== undefined && pass !== '') target.password = decodeURIComponent(pass);
    return { kind: 'redis', url, target };
  }
  if (/^rediss?:\/\/./.test(url)) {
    const q = url.indexOf('?');
    const params = ownParams(new URLSearchParams(q === -1 ? '' : url.slice(q + 1)), false);
    const rest = params.rest.toString();
    const clean = (q === -1 ? url : url.slice(0, q)) + (rest ? `?${rest}` : '');
    return { kind: 'redis', url, target: { url: clean, tls: url.startsWith('rediss:'), ...params.values } };
  }
  return null;
}

function ownParams(q: URLSearchParams, sentinel: boolean): { values: Pick<RedisTarget, 'replicas' | 'replicaTimeoutMs' | 'sentinelPassword'>; rest: URLSearchParams } {
  const values: Pick<RedisTarget, 'replicas' | 'replicaTimeoutMs' | 'sentinelPassword'> = { replicas: 0, replicaTimeoutMs: 1000 };
  const rest = new URLSearchParams();
  for (const [k, v] of q) {
    if (k === 'wait') {
      if (!/^\d{1,3}$/.test(v)) throw new Error('wait');
      values.replicas = Number(v);
    } else if (k === 'waitTimeout') {
      if (!/^\d{1,7}$/.test(v) || Number(v) < 1) throw new Error('waitTimeout');
      values.replicaTimeoutMs = Number(v);
    } else if (k === 'sentinelPassword' && sentinel) values.sentinelPassword = v;
    else if (sentinel) throw new Error(`unknown parameter ${k}`);
    else rest.append(k, v);
  }
  return { values, rest };
}

/** For the settings table: what was expected, or null when `url` is a broker URL. */
export function brokerUrlProblem(url: string): string | null {
  try {
    if (parseOrThrow(url)) return null;
  } catch (err) {
    const what = (err as Error).message;
    return `${EXPECTED}` + (OWN_PARAMS.includes(what) ? ` (${what}: a whole number${what === 'waitTimeout' ? ' of ms >= 1' : ''})` : ` (${what})`);
  }
  return EXPECTED;
}

/** The URL without its passwords, for logs and command output. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@').replace(/([?&]sentinelPassword=)[^&]*/, '$1***');
}
