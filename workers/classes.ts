/** Finding a worker class by name (`http`, `h11`, `task`) or by module path. */
import { pathToFileURL } from 'node:url';
import { resolveModule } from '../src/core/app.js';
import { AppLoadError, SettingError } from '../src/core/errors.js';
import { closest } from '../src/core/suggest.js';
import type { WorkerClass } from './contract.js';

const BUILT_IN: Record<string, () => Promise<{ default: WorkerClass }>> = {
  http: () => import('./http.js'),
  h11: () => import('./h11/worker.js'),
  task: () => import('./task/worker.js'),
};

export const BUILT_IN_CLASSES = Object.keys(BUILT_IN);

export async function loadWorkerClass(name: string, cwd: string): Promise<WorkerClass> {
  const builtIn = BUILT_IN[name];
  if (builtIn) return (await builtIn()).default;
  if (!/[./]/.test(name)) {
    const near = closest(name, BUILT_IN_CLASSES);
    throw new SettingError(
      `unknown worker class "${name}": expected ${BUILT_IN_CLASSES.join(', ')} or a module path` + (near ? ` — did you mean "${near}"?` : ''),
    );
  }
  let file: string;
  try {
    file = resolveModule(name, cwd);
  } catch (err) {
    throw new SettingError(`worker class module not found: ${name}`);
  }
  let mod: { default?: unknown };
  try {
    mod = await import(pathToFileURL(file).href);
  } catch (err) {
    throw new AppLoadError(`worker class ${name} failed while loading: ${err instanceof Error ? err.message : String(err)}`);
  }
  const cls = mod.default as WorkerClass | undefined;
  if (!cls || typeof cls.adapt !== 'function' || typeof cls.create !== 'function')
    throw new SettingError(`worker class ${name} must export default { name, adapt(), create() } (see workers/contract.ts)`);
  return cls;
}
