/**
 * Loading the app once before anything is bound, to fail early with a clear line.
 *
 * The load runs in a process of its own, `node [nodeArgs] appcheck-process.js`, as a worker
 * would load it: app modules do things when imported (start timers, open pools, call
 * process.exit), and none of that may touch the master. The process is ended as soon as the
 * verdict is in. (A worker thread did this before; what the thread's isolate left in the
 * master's memory after it ended was some 2.5 MB, for the master's whole life.) What the app
 * prints while it loads is kept back: the workers print it again, into the log, where it
 * belongs; only when the check fails is it shown, since it may say why.
 *
 * Node's own start-up is most of the check's time, and it need not wait for the master: the
 * server start (src/cli.ts) starts a checker ahead, before the master loads its own modules,
 * and the check hands it the app when the settings are known. A checker started ahead runs
 * without node flags; a pool with `nodeArgs` gets a checker of its own.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { AppLoadError, SettingError } from './core/errors.js';
import type { Asked } from './core/listen.js';
import type { WorkerSettings } from './core/settings.js';

export interface AppCheck {
  picked: string;
  listens: boolean;
  /** The app module's file, for `reload`. */
  file: string;
  /** Script mode: what each of the module's servers asked its listen() for, in order. */
  asked: Asked[] | null;
  /** Something to log about how the module was taken. */
  note?: string;
}

type Verdict = ({ ok: true } & AppCheck) | { ok: false; kind: string; message: string; detail?: string };

const CHECKER = fileURLToPath(new URL('./appcheck-process.js', import.meta.url));

/**
 * Node reads and parses the file NODE_EXTRA_CA_CERTS names as it starts, before any of the
 * process's own code runs: some 45 ms of a checker's 65 on the machine this was measured on,
 * on the start's critical path, for certificates an app loading wants only if it opens a TLS
 * connection while it loads. A checker starts without them; a verdict against the app is
 * never taken from such a checker, though: the load is tried again as a worker would run it.
 */
const LEAN_START = ['NODE_EXTRA_CA_CERTS'];

interface Checker {
  child: ChildProcess;
  /** Started without LEAN_START, which the environment sets. */
  lean: boolean;
}

function startChecker(nodeArgs: readonly string[], lean: boolean): Checker {
  const env = { ...process.env };
  lean &&= LEAN_START.some((k) => env[k] !== undefined);
  if (lean) for (const k of LEAN_START) delete env[k];
  const child = spawn(process.execPath, [...nodeArgs, CHECKER], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], env });
  child.on('error', () => {});
  return { child, lean };
}

let ahead: Checker | null = null;

/** Start a checker now, for the first checkApp() (it ends by itself when the master does). */
export function startCheckerAhead(): void {
  ahead ??= startChecker([], true);
}

export async function checkApp(settings: WorkerSettings, cwd: string): Promise<AppCheck> {
  // The app's node flags, but not an inspector: its port would still be held when the workers start.
  const nodeArgs = settings.nodeArgs.filter((a) => !a.startsWith('--inspect'));
  let checker = ahead && ahead.child.exitCode === null && nodeArgs.length === 0 ? ahead : null;
  if (ahead && !checker) ahead.child.kill('SIGKILL');
  ahead = null;
  checker ??= startChecker(nodeArgs, true);
  let verdict = await verdictOf(checker.child, settings, cwd);
  if (!verdict.ok && checker.lean) verdict = await verdictOf(startChecker(nodeArgs, false).child, settings, cwd);
  if (verdict.ok) return { picked: verdict.picked, listens: verdict.listens, file: verdict.file, asked: verdict.asked, note: verdict.note };
  process.stderr.write(verdict.printed);
  if (verdict.kind === 'SettingError') throw new SettingError(verdict.message);
  throw new AppLoadError(verdict.message, verdict.detail);
}

/** The checker's verdict on the app; what the app printed while it loaded, when it failed. */
async function verdictOf(child: ChildProcess, settings: WorkerSettings, cwd: string): Promise<Verdict & { printed: string }> {
  // The app loads as a worker would load it: in `cwd`, with the environment as it is now (`env`).
  child.send({ settings, cwd, env: process.env });
  // What the app prints while it loads here is held back ("listening on 3000" from a
  // script whose listen() binds nothing here would mislead; a marker would show twice),
  // and shown only when the load fails, to help say why.
  const printed: string[] = [];
  for (const s of [child.stdout!, child.stderr!]) {
    s.setEncoding('utf8');
    s.on('data', (d: string) => printed.push(d));
  }
  const verdict = await new Promise<Verdict>((resolve) => {
    child.once('message', resolve);
    child.once('error', (err) => resolve({ ok: false, kind: 'AppLoadError', message: `cannot start a process to check the app: ${err.message}` }));
    child.once('exit', (code, signal) =>
      resolve({ ok: false, kind: 'AppLoadError', message: `the app ended the process (${code === null ? `signal ${signal}` : `exit code ${code}`}) while loading` }),
    );
  });
  child.kill('SIGKILL');
  if (verdict.ok || !printed.length) return { ...verdict, printed: '' };
  // Whatever it printed last is in the pipes until they end.
  await Promise.race([Promise.all([child.stdout, child.stderr].map((s) => new Promise((r) => s!.once('close', r)))), new Promise((r) => setTimeout(r, 200))]);
  return { ...verdict, printed: printed.join('') };
}
