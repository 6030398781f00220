/**
 * `arbiter status | scale [POOL] N | reload [POOL] | stop | upgrade` through the control socket
 * (src/control.ts), the arbiter picked as target.ts says (POOL: one of the config's `pools`;
 * optional with one pool). Each waits for what it asked for and says how it went: `reload`
 * until the new workers serve (or the reason they cannot), `scale` until the new count
 * serves, `stop` until the master is gone, `upgrade` until the new master serves and the old
 * one has left.
 *
 * Exit codes: 0 done, 1 the master cannot be reached, refused, or the change failed, 2 usage.
 */
import type { Status, WorkerStatus } from '../control.js';
import { OUTCOME_WAIT_MS } from '../control.js';
import { SettingError, errorMessage, indent } from '../core/errors.js';
import { SETTINGS, cliFlags, type SettingSpec } from '../core/settings.js';
import { fatalLine } from '../core/logging.js';
import { alive } from '../pidfile.js';
import { runtimeDir } from '../rundir.js';
import { bySignal } from './signals.js';
import { Refused, oneSocket, request, running, select, type RunningArbiter, type Selection } from './target.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** How long `stop` and `upgrade` wait for a master to exit, and `scale` for workers to serve. */
const EXIT_WAIT_MS = 130_000;
const SCALE_WAIT_MS = 60_000;

/** Flags that take a value, so that a value is not taken for a pool name or a count. */
const VALUED = new Set((SETTINGS as readonly SettingSpec[]).filter((s) => s.cli !== false && s.kind !== 'boolean').flatMap(cliFlags));

interface Parsed {
  cmd: string;
  json: boolean;
  /** reload and scale: the pool, when one is named. */
  pool?: string;
  /** scale: a count, or a change (+N / -N). */
  scale?: { n: number } | { by: number };
  rest: string[];
}

function parse(argv: string[]): Parsed {
  const [cmd, ...args] = argv;
  const rest: string[] = [];
  const words: string[] = [];
  let json = false;
  let scale: Parsed['scale'];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--json') {
      if (cmd !== 'status') throw new SettingError(`--json goes with "arbiter status"`);
      json = true;
    } else if (VALUED.has(a)) {
      rest.push(a);
      if (i + 1 < args.length) rest.push(args[++i]!);
    } else if (cmd === 'scale' && scale === undefined && /^[+-]?\d+$/.test(a)) {
      // Before the flag parser sees it: "-1" is a count, not an option.
      const n = Number(a);
      if (/^[+-]/.test(a)) {
        if (n === 0) throw new SettingError(`scale ${a} changes nothing: give +N, -N (N >= 1) or a count`);
        scale = { by: n };
      } else {
        if (n < 1) throw new SettingError(`scale needs a whole number of workers >= 1, or +N / -N; not "${a}"`);
        scale = { n };
      }
    } else if ((cmd === 'scale' || cmd === 'reload') && scale === undefined && /^[^-]/.test(a)) words.push(a);
    else rest.push(a);
  }
  if (cmd === 'scale' && scale === undefined)
    throw new SettingError(words.length ? `scale needs a whole number of workers >= 1, or +N / -N; not "${words.at(-1)}"` : 'scale needs a number of workers: arbiter scale [POOL] N | +N | -N');
  if (words.length > 1) throw new SettingError(`unexpected argument "${words[1]}": arbiter ${cmd} [POOL]${cmd === 'scale' ? ' N' : ''}`);
  return { cmd: cmd!, json, scale, rest, ...(words.length ? { pool: words[0] } : {}) };
}

export async function controlCommand(argv: string[]): Promise<number> {
  let p: Parsed;
  let sel: Selection;
  try {
    p = parse(argv);
    sel = await select(p.rest);
  } catch (err) {
    fatalLine(errorMessage(err));
    return err instanceof SettingError ? 2 : 1;
  }
  try {
    if (sel.kind === 'pid' && (p.cmd === 'reload' || p.cmd === 'stop' || p.cmd === 'upgrade')) return await bySignal(p.cmd, sel);
    if (p.cmd === 'status' && sel.kind === 'all') return await listAll(p.json);
    const socket = await oneSocket(sel, p.cmd);
    switch (p.cmd) {
      case 'status': {
        const st = (await request(socket, { cmd: 'status' })).status as Status;
        process.stdout.write(p.json ? JSON.stringify(st, null, 2) + '\n' : formatStatus(st));
        return 0;
      }
      case 'scale':
        return await scale(socket, p.scale!, p.pool);
      case 'reload':
        return await reload(socket, p.pool);
      case 'stop': {
        const r = await request(socket, { cmd: 'stop' });
        const pid = Number(r.pid);
        process.stdout.write(`stopping master ${pid}\n`);
        await waitGone(pid, 'stop');
        process.stdout.write(`master ${pid} stopped\n`);
        return 0;
      }
      case 'upgrade':
        return await upgrade(socket);
    }
  } catch (err) {
    if (err instanceof SettingError) {
      fatalLine(err.message);
      return 2;
    }
    fatalLine(errorMessage(err));
    const detail = err instanceof Refused ? err.reply.detail : undefined;
    if (typeof detail === 'string' && detail) process.stderr.write(indent(detail) + '\n');
    return 1;
  }
  fatalLine(`unknown command "${p.cmd}"`);
  return 2;
}

async function waitGone(pid: number, what: string): Promise<void> {
  const deadline = Date.now() + EXIT_WAIT_MS;
  while (Date.now() < deadline && alive(pid)) await sleep(100);
  if (alive(pid)) throw new Error(`master ${pid} is still running ${EXIT_WAIT_MS / 1000} s after ${what}`);
}

const pids = (list: unknown) => (Array.isArray(list) && list.length ? list.join(' ') : '-');

async function reload(socket: string, pool: string | undefined): Promise<number> {
  process.stdout.write(`reloading${pool ? ` pool ${pool}` : ''}: waiting for the new workers to serve\n`);
  let r: Record<string, unknown>;
  try {
    r = await request(socket, { cmd: 'reload', ...(pool ? { pool } : {}) }, OUTCOME_WAIT_MS + 15_000);
  } catch (err) {
    if (!(err instanceof Refused)) throw err;
    const serving = (err.reply.workers as { serving?: number[] } | undefined)?.serving;
    throw new Refused(`reload failed: ${err.message}` + (serving?.length ? `; workers ${serving.join(' ')} keep serving the running code` : ''), err.reply);
  }
  const w = r.workers as { before: number[]; after: number[] };
  process.stdout.write(`reloaded: workers ${pids(w.before)} -> ${pids(w.after)}\n`);
  const changed = r.changed as { setting: string; from: unknown; to: unknown }[];
  process.stdout.write(changed.length ? `changed: ${changed.map((c) => `${c.setting} ${JSON.stringify(c.from)} -> ${JSON.stringify(c.to)}`).join(', ')}\n` : 'no setting changed\n');
  return 0;
}

async function scale(socket: string, how: { n: number } | { by: number }, pool: string | undefined): Promise<number> {
  const r = await request(socket, { cmd: 'scale', ...how, ...(pool ? { pool } : {}) });
  const to = Number(r.to);
  const named = String(r.pool);
  process.stdout.write(`${pool ? `pool ${named}: ` : ''}workers: ${r.from} -> ${to}\n`);
  // Done when exactly the target serves in that pool and nothing of it is still booting.
  const deadline = Date.now() + SCALE_WAIT_MS;
  for (;;) {
    const st = (await request(socket, { cmd: 'status' })).status as Status;
    const mine = st.workers.filter((w) => w.pool === named);
    const serving = mine.filter((w) => w.state === 'serving');
    if (serving.length === to && !mine.some((w) => w.state === 'booting')) {
      process.stdout.write(`serving: ${serving.map((w) => w.pid).join(' ')}\n`);
      return 0;
    }
    if (Date.now() > deadline) throw new Error(`${serving.length} of ${to} workers serving after ${SCALE_WAIT_MS / 1000} s (see the log)`);
    await sleep(100);
  }
}

async function upgrade(socket: string): Promise<number> {
  process.stdout.write('upgrading: waiting for the new master to serve\n');
  const r = await request(socket, { cmd: 'upgrade' }, OUTCOME_WAIT_MS + 15_000);
  const from = Number(r.from);
  process.stdout.write(`new master ${r.to} serves; stopping the old master ${from}\n`);
  await waitGone(from, 'the upgrade');
  process.stdout.write(`upgraded: master ${from} -> ${r.to}\n`);
  return 0;
}

// ---------------------------------------------------------------------------------------
// Views.

async function listAll(json: boolean): Promise<number> {
  const all = await running();
  if (json) {
    process.stdout.write(JSON.stringify(all.map((a) => a.status), null, 2) + '\n');
    return 0;
  }
  if (all.length === 0) {
    process.stdout.write(`no arbiter running (none answers in ${runtimeDir()})\n`);
    return 0;
  }
  process.stdout.write(formatList(all));
  return 0;
}

export function formatList(all: RunningArbiter[]): string {
  const rows = [['NAME', 'PID', 'UPTIME', 'WORKERS', 'CLASS', 'APP', 'LISTENING']];
  for (const { status: st } of all) {
    const serving = st.workers.filter((w) => w.state === 'serving').length;
    rows.push([st.name, String(st.pid), duration(st.uptime), `${serving}/${st.target}`, st.workerClass, st.app ?? '-', st.listeners.join(', ') || '-']);
  }
  return table(rows) + '\n';
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

export function duration(seconds: number): string {
  const s = Math.floor(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d${String(Math.floor((s % 86400) / 3600)).padStart(2, '0')}h`;
}

export function bytes(n: number | null): string {
  if (n === null) return '-';
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)}K`;
  if (n < 1024 * 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)}M`;
  return `${(n / 1024 / 1024 / 1024).toFixed(2)}G`;
}

/** The human view of `arbiter status -n NAME`. */
export function formatStatus(st: Status): string {
  const pools = st.pools ?? [];
  const several = pools.length > 1;
  const isTask = (pool: string) => (pools.find((p) => p.name === pool)?.workerClass ?? st.workerClass) === 'task';
  const restarts = (r: Record<string, number>) =>
    Object.entries(r)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
  const lines = several
    ? [
        `${st.name}: master ${st.pid}, up ${duration(st.uptime)}, arbiter ${st.version}, ${pools.length} pools`,
        ...pools.map(
          (p) =>
            `pool ${p.name}: ${p.app ?? '-'} (${p.workerClass}), ${p.serving} serving of ${p.target}` +
            (p.listeners.length ? `, listening ${p.listeners.join(', ')}` : '') +
            `; restarts: ${restarts(p.restarts)}` +
            (p.degraded ? '; DEGRADED' : '') +
            (p.leaving ? '; leaving' : ''),
        ),
      ]
    : [
        `${st.name}: master ${st.pid}, up ${duration(st.uptime)}, arbiter ${st.version}, ${st.app ?? '-'} (${st.workerClass})`,
        `listening: ${st.listeners.length ? st.listeners.join(', ') : '-'}`,
        `workers: ${st.workers.filter((w) => w.state === 'serving').length} serving of ${st.target}; restarts: ${restarts(st.restarts)}` +
          (pools[0]?.degraded ? '; DEGRADED' : ''),
      ];
  for (const b of st.brokers ?? []) if (!b.up) lines.push(`task broker ${b.url}: UNREACHABLE since ${new Date(b.since).toISOString()} (${b.error ?? 'unknown'})`);
  for (const sc of st.schedules ?? []) lines.push(`schedule ${sc.name}: ${sc.cron}${sc.tz ? ` (${sc.tz})` : ''} -> ${sc.task} on ${sc.queue}; next ${sc.next ?? '-'}`);
  lines.push('');
  const allTask = st.workers.length > 0 && st.workers.every((w) => isTask(w.pool));
  const header = [...(several ? ['POOL'] : []), 'PID', 'AGE', 'STATE', 'UPTIME', allTask ? 'TASKS' : 'REQUESTS', 'ACTIVE', 'RSS', 'HEARTBEAT'];
  const rows = st.workers.map((w: WorkerStatus) => [
    ...(several ? [w.pool] : []),
    String(w.pid),
    String(w.age),
    w.state,
    duration(w.uptime),
    String(w.tasks ? `${w.requests} (${w.tasks.failed} failed)` : w.requests),
    String(w.active),
    bytes(w.rss),
    `${w.heartbeatAgo.toFixed(1)}s ago`,
  ]);
  lines.push(table([header, ...rows]));
  return lines.join('\n') + '\n';
}
