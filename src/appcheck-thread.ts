/** The thread side of appcheck.ts: load the worker class and the app, report, and wait to be ended. */
import { parentPort, workerData } from 'node:worker_threads';
import { importApp } from './core/app.js';
import { AppLoadError, appStack, oneLine } from './core/errors.js';
import type { WorkerSettings } from './core/settings.js';
// The one import of the worker side by the master's: the app is checked by its worker class.
import { loadWorkerClass } from '../workers/classes.js';

const { settings, cwd } = workerData as { settings: WorkerSettings; cwd: string };

try {
  const cls = await loadWorkerClass(settings.workerClass, cwd);
  const { value, where, file } = await importApp(settings.app!, cwd);
  const { picked } = await cls.adapt(value, settings, where);
  parentPort!.postMessage({ ok: true, picked, listens: cls.listens !== false, file });
} catch (err) {
  const e = err as Error;
  parentPort!.postMessage({
    ok: false,
    kind: e?.name === 'SettingError' ? 'SettingError' : 'AppLoadError',
    message: err instanceof AppLoadError || e?.name === 'SettingError' ? e.message : `the app failed while loading: ${oneLine(err)}`,
    detail: err instanceof AppLoadError ? err.detail : appStack(err),
  });
}
