/**
 * The control socket: a unix socket (mode 0600) in the master for `arbiter status`, `scale`,
 * `reload`, `stop`, `upgrade` and `top`. One JSON request per line, one JSON reply per line.
 * Every request may name a `pool`; without one it means the pool an arbiter started from the
 * command line has (`main`). What each request does is REQUESTS below:
 *
 *   {"cmd":"status"}            → {"ok":true,"status":{...}}
 *   {"cmd":"reload"}            → once the new workers serve: {"ok":true,"workers":{...},"changed":[...]}
 *                                 or, when they cannot boot: {"ok":false,"error":"...","detail":"..."}
 *                                 ("pool":"web" reloads that pool only)
 *   {"cmd":"scale","n":3}       → {"ok":true,"pool":"main","from":2,"to":3}   ("by":1 / "by":-1 is relative)
 *   {"cmd":"stop"}              → {"ok":true,"pid":1234}           (as TERM; "graceful":false as INT)
 *   {"cmd":"upgrade"}           → once a new master serves: {"ok":true,"from":1234,"to":1250}, and
 *                                 this master then stops gracefully; {"ok":false,...} when it failed
 *   anything else               → {"ok":false,"error":"..."}
 *
 * `scale` names its pool with "pool"; it may be left out when the arbiter runs one pool.
 *
 * Nothing a client sends can take the master down: bad JSON, unknown commands, huge lines
 * and clients that vanish mid-reply all end in an error reply or a closed connection.
 */
import type net from 'node:net';
import type { Logger } from './core/logging.js';
import { serializable } from './config.js';
import { errorMessage } from './core/errors.js';
import { VERSION } from './core/paths.js';
import type { Settings } from './core/settings.js';
import type { WorkerGroup } from './group.js';
import type { Arbiter } from './master.js';
import { cpuSeconds } from './procstat.js';
import type { ScheduleStatus } from './scheduler.js';
import { listenBeside, PathTaken, type ClaimedSocket } from './socket-claim.js';
import type { BrokerStatus } from './task-brokers.js';
import type { WorkerHandle } from './worker-handle.js';

/** Longest request line accepted. */
const MAX_LINE = 64 * 1024;
/** Most workers `scale` may ask for: a typo should not fork-bomb the machine. */
export const MAX_SCALE = 1024;
/** How long `reload` and `upgrade` wait for the new workers or master to serve. */
export const OUTCOME_WAIT_MS = 120_000;
/** A connection with no request in flight is closed after this long. */
const IDLE_MS = 60_000;

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
  /** CPU seconds (user + system) the process has used; null when /proc cannot tell. */
  cpu: number | null;
  /** Event-loop delay over the last heartbeat interval, milliseconds; null before one. */
  loopDelay: { mean: number; max: number } | null;
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
  name: string;
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
  /** Task pools: whether their broker can be reached. */
  brokers?: BrokerStatus[];
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
    cpu: cpuSeconds(w.pid),
    loopDelay: c?.loopDelay ?? null,
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

export function statusOf(arbiter: Arbiter, name: string): Status {
  const now = Date.now();
  const groups = [...arbiter.groups.values()];
  const first = groups[0]?.settings ?? arbiter.settings;
  const brokers = arbiter.brokers?.status();
  return {
    name,
    pid: process.pid,
    uptime: secs(now - arbiter.startedAt),
    version: VERSION,
    workerClass: first.workerClass,
    app: first.app ?? null,
    listeners: arbiter.listeners.map((l) => l.label),
    target: arbiter.target,
    restarts: { ...arbiter.restarts },
    pools: groups.map(poolStatus),
    ...(brokers ? { brokers } : {}),
    workers: groups
      .flatMap((g) => [...g.workers.values()].map((w) => ({ w, pool: g.name })))
      .sort((a, b) => a.w.age - b.w.age)
      .map(({ w, pool }) => workerStatus(w, pool, now)),
    schedules: arbiter.scheduler?.status() ?? [],
  };
}

type Reply = Record<string, unknown> & { ok: boolean };
type Request = Record<string, unknown> & { cmd: string };
/** A reply, and what to do once it is written (stop after `stop` and `upgrade`). */
export interface Outcome {
  reply: Reply;
  after?: () => void;
}
interface Context {
  arbiter: Arbiter;
  log: Logger;
  name: string;
}

const fail = (error: string, more: Record<string, unknown> = {}): Outcome => ({ reply: { ok: false, error, ...more } });

/** The pool a request is about: the one it names, or the only one; else why not. */
function poolOf(arbiter: Arbiter, req: Request): WorkerGroup | string {
  const names = [...arbiter.groups.values()].filter((g) => !g.leaving).map((g) => g.name);
  if (req.pool === undefined) return names.length === 1 ? arbiter.groups.get(names[0]!)! : `this arbiter runs pools ${names.join(', ')}: name one ("pool")`;
  const g = typeof req.pool === 'string' ? arbiter.groups.get(req.pool) : undefined;
  return g && !g.leaving ? g : `no pool ${JSON.stringify(req.pool)}: this arbiter runs ${names.join(', ')}`;
}

const serving = (g: WorkerGroup) => [...g.workers.values()].filter((w) => w.state === 'serving').map((w) => w.pid).sort((a, b) => a - b);

/** The settings a reload changed, as `setting: before -> after`. */
export function changedSettings(prev: Settings, next: Settings): { setting: string; from: unknown; to: unknown }[] {
  const a = serializable(prev);
  const b = serializable(next);
  const out: { setting: string; from: unknown; to: unknown }[] = [];
  for (const key of Object.keys(b)) if (JSON.stringify(a[key]) !== JSON.stringify(b[key])) out.push({ setting: key, from: a[key] ?? null, to: b[key] });
  return out;
}

/** Resolves with the first of `events` the arbiter emits, or `null` after `ms`. */
function firstOf<K extends 'reloaded' | 'reloadFailed' | 'upgraded' | 'upgradeEnded'>(
  arbiter: Arbiter, events: K[], ms: number,
): Promise<{ event: K; args: unknown[] } | null> {
  return new Promise((resolve) => {
    const offs: (() => void)[] = [];
    const done = (v: { event: K; args: unknown[] } | null) => {
      for (const off of offs) off();
      clearTimeout(timer);
      resolve(v);
    };
    for (const event of events) {
      const on = (...args: unknown[]) => done({ event, args });
      arbiter.events.on(event, on as never);
      offs.push(() => arbiter.events.off(event, on as never));
    }
    const timer = setTimeout(() => done(null), ms);
  });
}

/** REQUESTS[cmd] answers one request. */
export const REQUESTS: Record<string, (req: Request, c: Context) => Outcome | Promise<Outcome>> = {
  status: (_req, { arbiter, name }) => ({ reply: { ok: true, status: statusOf(arbiter, name) } }),

  async reload(req, { arbiter, log }) {
    if (arbiter.stopping) return fail('the arbiter is stopping; not reloading');
    // Without a pool, every pool reloads (as HUP).
    let only: string | undefined;
    if (req.pool !== undefined) {
      const g = poolOf(arbiter, req);
      if (typeof g === 'string') return fail(g);
      only = g.name;
    }
    const settings = () => (only ? arbiter.groups.get(only)!.settings : arbiter.settings);
    const pids = () => [...arbiter.groups.values()].filter((g) => !only || g.name === only).flatMap(serving).sort((a, b) => a - b);
    log.info({ event: 'control', cmd: 'reload', pool: only }, `control: reload${only ? ` pool ${only}` : ''}`);
    const prev = settings();
    const before = pids();
    const outcome = firstOf(arbiter, ['reloaded', 'reloadFailed'], OUTCOME_WAIT_MS);
    void arbiter.reload(only).catch((err) => log.error({ err: String(err) }, 'control: reload failed'));
    const o = await outcome;
    if (!o) return fail(`the reload is still rolling out after ${OUTCOME_WAIT_MS / 1000} s (see the log)`);
    if (o.event === 'reloadFailed') return fail(String(o.args[0]), { detail: o.args[1] ?? null, workers: { serving: pids() } });
    return { reply: { ok: true, ...(only ? { pool: only } : {}), workers: { before, after: pids() }, changed: changedSettings(prev, settings()) } };
  },

  scale(req, { arbiter, log }) {
    const g = poolOf(arbiter, req);
    if (typeof g === 'string') return fail(g);
    const { n, by } = req as { n?: unknown; by?: unknown };
    const from = g.target;
    let to: number;
    if (by !== undefined && n === undefined) {
      if (typeof by !== 'number' || !Number.isInteger(by) || by === 0) return fail(`bad request: scale "by" must be a whole number other than 0; got ${JSON.stringify(by)}`);
      to = from + by;
    } else if (typeof n === 'number') to = n;
    else return fail(`bad request: scale needs "n", an integer from 1 to ${MAX_SCALE}, or "by"; got ${JSON.stringify(n) ?? 'nothing'}`);
    if (!Number.isInteger(to) || to < 1 || to > MAX_SCALE)
      return fail(`bad request: scale to ${to} workers: the count must be a whole number from 1 to ${MAX_SCALE}${by !== undefined ? ` (now ${from})` : ''}`);
    log.info({ event: 'control', cmd: 'scale', pool: g.name, n: to }, `control: scale pool ${g.name} to ${to}`);
    if (!arbiter.scale(g.name, to)) return fail('the arbiter is stopping; not scaling');
    return { reply: { ok: true, pool: g.name, from, to } };
  },

  stop(req, { arbiter, log }) {
    const graceful = req.graceful !== false;
    log.info({ event: 'control', cmd: 'stop', graceful }, `control: stop${graceful ? '' : ' now'}`);
    return { reply: { ok: true, pid: process.pid, graceful }, after: () => arbiter.stop(graceful) };
  },

  async upgrade(_req, { arbiter, log }) {
    log.info({ event: 'control', cmd: 'upgrade' }, 'control: upgrade');
    const outcome = firstOf(arbiter, ['upgraded', 'upgradeEnded'], OUTCOME_WAIT_MS);
    const started = await arbiter.reexec();
    if ('refused' in started) return fail(started.refused);
    const o = await outcome;
    if (!o) return fail(`the new master (pid ${started.pid}) is not serving after ${OUTCOME_WAIT_MS / 1000} s; this master keeps serving`);
    if (o.event === 'upgradeEnded') return fail(`the new master failed: ${String(o.args[0])}; master ${process.pid} keeps serving`, { detail: o.args[1] ?? null });
    // The new master serves and owns the socket now: this one leaves, as after TERM.
    return { reply: { ok: true, from: process.pid, to: o.args[0] }, after: () => arbiter.stop(true) };
  },
};

/** One request line → one reply. */
export async function handleRequest(arbiter: Arbiter, line: string, log: Logger, name = 'arbiter'): Promise<Outcome> {
  let req: unknown;
  try {
    req = JSON.parse(line);
  } catch {
    return fail('bad request: not JSON; send one JSON object per line, e.g. {"cmd":"status"}');
  }
  if (!req || typeof req !== 'object' || Array.isArray(req)) return fail('bad request: expected a JSON object with "cmd"');
  const { cmd } = req as { cmd?: unknown };
  const handler = typeof cmd === 'string' && Object.hasOwn(REQUESTS, cmd) ? REQUESTS[cmd]! : null;
  if (!handler) return fail(`unknown command ${JSON.stringify(cmd) ?? '(none)'}: expected ${Object.keys(REQUESTS).join(', ')}`);
  try {
    return await handler(req as Request, { arbiter, log, name });
  } catch (err) {
    log.error({ event: 'control_error', err: String(err) }, `control: ${errorMessage(err)}`);
    return fail(`internal error: ${errorMessage(err)}`);
  }
}

export interface ControlServer {
  close(): void;
  path: string;
  /** A USR2 master, once it serves: take the path over from the old master. */
  takeOver(): Promise<void>;
  /** The path leads somewhere else (a new master that has gone): point it back here. */
  reclaim(): Promise<void>;
}

export { PathTaken };

/**
 * Serve the control socket at `file` (relative to the current directory, i.e. `chdir`).
 * `claim`: `exclusive` takes the path only if it is free or stale (a live one is refused
 * with PathTaken); `later` leaves it to takeOver() (a USR2 master takes its parent's path
 * only once it serves, so that a new master that fails leaves the old one reachable).
 */
export async function startControlServer(arbiter: Arbiter, file: string, log: Logger, opts: { name?: string; claim?: 'exclusive' | 'later' } = {}): Promise<ControlServer> {
  const name = opts.name ?? 'arbiter';
  const clients = new Set<net.Socket>();
  const named = (err: unknown) => {
    const message = `control socket ${errorMessage(err)}`;
    return err instanceof PathTaken ? new PathTaken(message) : new Error(message);
  };
  let sock: ClaimedSocket;
  try {
    sock = await listenBeside(file, (socket) => serveClient(socket, arbiter, log, name, clients));
  } catch (err) {
    throw named(err);
  }
  sock.server.on('error', (err) => log.error({ event: 'control_error', err: String(err) }, `control socket: ${err.message}`));
  sock.server.unref();
  try {
    if ((opts.claim ?? 'exclusive') === 'exclusive') await sock.claim('exclusive');
  } catch (err) {
    sock.close();
    throw named(err);
  }
  const listening = () => log.info({ event: 'control_listening', path: sock.path, name }, `control socket at ${sock.path}`);
  if (opts.claim !== 'later') listening();
  return {
    path: sock.path,
    async takeOver() {
      await sock.claim('replace');
      listening();
    },
    async reclaim() {
      if (sock.owns()) return;
      await sock.claim('replace');
      log.info({ event: 'control_reclaimed', path: sock.path }, `control socket at ${sock.path} again`);
    },
    close() {
      sock.close();
      for (const c of clients) c.destroy();
    },
  };
}

function serveClient(socket: net.Socket, arbiter: Arbiter, log: Logger, name: string, clients: Set<net.Socket>): void {
  clients.add(socket);
  socket.setEncoding('utf8');
  let buf = '';
  // Requests on one connection are answered in order; a slow one (reload) holds the rest.
  let queue: Promise<void> = Promise.resolve();
  let pending = 0;
  socket.on('error', () => {});
  socket.on('close', () => clients.delete(socket));
  socket.setTimeout(IDLE_MS, () => {
    if (pending === 0) socket.destroy();
  });
  socket.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (!line) continue;
      pending++;
      queue = queue.then(async () => {
        const out = await handleRequest(arbiter, line, log, name);
        pending--;
        const after = () => {
          try {
            out.after?.();
          } catch (err) {
            log.error({ event: 'control_error', err: String(err) }, `control: ${errorMessage(err)}`);
          }
        };
        // What was asked is done even when the client has gone (an upgrade must still retire this master).
        if (socket.writable) socket.write(JSON.stringify(out.reply) + '\n', after);
        else after();
      });
    }
    if (buf.length > MAX_LINE) {
      socket.end(JSON.stringify({ ok: false, error: `bad request: line longer than ${MAX_LINE} bytes` }) + '\n');
      buf = '';
    }
  });
}
