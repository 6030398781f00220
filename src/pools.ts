/**
 * Pools (SPEC §10): what one master runs, made from the resolved settings. Without `pools`
 * there is one pool, `main`, of the top-level settings; with `pools`, one per entry, each the
 * top-level settings with the pool's own values over them (src/core/settings.ts overlayPool).
 *
 * Sizing. `workers: auto` and `workers: (cpus) => n` size from the CPUs this container may
 * use (src/cpus.ts). Several pools sized that way share them: each sees an even share,
 * floor(cpus / pools sized from the CPUs), at least 1, so two `auto` pools on 4 CPUs get 2
 * workers each and `(cpus) => 2 * cpus + 1` gives 5 each. Pools with a fixed number take no
 * share. One pool (with or without `pools`) sees every CPU, as before.
 */
import { checkCombination, type Resolved } from './config.js';
import { SettingError, errorMessage } from './core/errors.js';
import { MAIN_POOL } from './core/protocol.js';
import { overlayPool, type Settings } from './core/settings.js';
import { resolveWorkers, type CpuFinding } from './cpus.js';
import { labelOf, parseAddress } from './sockets.js';

export interface PoolPlan {
  name: string;
  settings: Settings;
  /** The worker count, resolved. */
  workers: number;
  /** How it was found, for the startup log. */
  why: string;
}

/** The pools the settings describe, in the config's order, each sized. Throws a SettingError naming the pool. */
export function planPools(r: Pick<Resolved, 'settings' | 'sources'>, cpus: CpuFinding): PoolPlan[] {
  const top = r.settings;
  const named = top.pools !== null;
  const entries: [string, Partial<Record<string, unknown>>][] = named ? Object.entries(top.pools!) : [[MAIN_POOL, {}]];
  const sizedFromCpus = entries.filter(([, own]) => typeof (own.workers ?? top.workers) !== 'number').length;
  const share = cpuShare(cpus, sizedFromCpus);
  return entries.map(([name, own]) => {
    const settings = overlayPool(top, own);
    const where = named ? `pool ${name}: ` : '';
    try {
      checkCombination(settings);
    } catch (err) {
      throw new SettingError(where + errorMessage(err));
    }
    let sized: { workers: number; why: string };
    try {
      sized = resolveWorkers(settings.workers, share);
    } catch (err) {
      throw new SettingError(where + errorMessage(err));
    }
    if (own.workers === undefined && r.sources.workers === 'default')
      sized.why = `${sized.workers} worker (the default; -w N, or -w auto to size from the CPUs)`;
    else if (share !== cpus && typeof settings.workers !== 'number')
      sized.why += `; its share of ${cpus.cpus} CPUs among ${sizedFromCpus} pools sized from the CPUs`;
    return { name, settings, workers: sized.workers, why: where + sized.why };
  });
}

/** What each of `n` pools sized from the CPUs sees. */
export function cpuShare(cpus: CpuFinding, n: number): CpuFinding {
  if (n <= 1) return cpus;
  return { cpus: Math.max(1, Math.floor(cpus.cpus / n)), exact: cpus.exact / n, source: cpus.source };
}

/** Two pools cannot listen on one address: each pool's workers must be the ones a connection reaches. */
export function checkBinds(pools: { name: string; settings: Settings; listens: boolean }[], cwd: string): void {
  const owner = new Map<string, string>();
  for (const p of pools) {
    if (!p.listens) continue;
    for (const text of p.settings.bind) {
      let label: string;
      try {
        label = labelOf(parseAddress(text, cwd));
      } catch (err) {
        throw new SettingError(`pool ${p.name}: ${errorMessage(err)}`);
      }
      const other = owner.get(label);
      if (other !== undefined && other !== p.name)
        throw new SettingError(`pools ${other} and ${p.name} both bind ${label}: give each pool its own address`);
      owner.set(label, p.name);
    }
  }
}

/**
 * Whether a pool of this class listens, when no app check said so (a HUP that changed the
 * class). The built-in task class binds nothing; HTTP classes and custom classes listen
 * unless the app check said otherwise.
 */
export function classListens(workerClass: string, running?: { settings: { workerClass: string }; listens: boolean }): boolean {
  if (running && running.settings.workerClass === workerClass) return running.listens;
  return workerClass !== 'task';
}
