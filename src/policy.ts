/**
 * The master's decisions, as pure functions of what it knows: which workers to start, which
 * to let go, how long to wait. The group (group.ts) carries them out; the tests run them
 * without processes (test/policy.test.ts).
 */
import type { WorkerState } from './worker-handle.js';

/** What the decisions need to know about a worker. */
export interface WorkerView {
  age: number;
  state: WorkerState;
  retiredBy?: number | undefined;
  /** When it was spawned (ms); a view without it counts as just spawned. */
  spawnedAt?: number;
}

const oldestFirst = (a: WorkerView, b: WorkerView) => a.age - b.age;

// ---------------------------------------------------------------------------------------
// Crash loops.

/**
 * A worker that dies after serving for a while is replaced at once. Workers that keep dying
 * shortly after they start (a bad deploy, a missing dependency at run time) are replaced
 * with a delay that doubles each time, so a broken app costs a log line a few seconds, not
 * a fork storm.
 */
export interface Policy {
  /** How long the worker that just died had lived. */
  livedMs: number;
  /** Consecutive quick deaths before this one. */
  quickDeaths: number;
  /**
   * It had served and was ended by a signal the master did not send (kill -9, the OOM
   * killer): not a sign of broken code, so it is replaced at once and the count stands.
   */
  killedAfterServing?: boolean;
}

export interface Verdict {
  quickDeaths: number;
  delayMs: number;
  quickMs: number;
}

export const QUICK_DEATH_MS = 5_000;
export const FIRST_DELAY_MS = 100;
export const MAX_DELAY_MS = 10_000;

export function decide(p: Policy): Verdict {
  if (p.killedAfterServing) return { quickDeaths: p.quickDeaths, delayMs: 0, quickMs: QUICK_DEATH_MS };
  if (p.livedMs >= QUICK_DEATH_MS) return { quickDeaths: 0, delayMs: 0, quickMs: QUICK_DEATH_MS };
  const quickDeaths = p.quickDeaths + 1;
  // The first quick death may be bad luck: replace at once. From the second on, back off.
  const delayMs = quickDeaths < 2 ? 0 : Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** (quickDeaths - 2));
  return { quickDeaths, delayMs, quickMs: QUICK_DEATH_MS };
}

// ---------------------------------------------------------------------------------------
// Restart limiting (SPEC §10).

/**
 * A pool whose workers keep dying is degraded: more than `maxRestarts` unexpected deaths
 * (crashes, timeouts; not reloads, recycling or scale-down) within `restartWindow`. It keeps
 * restarting them at the crash-loop backoff rate, and recovers by itself once its workers
 * live again: every one of `target` serving for RECOVER_AFTER_MS, with no more than
 * `maxRestarts` deaths left in the window. Both conditions, so a pool whose workers die
 * every few seconds does not flap between the two states. `maxRestarts` 0 turns it off.
 */
export const RECOVER_AFTER_MS = QUICK_DEATH_MS;

export interface Health {
  /** Unexpected deaths within the window, including any just now. */
  deaths: number;
  maxRestarts: number;
  degraded: boolean;
  /** How long every one of `target` workers has been serving; null while fewer serve. */
  steadyMs: number | null;
}

export function degraded(h: Health): boolean {
  if (h.maxRestarts <= 0) return false;
  if (h.deaths > h.maxRestarts) return true;
  if (!h.degraded) return false;
  return !(h.steadyMs !== null && h.steadyMs >= RECOVER_AFTER_MS);
}

/** The deaths (epoch ms) still inside the window at `now`, oldest first. */
export function withinWindow(deaths: readonly number[], now: number, windowMs: number): number[] {
  return deaths.filter((t) => now - t < windowMs);
}

/** How long the youngest of the serving workers has served, when at least `target` serve. */
export function steadyFor(servingSince: readonly number[], target: number, now: number): number | null {
  if (target <= 0 || servingSince.length < target) return null;
  return now - Math.max(...servingSince);
}

// ---------------------------------------------------------------------------------------
// Keeping `target` workers.

/** Workers that count toward the target: serving, or booting to serve. */
export function counted<W extends WorkerView>(workers: readonly W[]): W[] {
  return workers.filter((w) => w.state === 'booting' || w.state === 'serving');
}

/**
 * A booting worker holds one of the `bootAtOnce` places for at most this long: a boot that
 * waits on something else (a database, a cache to warm) must not hold back the others.
 */
export const BOOT_SLOT_MS = 1000;

/**
 * How many workers to start now. None while a backoff runs; one at a time during a crash
 * loop (more than one quick death in a row); and no more booting at once than `bootAtOnce`,
 * the CPUs the master found. A boot is mostly CPU (Node's start, the app's modules): eight
 * workers booting together on two cores share them, and none serves before all are nearly
 * done; booting two at a time, the first two serve after a quarter of that, and the last
 * ones no later than before.
 */
export function toSpawn(p: { target: number; workers: readonly WorkerView[]; quickDeaths: number; now: number; nextSpawnAt: number; bootAtOnce?: number }): number {
  const missing = p.target - counted(p.workers).length;
  if (missing <= 0 || p.now < p.nextSpawnAt) return 0;
  const booting = p.workers.filter((w) => w.state === 'booting' && p.now - (w.spawnedAt ?? p.now) < BOOT_SLOT_MS).length;
  const places = Math.max(0, (p.bootAtOnce ?? Infinity) - booting);
  return Math.min(p.quickDeaths > 1 ? 1 : missing, places);
}

/** TTOU, or a smaller `workers` after HUP: the oldest of those beyond the target leave first. */
export function scaleDown<W extends WorkerView>(workers: readonly W[], target: number): W[] {
  const live = counted(workers).sort(oldestFirst);
  return live.slice(0, Math.max(0, live.length - target));
}

/**
 * The replacement rule: retiring workers (reload, recycling) keep serving until there are
 * enough serving workers without them; then one old worker leaves per new one serving,
 * oldest first, so capacity never dips below the target.
 */
export function replacements<W extends WorkerView>(workers: readonly W[], target: number): W[] {
  const serving = workers.filter((w) => w.state === 'serving').length;
  const retiring = workers.filter((w) => w.state === 'retiring').sort(oldestFirst);
  return retiring.slice(0, Math.max(0, serving + retiring.length - target));
}

/**
 * A reload whose new code cannot boot: the workers that reload retired serve on; workers
 * retired by earlier reloads (or recycling) go on leaving.
 */
export function rollback<W extends WorkerView>(workers: readonly W[], generation: number): W[] {
  return workers.filter((w) => w.state === 'retiring' && w.retiredBy === generation);
}

/** After a failed reload, how long before the group tries new workers again. */
export const BOOT_FAILURE_HOLD_MS = 5_000;

// ---------------------------------------------------------------------------------------
// Stopping.

/** A quick stop's grace: the worker is told to stop now, and killed after this. */
export const QUICK_STOP_MS = 1_000;

/** How long a stopping worker has before the master kills it. */
export function stopGraceMs(graceful: boolean, gracefulTimeoutSeconds: number): number {
  return graceful ? gracefulTimeoutSeconds * 1000 : QUICK_STOP_MS;
}

/**
 * When the master looks where a silent worker is stuck (src/stack-capture.ts): late enough
 * that two missed heartbeats are not mistaken for it, early enough that the stack is in hand
 * when `timeout` runs out. Null when there is no timeout.
 */
export function lookWhereStuckAfterMs(timeoutSeconds: number, heartbeatSeconds: number): number | null {
  if (timeoutSeconds <= 0) return null;
  return Math.min(Math.max(heartbeatSeconds * 2000, timeoutSeconds * 600), timeoutSeconds * 900);
}

/** A worker whose heartbeats stopped for `timeout` seconds is stuck (0 disables). */
export function isStuck(now: number, lastSeen: number, timeoutSeconds: number): boolean {
  return timeoutSeconds > 0 && now - lastSeen > timeoutSeconds * 1000;
}
