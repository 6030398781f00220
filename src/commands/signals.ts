/**
 * `arbiter reload | stop | upgrade` for a master known only by its pidfile (no control
 * socket to be found): the signal-driven actions, for scripts and deploys. Without the
 * control socket, `reload` cannot learn the outcome; `stop` and `upgrade` watch the pid and
 * the pidfile.
 */
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

export interface ByPid {
  pid: number;
  pidfile: string;
  gracefulTimeout: number;
}

export async function bySignal(name: 'reload' | 'stop' | 'upgrade', m: ByPid): Promise<number> {
  if (!alive(m.pid)) throw new Error(`no master: ${m.pidfile} names pid ${m.pid}, which is not running`);
  switch (name) {
    case 'reload':
      process.kill(m.pid, 'SIGHUP');
      process.stdout.write(`sent HUP to master ${m.pid} (it has no control socket, so the outcome is in its log)\n`);
      return 0;
    case 'stop': {
      process.kill(m.pid, 'SIGTERM');
      const gone = await waitUntil(() => !alive(m.pid), (m.gracefulTimeout + 10) * 1000);
      if (!gone) throw new Error(`master ${m.pid} still running ${m.gracefulTimeout + 10} s after TERM`);
      process.stdout.write(`master ${m.pid} stopped\n`);
      return 0;
    }
    case 'upgrade':
      return upgrade(m.pid, m.pidfile, m.gracefulTimeout);
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
