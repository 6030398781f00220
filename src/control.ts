/**
 * The control socket: a unix socket (mode 0600) in the master for `arbiter status`,
 * `scale`, `reload` and `stop`. One JSON request per line, one JSON reply per line:
 *
 *   {"cmd":"status"}            → {"ok":true,"status":{...}}
 *   {"cmd":"reload"}            → {"ok":true}                      (as HUP; "pool":"web" reloads one pool)
 *   {"cmd":"scale","n":3}       → {"ok":true,"pool":"main","from":2,"to":3}
 *   {"cmd":"scale","by":1}      → the same, relative (TTIN is by 1, TTOU by -1)
 *   {"cmd":"stop"}              → {"ok":true,"pid":1234}           (as TERM; "graceful":false as INT)
 *   anything else               → {"ok":false,"error":"..."}
 *
 * `scale` names its pool with "pool"; it may be left out when the arbiter runs one pool.
 *
 * Nothing a client sends can take the master down: bad JSON, unknown commands, huge lines
 * and clients that vanish mid-reply all end in an error reply or a closed connection.
 */
import net from 'node:net';
import { chmodSync, lstatSync, statSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { VERSION } from './core/paths.js';
import type { Arbiter } from './master.js';
import type { WorkerGroup } from './group.js';
import type { ScheduleStatus } from './scheduler.js';
import type { WorkerHandle } from './worker-handle.js';

/** Longest request line accepted. */
const MAX_LINE = 64 * 1024;
/** Most workers `scale` may ask for: a typo should not fork-bomb the machine. */
export const MAX_SCALE = 1024;

export interface WorkerStatus {
  pid: number;
  /** The pool it belongs to. */
  pool: string;
  age: number;
  state: string;
  /** Seconds since the worker started serving (or since it was spawned, while booting). */
  uptime: number;
  /** HTTP requests answered, or tasks finished. */
  requests: number;
  tasks?: { processed: number; failed: number; retried: number; dead: number };
  active: number;
  /** Bytes; null before the first heartbeat. */
  rss: number | null;
  /** Seconds since the master last heard from the worker. */
  heartbeatAgo: number;
}

export interface PoolStatus {
  name: string;
  workerClass: string;
  app: string | null;
  listeners: string[];
  target: number;
  serving: number;
  restarts: Record<string, number>;
  /** Too many unexpected deaths within restartWindow (the pool keeps restarting them). */
  degraded: boolean;
  /** Removed from the config by a reload; its workers are leaving. */
  leaving?: boolean;
}

export interface Status {
  pid: number;
  /** Seconds. */
  uptime: number;
  version: string;
  /** The first pool's (the only one's, without `pools`). */
  workerClass: string;
  app: string | null;
  /** Over every pool. */
  listeners: string[];
  target: number;
  restarts: Record<string, number>;
  pools: PoolStatus[];
  workers: WorkerStatus[];
  /** The config's schedules and their next runs. */
  schedules: ScheduleStatus[];
}

const secs = (ms: number) => Math.round(ms / 100) / 10;

function workerStatus(w: WorkerHandle, pool: string, now: number): WorkerStatus {
  const c = w.counters;
  const out: WorkerStatus = {
    pid: w.pid,
    pool,
    age: w.age,
    state: w.state,
    uptime: secs(now - (w.bootedAt ?? w.spawnedAt)),
    requests: c?.requests ?? 0,
    active: c?.active ?? 0,
    rss: c?.rss ?? null,
    heartbeatAgo: secs(now - w.lastSeen),
  };
  if (c?.tasks) out.tasks = { processed: c.tasks.processed, failed: c.tasks.failed, retried: c.tasks.retried, dead: c.tasks.dead };
  return out;
}

function poolStatus(g: WorkerGroup): PoolStatus {
  let serving = 0;
  for (const w of g.workers.values()) if (w.state === 'serving') serving++;
  const out: PoolStatus = {
    name: g.name,
    workerClass: g.settings.workerClass,
    app: g.settings.app ?? null,
    listeners: g.listeners.map((l) => l.label),
    target: g.target,
    serving,
    restarts: { ...g.restarts },
    degraded: g.degraded,
  };
  if (g.leaving) out.leaving = true;
  return out;
}

export function statusOf(arbiter: Arbiter): Status {
  const now = Date.now();
  const groups = [...arbiter.groups.values()];
  const first = groups[0]?.settings ?? arbiter.settings;
  return {
    pid: process.pid,
    uptime: secs(now - arbiter.startedAt),
    version: VERSION,
    workerClass: first.workerClass,
    app: first.app ?? null,
    listeners: arbiter.listeners.map((l) => l.label),
    target: arbiter.target,
    restarts: { ...arbiter.restarts },
    pools: groups.map(poolStatus),
    workers: groups
      .flatMap((g) => [...g.workers.values()].map((w) => ({ w, pool: g.name })))
      .sort((a, b) => a.w.age - b.w.age)
      .map(({ w, pool }) => workerStatus(w, pool, now)),
    schedules: arbiter.scheduler?.status() ?? [],
  };
}

/** The pool a request names, or the only one; an error reply otherwise. */
function poolOf(arbiter: Arbiter, req: { pool?: unknown }): { pool: WorkerGroup } | { error: string } {
  const names = [...arbiter.groups.values()].filter((g) => !g.leaving).map((g) => g.name);
  if (req.pool === undefined) {
    if (names.length === 1) return { pool: arbiter.groups.get(names[0]!)! };
    return { error: `this arbiter runs pools ${names.join(', ')}: name one ("pool")` };
  }
  const g = typeof req.pool === 'string' ? arbiter.groups.get(req.pool) : undefined;
  if (!g || g.leaving) return { error: `no pool ${JSON.stringify(req.pool)}: this arbiter runs ${names.join(', ')}` };
  return { pool: g };
}

type Reply = Record<string, unknown> & { ok: boolean };

/** One request → one reply. `after` runs once the reply is written (used by stop). */
export function handleRequest(arbiter: Arbiter, line: string, log: Logger): { reply: Reply; after?: () => void } {
  let req: unknown;
  try {
    req = JSON.parse(line);
  } catch {
    return { reply: { ok: false, error: 'bad request: not JSON; send one JSON object per line, e.g. {"cmd":"status"}' } };
  }
  if (!req || typeof req !== 'object' || Array.isArray(req)) return { reply: { ok: false, error: 'bad request: expected a JSON object with "cmd"' } };
  const { cmd } = req as { cmd?: unknown };
  switch (cmd) {
    case 'status':
      return { reply: { ok: true, status: statusOf(arbiter) } };
    case 'reload': {
      const named = (req as { pool?: unknown }).pool;
      let only: string | undefined;
      if (named !== undefined) {
        const p = poolOf(arbiter, req as { pool?: unknown });
        if ('error' in p) return { reply: { ok: false, error: p.error } };
        only = p.pool.name;
      }
      log.info({ event: 'control', cmd, pool: only }, `control: reload${only ? ` pool ${only}` : ''}`);
      return { reply: { ok: true, ...(only ? { pool: only } : {}) }, after: () => void arbiter.reload(only).catch((err) => log.error({ err: String(err) }, 'control: reload failed')) };
    }
    case 'scale': {
      const { n, by } = req as { n?: unknown; by?: unknown };
      const p = poolOf(arbiter, req as { pool?: unknown });
      if ('error' in p) return { reply: { ok: false, error: p.error } };
      const from = p.pool.target;
      const to = by !== undefined && n === undefined && typeof by === 'number' && Number.isInteger(by) ? from + by : n;
      if (typeof to !== 'number' || !Number.isInteger(to) || to < 1 || to > MAX_SCALE)
        return { reply: { ok: false, error: `bad request: scale needs "n" (or "by", relative) for a worker count from 1 to ${MAX_SCALE}; got ${JSON.stringify(n ?? (by === undefined ? undefined : from + Number(by))) ?? 'nothing'}` } };
      log.info({ event: 'control', cmd, pool: p.pool.name, n: to }, `control: scale pool ${p.pool.name} to ${to}`);
      if (!arbiter.scale(p.pool.name, to)) return { reply: { ok: false, error: 'the arbiter is stopping; not scaling' } };
      return { reply: { ok: true, pool: p.pool.name, from, to } };
    }
    case 'stop': {
      const graceful = (req as { graceful?: unknown }).graceful !== false;
      log.info({ event: 'control', cmd, graceful }, `control: stop${graceful ? '' : ' now'}`);
      return { reply: { ok: true, pid: process.pid, graceful }, after: () => arbiter.stop(graceful) };
    }
    default:
      return { reply: { ok: false, error: `unknown command ${JSON.stringify(cmd) ?? '(none)'}: expected status, reload, scale or stop` } };
  }
}

/** Is something answering on this unix socket? */
function probe(file: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(file);
    const done = (v: boolean) => {
      s.destroy();
      resolve(v);
    };
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
    s.setTimeout(1000, () => done(true));
  });
}

/**
 * Make room for our socket: a stale socket file (nobody answers) is removed; a live one is
 * refused (another arbiter uses it), unless `takeOver` (a USR2 master replacing its parent);
 * anything that is not a socket is never removed.
 */
async function clear(file: string, takeOver: boolean): Promise<void> {
  let st;
  try {
    st = lstatSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new Error(`control socket ${file}: ${(err as Error).message}`);
  }
  if (!st.isSocket()) throw new Error(`control socket ${file} exists and is not a socket; not replacing it`);
  if (!takeOver && (await probe(file))) throw new Error(`control socket ${file} is in use by a running arbiter`);
  unlinkSync(file);
}

export interface ControlServer {
  close(): void;
  path: string;
}

/**
 * Listen on `file` (relative to the current directory, i.e. `chdir`). The socket is created
 * under umask 0177 and chmod'ed to 0600 at once: only the master's user may connect.
 */
export async function startControlServer(arbiter: Arbiter, file: string, log: Logger, opts: { takeOver?: boolean } = {}): Promise<ControlServer> {
  const where = path.resolve(file);
  await clear(where, opts.takeOver ?? false);
  const clients = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    clients.add(socket);
    socket.setEncoding('utf8');
    let buf = '';
    socket.on('error', () => {});
    socket.on('close', () => clients.delete(socket));
    socket.on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        let out: ReturnType<typeof handleRequest>;
        try {
          out = handleRequest(arbiter, line, log);
        } catch (err) {
          log.error({ event: 'control_error', err: String(err) }, `control: ${(err as Error).message}`);
          out = { reply: { ok: false, error: `internal error: ${(err as Error).message}` } };
        }
        if (!socket.writable) return;
        socket.write(JSON.stringify(out.reply) + '\n', () => {
          try {
            out.after?.();
          } catch (err) {
            log.error({ event: 'control_error', err: String(err) }, `control: ${(err as Error).message}`);
          }
        });
      }
      if (buf.length > MAX_LINE) {
        socket.end(JSON.stringify({ ok: false, error: `bad request: line longer than ${MAX_LINE} bytes` }) + '\n');
        buf = '';
      }
    });
    socket.setTimeout(60_000, () => socket.destroy());
  });
  server.on('error', (err) => log.error({ event: 'control_error', err: String(err) }, `control socket: ${err.message}`));
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => reject(new Error(`control socket ${where}: ${err.code ?? err.message}`));
    server.once('error', onError);
    // The bind happens inside listen(), synchronously: the umask covers exactly that.
    const old = process.umask(0o177);
    try {
      server.listen(where, () => {
        server.off('error', onError);
        resolve();
      });
    } finally {
      process.umask(old);
    }
  });
  chmodSync(where, 0o600);
  const { ino, dev } = statSync(where);
  server.unref();
  log.info({ event: 'control_listening', path: where }, `control socket at ${where}`);
  return {
    path: where,
    close() {
      server.close();
      for (const c of clients) c.destroy();
      // After a USR2 hand-over the path may be the new master's socket: leave that one alone.
      try {
        const st = statSync(where);
        if (st.ino === ino && st.dev === dev) unlinkSync(where);
      } catch {
        /* already gone */
      }
    },
  };
}
