/**
 * Running the user's hooks (config-file functions). A hook that throws or rejects is logged
 * with its name and the process goes on: neither the master nor a worker dies of a hook.
 */
import type { Logger } from 'pino';
import { HOOK_NAMES, type Hook } from './settings.js';

export interface Hooks {
  /** Run a hook if configured; its exceptions and rejections are logged with its name, never thrown. */
  run(name: string, ...args: unknown[]): Promise<void>;
  has(name: string): boolean;
}

export function createHooks(values: Partial<Record<string, unknown>>, log: Logger): Hooks {
  const table = new Map<string, Hook>();
  for (const name of HOOK_NAMES) {
    const fn = values[name];
    if (typeof fn === 'function') table.set(name, fn as Hook);
  }
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
