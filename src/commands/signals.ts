/**
 * `arbiter reload | stop | upgrade`: the signal-driven actions as commands, for scripts and
 * deploys. They find the master through its pidfile (`-p FILE`, ARBITER_PIDFILE, or the
 * config file's `pidfile`).
 */
import { parseArgs } from '../argv.js';
import { resolve } from '../config.js';
import { SettingError } from '../core/errors.js';
import { fatalLine } from '../core/logging.js';
import { alive, readPid } from '../pidfile.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitUntil<T>(fn: () => T | null | undefined | false, timeoutMs: number): Promise<T | null> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const v = fn();
    if (v) return v;
    await sleep(100);
  }
  return null;
}

async function settingsFor(argv: string[]): Promise<{ pidfile: string; gracefulTimeout: number }> {
  const { layer: cli } = parseArgs(argv, 'cli');
  const { settings: s } = await resolve({ cli, env: process.env, cwd: process.cwd() }, ['config', 'pidfile', 'gracefulTimeout']);
  if (!s.pidfile) throw new SettingError('this command finds the master through its pidfile: give -p FILE (or set pidfile in the config)');
  return { pidfile: s.pidfile, gracefulTimeout: s.gracefulTimeout };
}

function masterPid(pidfile: string): number {
  const pid = readPid(pidfile);
  if (pid === null) throw new SettingError(`no master: ${pidfile} is missing or empty`);
  if (!alive(pid)) throw new SettingError(`no master: ${pidfile} names pid ${pid}, which is not running`);
  return pid;
}

export async function command(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  try {
    const { pidfile, gracefulTimeout } = await settingsFor(rest);
    const pid = masterPid(pidfile);
    switch (name) {
      case 'reload':
        process.kill(pid, 'SIGHUP');
        process.stdout.write(`sent HUP to master ${pid}\n`);
        return 0;
      case 'stop': {
        process.kill(pid, 'SIGTERM');
        const gone = await waitUntil(() => !alive(pid), (gracefulTimeout + 10) * 1000);
        if (!gone) throw new Error(`master ${pid} still running ${gracefulTimeout + 10} s after TERM`);
        process.stdout.write(`master ${pid} stopped\n`);
        return 0;
      }
      case 'upgrade':
        return await upgrade(pid, pidfile, gracefulTimeout);
    }
    throw new SettingError(`unknown command "${name}"`);
  } catch (err) {
    fatalLine(err instanceof Error ? err.message : String(err));
    return err instanceof SettingError ? 2 : 1;
  }
}

/**
 * The USR2 hand-over in one step: start a new master, wait until it serves (it claims the
 * pidfile then), and retire the old one gracefully. If the new master fails, the old one
 * keeps serving and gets its pidfile back.
 */
async function upgrade(old: number, pidfile: string, gracefulTimeout: number): Promise<number> {
  process.kill(old, 'SIGUSR2');
  process.stdout.write(`sent USR2 to master ${old}; waiting for the new master to serve\n`);
  // First the old master moves its pidfile aside (PIDFILE.oldbin)...
  if (!(await waitUntil(() => readPid(pidfile) !== old, 10_000))) throw new Error(`master ${old} did not answer USR2`);
  // ...then the new one claims it once it serves, or the old one takes it back if it died.
  const next = await waitUntil(() => {
    const pid = readPid(pidfile);
    if (pid === old) return -1; // the new master died and the old one took its pidfile back
    return pid !== null && alive(pid) ? pid : null;
  }, 120_000);
  if (next === null || next === -1) {
    throw new Error(next === -1 ? `the new master failed to start; master ${old} keeps serving` : `no new master serving after 120 s; master ${old} keeps serving`);
  }
  process.kill(old, 'SIGTERM');
  process.stdout.write(`new master ${next} serves; stopping the old master ${old}\n`);
  const gone = await waitUntil(() => !alive(old), (gracefulTimeout + 10) * 1000);
  if (!gone) throw new Error(`old master ${old} still running ${gracefulTimeout + 10} s after TERM`);
  process.stdout.write(`upgraded: master ${old} -> ${next}\n`);
  return 0;
}
