/**
 * systemd `Type=notify` support: READY=1 once the workers serve, RELOADING=1 on HUP,
 * STOPPING=1 on a stop, MAINPID= when a USR2 master takes over.
 *
 * `$NOTIFY_SOCKET` is a unix *datagram* socket (a path, or `@name` for an abstract one) and
 * Node cannot send on AF_UNIX datagram sockets, so the message goes through the
 * `systemd-notify` binary (package `systemd`), which handles both kinds of address. Without
 * `$NOTIFY_SOCKET` (not under systemd) or without the binary, every call is a silent no-op.
 *
 * Who systemd thinks sent it: systemd-notify sends on behalf of its parent, the master (or
 * of `--pid=PID`). When it has the privilege to (root, CAP_SYS_ADMIN), the message carries
 * the master's pid as its credentials, and `NotifyAccess=main` is enough. Otherwise it goes
 * out with systemd-notify's own pid and systemd accepts it only with `NotifyAccess=all`.
 * A USR2 hand-over also needs `NotifyAccess=all`: the new master is not yet the main pid
 * when it sends `MAINPID=`. So units should say `NotifyAccess=all` (deploy/arbiter.service).
 *
 * systemd-notify waits (up to 5 s) until systemd has processed the message, so the helper's
 * own pid is still alive when systemd looks it up; we never wait for it ourselves.
 */
import { spawn, spawnSync } from 'node:child_process';

let binary: string | null | undefined;

/** Where systemd-notify is, or null. Looked up once. */
function findBinary(): string | null {
  if (binary !== undefined) return binary;
  binary = null;
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':').concat(['/usr/bin', '/bin'])) {
    if (!dir) continue;
    const candidate = `${dir.replace(/\/$/, '')}/systemd-notify`;
    const r = spawnSync(candidate, ['--version'], { stdio: 'ignore', timeout: 2000 });
    if (r.status === 0) {
      binary = candidate;
      break;
    }
  }
  return binary;
}

/** Under a service manager that wants notifications? */
export function enabled(): boolean {
  const sock = process.env.NOTIFY_SOCKET;
  return !!sock && (sock.startsWith('/') || sock.startsWith('@')) && findBinary() !== null;
}

/**
 * Send `state` (newline-separated `KEY=VALUE` lines, as sd_notify(3)). Resolves true when
 * systemd-notify reported success, false otherwise (not under systemd, no binary, refused).
 * Never throws and never blocks the event loop.
 */
export function notify(state: string, opts: { pid?: number } = {}): Promise<boolean> {
  if (!enabled()) return Promise.resolve(false);
  const assignments = state
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => /^[A-Z_][A-Z0-9_]*=/.test(l));
  if (!assignments.length) return Promise.resolve(false);
  const args = [...(opts.pid ? [`--pid=${opts.pid}`] : []), ...assignments];
  return new Promise((resolve) => {
    try {
      const child = spawn(findBinary()!, args, { stdio: 'ignore', env: process.env });
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      timer.unref();
      child.once('error', () => {
        clearTimeout(timer);
        resolve(false);
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        resolve(code === 0);
      });
    } catch {
      resolve(false);
    }
  });
}

/** CLOCK_MONOTONIC in microseconds, which is what libuv's hrtime reads on Linux. */
function monotonicUsec(): string {
  return String(process.hrtime.bigint() / 1000n);
}

/** The workers serve (after start, and again after a reload finished). */
export function ready(status?: string): Promise<boolean> {
  return notify(['READY=1', status ? `STATUS=${oneLine(status)}` : ''].join('\n'));
}

/** A reload began (HUP). `Type=notify-reload` units need the MONOTONIC_USEC that goes with it. */
export function reloading(status = 'reloading'): Promise<boolean> {
  return notify(['RELOADING=1', `MONOTONIC_USEC=${monotonicUsec()}`, `STATUS=${oneLine(status)}`].join('\n'));
}

/** A stop began (TERM, INT, QUIT). Not for a master that handed over to a USR2 master. */
export function stopping(status = 'stopping'): Promise<boolean> {
  return notify(['STOPPING=1', `STATUS=${oneLine(status)}`].join('\n'));
}

/**
 * A USR2 master tells systemd it is now the main process; send it from the new master once
 * it serves, together with READY=1.
 */
export function mainpid(pid: number = process.pid, status?: string): Promise<boolean> {
  return notify([`MAINPID=${pid}`, 'READY=1', status ? `STATUS=${oneLine(status)}` : ''].join('\n'), { pid });
}

/** Free-form text for `systemctl status`. */
export function status(text: string): Promise<boolean> {
  return notify(`STATUS=${oneLine(text)}`);
}

function oneLine(s: string): string {
  return s.replace(/[\r\n]+/g, ' ').slice(0, 200);
}
