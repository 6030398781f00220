/**
 * Where a master's control socket lives and under which name (SPEC §9): `controlSocket` when
 * it is set; otherwise `NAME.sock` in the per-user runtime directory, NAME being `procName`
 * or the name derived from the app. A derived name that another running arbiter already has
 * gets `-2`, `-3` …; a name given with `-n` is that arbiter's or the start fails. A master
 * started by USR2 keeps its parent's name and takes the socket over once it serves.
 */
import type { Logger } from './core/logging.js';
import { errorMessage } from './core/errors.js';
import type { Settings } from './core/settings.js';
import { PathTaken, startControlServer, type ControlServer } from './control.js';
import type { Arbiter } from './master.js';
import { defaultName, ensureRuntimeDir, socketFor } from './rundir.js';
import { removeDeadTemporaries } from './socket-claim.js';

/** Derived names tried before giving up: NAME, NAME-2 … NAME-MAX_SUFFIX. */
const MAX_SUFFIX = 50;

/** The name an arbiter with these settings asks for (before a taken one gets a suffix). */
export function wantedName(s: Settings, upgradeName?: string): { name: string; explicit: boolean } {
  if (s.procName) return { name: s.procName, explicit: true };
  if (upgradeName) return { name: upgradeName, explicit: true };
  return { name: defaultName(s.app), explicit: false };
}

export interface PlacedControl {
  server: ControlServer | null;
  /** The name the arbiter goes by (with a suffix when the derived one was taken). */
  name: string;
}

/**
 * Open the control socket. Throws (the start fails) when `controlSocket` cannot be used or
 * an explicit name is taken; a runtime directory that cannot be used only costs the socket,
 * with a warning, so that a read-only container still serves.
 */
export async function openControl(
  arbiter: Arbiter, s: Settings, log: Logger, opts: { name: string; explicit: boolean; upgrading: boolean },
): Promise<PlacedControl> {
  const claim = opts.upgrading ? 'later' : 'exclusive';
  if (s.controlSocket) return { server: await startControlServer(arbiter, s.controlSocket, log, { name: opts.name, claim }), name: opts.name };
  let dir: string;
  try {
    dir = ensureRuntimeDir();
  } catch (err) {
    log.warn({ event: 'control_unavailable', err: errorMessage(err) }, `no control socket: ${errorMessage(err)} (set controlSocket to put it elsewhere)`);
    return { server: null, name: opts.name };
  }
  removeDeadTemporaries(dir);
  const candidates = opts.explicit || opts.upgrading ? [opts.name] : [opts.name, ...Array.from({ length: MAX_SUFFIX - 1 }, (_, i) => `${opts.name}-${i + 2}`)];
  for (const name of candidates) {
    try {
      const server = await startControlServer(arbiter, socketFor(name), log, { name, claim });
      if (name !== opts.name) log.info({ event: 'name_taken', wanted: opts.name, name }, `the name ${opts.name} is taken by a running arbiter; this one is ${name}`);
      return { server, name };
    } catch (err) {
      if (!(err instanceof PathTaken)) {
        log.warn({ event: 'control_unavailable', err: errorMessage(err) }, `no control socket: ${errorMessage(err)}`);
        return { server: null, name };
      }
      if (opts.explicit) throw new Error(`an arbiter named "${name}" is already running (${socketFor(name)}); give this one another name with -n NAME`);
    }
  }
  log.warn({ event: 'control_unavailable' }, `no control socket: the names ${opts.name} to ${opts.name}-${MAX_SUFFIX} are all taken`);
  return { server: null, name: opts.name };
}
