/**
 * The per-user runtime directory (SPEC §9): where every arbiter of a user keeps its control
 * socket, `NAME.sock`, unless `controlSocket` names one. `$XDG_RUNTIME_DIR/arbiter` when the
 * session has one (systemd's per-user tmpfs), else `/tmp/arbiter-UID`; `ARBITER_RUNTIME_DIR`
 * overrides both (tests, or several environments on one account). The directory is the
 * user's alone (mode 0700, owned by them): a socket in it is reachable by nobody else, and
 * nobody else can plant one there.
 */
import { chmodSync, lstatSync, mkdirSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseAppSpec } from './core/app.js';
import { ENV } from './core/protocol.js';
import { nameProblem } from './core/settings.js';

export const SOCKET_SUFFIX = '.sock';

/** Where the runtime directory is (it may not exist yet). */
export function runtimeDir(env: NodeJS.ProcessEnv = process.env): string {
  const own = env[ENV.RUNTIME_DIR];
  if (own) return path.resolve(own);
  const xdg = env.XDG_RUNTIME_DIR;
  if (xdg && path.isAbsolute(xdg)) return path.join(xdg, 'arbiter');
  return path.join(os.tmpdir(), `arbiter-${uid()}`);
}

function uid(): number {
  return typeof process.getuid === 'function' ? process.getuid() : 0;
}

/**
 * Create the runtime directory (0700) or check the one there: a directory, not a symlink,
 * owned by this user, closed to everyone else. Throws with the reason otherwise.
 */
export function ensureRuntimeDir(env: NodeJS.ProcessEnv = process.env): string {
  const dir = runtimeDir(env);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  if (!st.isDirectory()) throw new Error(`runtime directory ${dir} is not a directory`);
  if (st.uid !== uid()) throw new Error(`runtime directory ${dir} belongs to uid ${st.uid}, not to this user (uid ${uid()})`);
  if ((st.mode & 0o077) !== 0) chmodSync(dir, 0o700);
  return dir;
}

/** The control socket of the arbiter called `name`. */
export function socketFor(name: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.join(runtimeDir(env), name + SOCKET_SUFFIX);
}

/** The names that have a socket in the runtime directory (live or stale: ask to know). */
export function socketNames(env: NodeJS.ProcessEnv = process.env): string[] {
  let names: string[];
  try {
    names = readdirSync(runtimeDir(env));
  } catch {
    return [];
  }
  return names
    .filter((n) => n.endsWith(SOCKET_SUFFIX) && !n.startsWith('.'))
    .map((n) => n.slice(0, -SOCKET_SUFFIX.length))
    .sort();
}

/**
 * The name an arbiter takes when `procName` is not set: the app module's file name without
 * its extension (`hello` for `examples/hello.js:handler`, the directory for `src/index.ts`,
 * `pkg` for `@scope/pkg`), reduced to the characters a name may have.
 */
export function defaultName(app: string | null): string {
  if (!app) return 'arbiter';
  const { module } = parseAppSpec(app);
  let base = path.basename(module).replace(/\.(m|c)?(j|t)s$/, '');
  if (base === 'index' || base === '') base = path.basename(path.dirname(path.resolve(module)));
  const clean = base.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 56);
  return clean && nameProblem(clean) === null ? clean : 'arbiter';
}
