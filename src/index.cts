/**
 * The package seen from CommonJS: `require('arbiterd')`, and the config files of CommonJS
 * projects (an `arbiter.conf.ts` whose `import` TypeScript compiles to `require()` under
 * `module: node16` or `nodenext`). `defineConfig` is here; the rest of the API is the ES
 * module's, loaded on first use.
 */
import type { ArbiterConfig } from './core/settings.js' with { 'resolution-mode': 'import' };
import type { EnqueueOpts, TaskHandle } from './index.js' with { 'resolution-mode': 'import' };

export type { ArbiterConfig, Settings } from './core/settings.js' with { 'resolution-mode': 'import' };
export type { EnqueueOpts, TaskHandle } from './index.js' with { 'resolution-mode': 'import' };
export type { TaskContext, TaskHandler, TaskHandlers, TaskAttempt } from './core/tasks.js' with { 'resolution-mode': 'import' };

/** Identity function that gives editors the types of every setting and hook. */
export function defineConfig(config: ArbiterConfig): ArbiterConfig {
  return config;
}

/** See the ES module's `enqueue`. */
export async function enqueue(name: string, payload: unknown, opts: EnqueueOpts = {}): Promise<TaskHandle> {
  return (await import('./index.js')).enqueue(name, payload, opts);
}

/** See the ES module's `closeBrokers`. */
export async function closeBrokers(): Promise<void> {
  return (await import('./index.js')).closeBrokers();
}
