/**
 * The package's public API: `defineConfig` for typed config files.
 */
import type { ArbiterConfig } from './settings.js';

export type { ArbiterConfig, Settings } from './settings.js';

/** Identity function that gives editors the types of every setting and hook. */
export function defineConfig(config: ArbiterConfig): ArbiterConfig {
  return config;
}
