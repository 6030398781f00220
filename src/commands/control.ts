/**
 * `arbiter status [--json]`, `arbiter scale [POOL] N`, and `arbiter reload [POOL] | stop`
 * through the control socket (POOL: a pool of the config's `pools`; optional with one pool). The socket is found from `--control-socket PATH`,
 * `ARBITER_CONTROL_SOCKET`, or the config file's `controlSocket`. `reload` and `stop` fall
 * back to the pidfile (signals.ts) when no control socket is configured.
 *
 * Exit codes: 0 done, 1 the master cannot be reached or refused, 2 usage.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { parseArgs } from '../argv.js';
import { resolve } from '../config.js';
import type { Status, WorkerStatus } from '../control.js';
import { fatalLine } from '../core/logging.js';
import { SettingError } from '../core/errors.js';
import { SETTINGS, cliFlags, type SettingSpec } from '../core/settings.js';

class Unreachable extends Error {}

const USAGE = 'usage: arbiter status [--json] | scale [POOL] N | reload [POOL] | stop  [--control-socket PATH | -c CONFIG]';

/** Flags that take a value, so that a value is not taken for a pool name or a count. */
const VALUED = new Set((SETTINGS as readonly SettingSpec[]).filter((s) => s.cli !== false && s.kind !== 'boolean').flatMap(cliFlags));

/** Send one request, read one reply line. */
export function ask(socketPath: string, req: Record<string, unknown>, timeoutMs = 10_000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const s = net.connect(socketPath);
    let buf = '';
    let settled = false;
    const finish = (err: Error | null, v?: Record<string, unknown>) => {
      if (settled) return;
      settled = true;
      s.destroy();
      if (err) reject(err);
      else resolve(v!);
    };
    s.setEncoding('utf8');
    s.setTimeout(timeoutMs, () => finish(new Unreachable(`no answer from the master on ${socketPath} within ${timeoutMs / 1000} s`)));
    s.once('connect', () => s.write(JSON.stringify(req) + '\n'));
    s.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl === -1) return;
      try {
        finish(null, JSON.parse(buf.slice(0, nl)));
      } catch {
        finish(new Unreachable(`the master on ${socketPath} sent something that is not JSON`));
      }
    });
    s.once('error', (err: NodeJS.ErrnoException) => {
      const why =
        err.code === 'ENOENT'
          ? 'no such socket (is the arbiter running with this controlSocket?)'
          : err.code === 'ECONNREFUSED'
            ? 'connection refused (stale socket: the arbiter is gone)'
            : err.code === 'EACCES'
              ? 'permission denied (the socket is mode 0600: run as the arbiter\'s user)'
              : (err.code ?? err.message);
      finish(new Unreachable(`cannot reach the master at ${socketPath}: ${why}`));
    });
    s.once('close', () => finish(new Unreachable(`the master at ${socketPath} closed the connection without answering`)));
  });
}

interface Parsed {
  cmd: string;
  json: boolean;
  n?: number;
  pool?: string;
  rest: string[];
}

function parse(argv: string[]): Parsed {
  const [cmd, ...args] = argv;
  const rest: string[] = [];
  const words: string[] = [];
  let json = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--json') {
      if (cmd !== 'status') throw new SettingError(`--json goes with "arbiter status"`);
      json = true;
    } else if (VALUED.has(a)) {
      rest.push(a);
      if (i + 1 < args.length) rest.push(args[++i]!);
    } else if ((cmd === 'scale' || cmd === 'reload') && /^[^-]/.test(a)) words.push(a);
    else rest.push(a);
  }
  const out: Parsed = { cmd: cmd!, json, rest };
  if (cmd === 'scale') {
    const count = words.pop();
    if (count === undefined) throw new SettingError('scale needs a number of workers: arbiter scale [POOL] N');
    if (!/^\d+$/.test(count) || Number(count) < 1) throw new SettingError(`scale needs a whole number of workers >= 1, not "${count}"`);
    out.n = Number(count);
  }
  if (words.length > 1) throw new SettingError(`unexpected argument "${words[1]}"; ${USAGE}`);
  if (words.length === 1) out.pool = words[0];
  return out;
}

/** Where the control socket is, or null when none is configured. */
export async function findSocket(rest: string[]): Promise<{ socket: string | null; rest: string[] }> {
  const { layer: cli } = parseArgs(rest, 'cli');
  if (cli.app !== undefined) throw new SettingError(`unexpected argument "${String(cli.app)}"`);
  const { settings: s } = await resolve({ cli, env: process.env, cwd: process.cwd() }, ['config', 'controlSocket', 'chdir']);
  if (!s.controlSocket) return { socket: null, rest };
  // The master resolves a relative path against its chdir, as it does every path.
  const base = s.chdir ? path.resolve(process.cwd(), s.chdir) : process.cwd();
  return { socket: path.resolve(base, s.controlSocket), rest };
}

export async function controlCommand(argv: string[]): Promise<number> {
  let p: Parsed;
  let socket: string | null;
  try {
    p = parse(argv);
    if (!['status', 'scale', 'reload', 'stop'].includes(p.cmd)) throw new SettingError(`unknown command "${p.cmd}"; ${USAGE}`);
    ({ socket } = await findSocket(p.rest));
  } catch (err) {
    fatalLine(err instanceof Error ? err.message : String(err));
    return 2;
  }
  if (!socket) {
    if ((p.cmd === 'reload' && !p.pool) || p.cmd === 'stop') {
      const { command } = await import('./signals.js');
      return command([p.cmd, ...p.rest]);
    }
    fatalLine(`"arbiter ${p.cmd}" talks to the master's control socket: give --control-socket PATH, set ARBITER_CONTROL_SOCKET, or set controlSocket in the config`);
    return 2;
  }
  try {
    switch (p.cmd) {
      case 'status': {
        const r = await ask(socket, { cmd: 'status' });
        if (!r.ok) throw new Error(String(r.error));
        const st = r.status as Status;
        process.stdout.write(p.json ? JSON.stringify(st, null, 2) + '\n' : formatStatus(st));
        return 0;
      }
      case 'scale': {
        const r = await ask(socket, { cmd: 'scale', n: p.n, ...(p.pool ? { pool: p.pool } : {}) });
        if (!r.ok) throw new Error(String(r.error));
        process.stdout.write(`${p.pool ? `pool ${p.pool}: ` : ''}workers: ${r.from} -> ${r.to}\n`);
        return 0;
      }
      case 'reload': {
        const r = await ask(socket, { cmd: 'reload', ...(p.pool ? { pool: p.pool } : {}) });
        if (!r.ok) throw new Error(String(r.error));
        process.stdout.write('reload started\n');
        return 0;
      }
      case 'stop': {
        const r = await ask(socket, { cmd: 'stop' });
        if (!r.ok) throw new Error(String(r.error));
        const pid = Number(r.pid);
        process.stdout.write(`stopping master ${pid}\n`);
        const deadline = Date.now() + 120_000;
        while (Date.now() < deadline && alive(pid)) await new Promise((res) => setTimeout(res, 100));
        if (alive(pid)) throw new Error(`master ${pid} is still running 120 s after stop`);
        process.stdout.write(`master ${pid} stopped\n`);
        return 0;
      }
    }
  } catch (err) {
    fatalLine(err instanceof Error ? err.message : String(err));
    return 1;
  }
  return 2;
}

/** Running (a zombie waiting for its parent to reap it counts as gone). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
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

/** The human view of `arbiter status`. */
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
        `master ${st.pid}, up ${duration(st.uptime)}, arbiter ${st.version}, ${pools.length} pools`,
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
        `master ${st.pid}, up ${duration(st.uptime)}, arbiter ${st.version}, ${st.app ?? '-'} (${st.workerClass})`,
        `listening: ${st.listeners.length ? st.listeners.join(', ') : '-'}`,
        `workers: ${st.workers.filter((w) => w.state === 'serving').length} serving of ${st.target}; restarts: ${restarts(st.restarts)}` +
          (pools[0]?.degraded ? '; DEGRADED' : ''),
      ];
  for (const sc of st.schedules ?? []) lines.push(`schedule ${sc.name}: ${sc.cron}${sc.tz ? ` (${sc.tz})` : ''} -> ${sc.task} on ${sc.queue}; next ${sc.next ?? '-'}`);
  lines.push('');
  const allTask = st.workers.every((w) => isTask(w.pool));
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
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  lines.push(fmt(header), ...rows.map(fmt));
  return lines.join('\n') + '\n';
}
