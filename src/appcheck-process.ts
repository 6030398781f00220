/** The process side of appcheck.ts: load the worker class and the app, report, and wait to be ended. */
import { ScriptApp, loadApp } from './core/app.js';
import { AppLoadError, appStack, oneLine } from './core/errors.js';
import { ListenCapture, nothingPending } from './core/listen.js';
import type { WorkerSettings } from './core/settings.js';
// The one import of the worker side by the master's: the app is checked by its worker class.
import { loadWorkerClass } from '../workers/classes.js';

// The master is gone (or done with us) whatever the app keeps running.
process.on('disconnect', () => process.exit(0));
// Started ahead (appcheck.ts): this module's imports load while the master loads its own.
const { settings, cwd, env } = await new Promise<{ settings: WorkerSettings; cwd: string; env: NodeJS.ProcessEnv }>((resolve) => process.once('message', resolve as never));
for (const key of Object.keys(process.env)) if (!(key in env)) delete process.env[key];
Object.assign(process.env, env);
process.chdir(cwd);
// Only the app's own handles may keep this process alive: a module with nothing left to run
// has made all the listen() calls it will make (nothingPending()).
process.channel?.unref();
const report = (verdict: object) => process.send!(verdict);

try {
  const cls = await loadWorkerClass(settings.workerClass, cwd);
  const listens = cls.listens !== false;
  // A module that calls listen() itself binds nothing here: its calls are recorded, and a
  // thread with nothing left to run has made all it will make.
  const listen = cls.scripts
    ? { capture: new ListenCapture(), pretend: true, want: Infinity, idle: nothingPending, scripts: cls.scripts === 'run', className: cls.name }
    : undefined;
  const loaded = await loadApp(settings.app!, cwd, { interface: settings.interface, listen });
  const { picked } = await cls.adapt(loaded.value, settings, loaded.where);
  const asked = loaded.value instanceof ScriptApp ? loaded.value.asked : null;
  report({ ok: true, picked, listens, file: loaded.file, asked, note: loaded.note });
} catch (err) {
  const e = err as Error;
  report({
    ok: false,
    kind: e?.name === 'SettingError' ? 'SettingError' : 'AppLoadError',
    message: err instanceof AppLoadError || e?.name === 'SettingError' ? e.message : `the app failed while loading: ${oneLine(err)}`,
    detail: err instanceof AppLoadError ? err.detail : appStack(err),
  });
}
