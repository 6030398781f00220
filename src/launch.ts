/**
 * Starting a worker process: `node [nodeArgs] workers/runtime.js` with stdout and stderr
 * piped to the master (src/worker-output.ts reads them into the log), the IPC channel on 3,
 * the listeners on descriptors WORKER_FD_BASE.., and the boot description in ARBITER_WORKER, as the user and group the settings name. The
 * master never imports the worker side; it starts it by path.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ENV, WORKER_FD_BASE, type WorkerBoot } from './core/protocol.js';
import type { Settings } from './core/settings.js';
import type { Listener } from './sockets.js';
import { inspectorArgs } from './stack-capture.js';
import { handTo, resolveIds } from './users.js';

const RUNTIME = fileURLToPath(new URL('../workers/runtime.js', import.meta.url));

/** How a group starts a worker; tests give a fake one. */
export type Launch = (boot: WorkerBoot, settings: Settings, listeners: readonly Listener[]) => ChildProcess;

export const launchWorker: Launch = (boot, settings, listeners) => {
  const fds = listeners.map((l) => l.fd);
  const ids = resolveIds(settings.user, settings.group);
  // The access log a worker opens must be writable as the user it runs as (the error log is
  // the master's: workers write to their stderr pipe).
  if (settings.accessLog && settings.accessLog !== '-') handTo(ids, path.resolve(settings.accessLog), true);
  // An access log to `-` is written straight to the master's stdout, not through the log.
  const stdout = settings.accessLog === '-' ? [1] : [];
  if (stdout.length) boot = { ...boot, stdoutFd: WORKER_FD_BASE + fds.length };
  const node = [...inspectorArgs(settings.nodeArgs, settings.timeout), ...settings.nodeArgs];
  return spawn(process.execPath, [...node, RUNTIME], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc', ...fds, ...stdout],
    env: { ...process.env, ...settings.env, [ENV.WORKER]: JSON.stringify(boot) },
    ...ids,
  });
};

/** What a worker is told about the listeners it inherits, in descriptor order. */
export function inheritedListeners(listeners: readonly Listener[]): WorkerBoot['listeners'] {
  return listeners.map((l, i) => ({ fd: WORKER_FD_BASE + i, label: l.label, kind: l.kind }));
}
