/**
 * Which arbiter a command is about, and talking to it. An arbiter is picked by
 * `--control-socket PATH`, `-n NAME` (its socket in the runtime directory) or `-p PIDFILE`
 * (the live arbiter with that pid), from the command line, ARBITER_* or the config file,
 * the command line winning; with none of them, every arbiter of this user is considered,
 * which `status` lists and the other commands accept only when there is one.
 */
import net from 'node:net';
import path from 'node:path';
import { parseArgs } from '../argv.js';
import { resolve, type Source } from '../config.js';
import type { Status } from '../control.js';
import { SettingError } from '../core/errors.js';
import { readPid } from '../pidfile.js';
import { runtimeDir, socketFor, socketNames } from '../rundir.js';
import { removeDeadTemporaries, removeIfStale } from '../socket-claim.js';

export class Unreachable extends Error {}

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
          ? 'no such socket (is the arbiter running?)'
          : err.code === 'ECONNREFUSED'
            ? 'connection refused (stale socket: the arbiter is gone)'
            : err.code === 'EACCES'
              ? "permission denied (the socket is mode 0600: run as the arbiter's user)"
              : (err.code ?? err.message);
      finish(new Unreachable(`cannot reach the master at ${socketPath}: ${why}`));
    });
    s.once('close', () => finish(new Unreachable(`the master at ${socketPath} closed the connection without answering`)));
  });
}

/** Ask, and turn `{"ok":false}` into an error carrying the reply. */
export async function request(socket: string, req: Record<string, unknown>, timeoutMs?: number): Promise<Record<string, unknown>> {
  const r = await ask(socket, req, timeoutMs);
  if (!r.ok) throw new Refused(String(r.error), r);
  return r;
}

export class Refused extends Error {
  constructor(
    message: string,
    readonly reply: Record<string, unknown>,
  ) {
    super(message);
  }
}

export type Selection =
  /** A control socket to talk to. */
  | { kind: 'socket'; socket: string; how: string }
  /** A master known only by its pid (a pidfile, no control socket found): signals only. */
  | { kind: 'pid'; pid: number; pidfile: string; gracefulTimeout: number }
  /** Nothing named one: every arbiter of this user. */
  | { kind: 'all' };

const RANK: Record<Source, number> = { cli: 3, env: 2, file: 1, default: 0 };

/** Parse a command's selector flags (any server flag is accepted; an APP_MODULE is not). */
export async function select(args: string[]): Promise<Selection> {
  const { layer: cli } = parseArgs(args, 'cli');
  if (cli.app !== undefined) throw new SettingError(`unexpected argument "${String(cli.app)}"`);
  const { settings: s, sources } = await resolve(
    { cli, env: process.env, cwd: process.cwd(), configFile: 'tolerant' },
    ['config', 'controlSocket', 'procName', 'pidfile', 'chdir', 'gracefulTimeout'],
  );
  // The master resolves relative paths against its chdir, as it does every path.
  const base = s.chdir ? path.resolve(process.cwd(), s.chdir) : process.cwd();
  const given = [
    s.controlSocket !== null && { rank: RANK[sources.controlSocket], order: 3, pick: (): Selection => ({ kind: 'socket', socket: path.resolve(base, s.controlSocket!), how: `control socket ${s.controlSocket}` }) },
    s.procName !== null && { rank: RANK[sources.procName], order: 2, pick: (): Selection => ({ kind: 'socket', socket: socketFor(s.procName!), how: `name ${s.procName}` }) },
    s.pidfile !== null && { rank: RANK[sources.pidfile], order: 1, pick: (): Selection => byPid(path.resolve(base, s.pidfile!), s.gracefulTimeout) },
  ].filter((g): g is { rank: number; order: number; pick: () => Selection } => !!g);
  if (given.length === 0) return { kind: 'all' };
  given.sort((a, b) => b.rank - a.rank || b.order - a.order);
  const picked = given[0]!.pick();
  return picked.kind === 'pid' ? await socketOfPid(picked) : picked;
}

function byPid(pidfile: string, gracefulTimeout: number): Selection {
  const pid = readPid(pidfile);
  if (pid === null) throw new Unreachable(`no master: ${pidfile} is missing or empty`);
  return { kind: 'pid', pid, pidfile, gracefulTimeout };
}

/** The control socket of the arbiter with this pid, if it has one in the runtime directory. */
async function socketOfPid(sel: Extract<Selection, { kind: 'pid' }>): Promise<Selection> {
  for (const a of await running()) if (a.status.pid === sel.pid) return { kind: 'socket', socket: a.socket, how: `pidfile ${sel.pidfile}` };
  return sel;
}

export interface RunningArbiter {
  name: string;
  socket: string;
  status: Status;
}

/**
 * Every arbiter with a socket in the runtime directory that answers, by name. Sockets of
 * masters that are gone (nobody answers: connection refused) are removed.
 */
export async function running(): Promise<RunningArbiter[]> {
  removeDeadTemporaries(runtimeDir());
  const found = await Promise.all(
    socketNames().map(async (name) => {
      const socket = socketFor(name);
      try {
        const r = await ask(socket, { cmd: 'status' }, 3000);
        return r.ok ? { name, socket, status: r.status as Status } : null;
      } catch {
        await removeIfStale(socket);
        return null;
      }
    }),
  );
  return found.filter((a): a is RunningArbiter => a !== null);
}

/** One arbiter's socket, for the commands that need exactly one. */
export async function oneSocket(sel: Selection, command: string): Promise<string> {
  if (sel.kind === 'socket') return sel.socket;
  if (sel.kind === 'pid') throw new Unreachable(`master ${sel.pid} (from ${sel.pidfile}) has no control socket in ${runtimeDir()}; "arbiter ${command}" needs one`);
  const all = await running();
  if (all.length === 1) return all[0]!.socket;
  if (all.length === 0) throw new Unreachable(`no arbiter of this user is running (nothing answers in ${runtimeDir()})`);
  throw new SettingError(`${all.length} arbiters are running (${all.map((a) => a.name).join(', ')}): pick one with -n NAME`);
}
