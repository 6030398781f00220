/**
 * Loading the app once before anything is bound, to fail early with a clear line.
 *
 * The load runs in a worker thread, not on the master's own thread: app modules do things
 * when imported (start timers, open pools, call process.exit), and none of that may touch
 * the master. The thread is ended as soon as the verdict is in. What the app prints while
 * it loads is kept back: the workers print it again, into the log, where it belongs; only
 * when the check fails is it shown, since it may say why.
 */
import { Worker } from 'node:worker_threads';
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

export async function checkApp(settings: WorkerSettings, cwd: string): Promise<AppCheck> {
  const thread = new Worker(new URL('./appcheck-thread.js', import.meta.url), {
    workerData: { settings, cwd },
    // What the app prints while it loads here is held back ("listening on 3000" from a
    // script whose listen() binds nothing here would mislead; a marker would show twice),
    // and shown only when the load fails, to help say why.
    stdout: true,
    stderr: true,
  });
  const printed: string[] = [];
  for (const s of [thread.stdout, thread.stderr]) {
    s.setEncoding('utf8');
    s.on('data', (d: string) => printed.push(d));
  }
  let ok = false;
  try {
    const verdict = await new Promise<Verdict>((resolve, reject) => {
      thread.once('message', resolve);
      thread.once('error', reject);
      thread.once('exit', (code) =>
        resolve({ ok: false, kind: 'AppLoadError', message: `the app ended the process (exit code ${code}) while loading` }),
      );
    });
    if (verdict.ok) {
      ok = true;
      return { picked: verdict.picked, listens: verdict.listens, file: verdict.file, asked: verdict.asked, note: verdict.note };
    }
    if (verdict.kind === 'SettingError') throw new SettingError(verdict.message);
    throw new AppLoadError(verdict.message, verdict.detail);
  } finally {
    void thread.terminate();
    if (!ok && printed.length) process.stderr.write(printed.join(''));
  }
}
