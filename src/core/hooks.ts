/**
 * Running the user's hooks (config-file functions). A hook that throws or rejects is logged
 * with its name and the process goes on: neither the master nor a worker dies of a hook.
 */
import type { Logger } from './logging.js';
import type { Hook } from './settings.js';

export interface Hooks {
  /** Run a hook if configured; its exceptions and rejections are logged with its name, never thrown. */
  run(name: string, ...args: unknown[]): Promise<void>;
  has(name: string): boolean;
}

export function createHooks(values: Partial<Record<string, unknown>>, log: Logger): Hooks {
  // Every function among the values: a hook is run by its name, so another function-valued
  // setting (`workers` in a config file) is never called here, and the worker need not load
  // the settings table to know the hooks' names.
  const table = new Map<string, Hook>();
  for (const [name, fn] of Object.entries(values)) if (typeof fn === 'function') table.set(name, fn as Hook);
  return {
    has: (name) => table.has(name),
    async run(name, ...args) {
      const fn = table.get(name);
      if (!fn) return;
      try {
        await fn(...args);
      } catch (err) {
        log.error({ event: 'hook_failed', hook: name, err }, `hook ${name} failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    },
  };
}
