/**
 * `-D`: the daemon and its launcher. The launcher starts arbiter again, detached (a new
 * session, no terminal, stdio on /dev/null), without --daemon, from the directory it was
 * started in, and waits until the daemon serves, so that a daemon that cannot start (a live
 * pidfile, a bind error, an app that does not boot) makes the launching command fail with its
 * reason and exit code instead of vanishing.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { errorMessage } from './core/errors.js';
import { fatalLine } from './core/logging.js';
import { ENV, EXIT } from './core/protocol.js';
import type { Settings } from './core/settings.js';
import { ensureRuntimeDir } from './rundir.js';

const READY_WITHIN_MS = 60_000;

export function daemonize(launchCwd: string): Promise<number> {
  const args = process.argv.slice(1).filter((a) => a !== '-D' && a !== '--daemon');
  const child = spawn(process.execPath, [...process.execArgv, ...args], {
    cwd: launchCwd,
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
    env: { ...process.env, [ENV.DAEMON]: '0' },
  });
  return new Promise<number>((resolve) => {
    const timer = setTimeout(() => {
      fatalLine(`the daemon (pid ${child.pid}) is not serving after ${READY_WITHIN_MS / 1000} s; it keeps trying (see errorLog)`);
      resolve(EXIT.RUNTIME);
    }, READY_WITHIN_MS);
    child.on('message', (m: { t?: string; text?: string }) => {
      if (m.t === 'stderr') process.stderr.write(String(m.text));
      else if (m.t === 'ready') {
        clearTimeout(timer);
        resolve(EXIT.OK);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code || EXIT.RUNTIME);
    });
  }).then((code) => {
    if (child.connected) child.disconnect();
    child.unref();
    return code;
  });
}

/** This process is a daemon whose launcher waits for it (see daemonize). */
export const underLauncher = process.env[ENV.DAEMON] === '0' && typeof process.send === 'function';

/** In the daemon: until it serves, what goes to stderr also goes to the launcher. */
export function echoStderrToLauncher(): void {
  if (!underLauncher) return;
  const write = process.stderr.write.bind(process.stderr) as (chunk: unknown, ...rest: unknown[]) => boolean;
  process.stderr.write = ((chunk: unknown, ...rest: unknown[]) => {
    if (process.connected) process.send!({ t: 'stderr', text: String(chunk) }, undefined, undefined, () => {});
    return write(chunk, ...rest);
  }) as typeof process.stderr.write;
}

/**
 * Where a daemon logs. Its stderr is /dev/null, so `errorLog: '-'` would drop every line:
 * a daemon without an errorLog logs to `NAME.log` in the runtime directory instead, and
 * says so (the launcher prints it).
 */
export function daemonErrorLog(s: Settings, name: string): string {
  if (process.env[ENV.DAEMON] === undefined || s.errorLog !== '-') return s.errorLog;
  let file: string;
  try {
    file = path.join(ensureRuntimeDir(), `${name}.log`);
  } catch (err) {
    fatalLine(`-D without --error-log logs to the runtime directory, which cannot be used: ${errorMessage(err)}; give --error-log FILE`);
    return s.errorLog;
  }
  if (underLauncher) process.stderr.write(`arbiter: the daemon logs to ${file} (no --error-log given)\n`);
  return file;
}

/** In the daemon: it serves; the launcher may exit 0 and let go of us. */
export function tellLauncherReady(): void {
  if (underLauncher && process.connected) process.send!({ t: 'ready' }, undefined, undefined, () => process.disconnect());
}
