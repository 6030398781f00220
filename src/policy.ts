/**
 * Crash-loop policy: how long to wait before replacing a worker that died on its own.
 * Pure, so it is tested without processes.
 *
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
  if (p.livedMs >= QUICK_DEATH_MS) return { quickDeaths: 0, delayMs: 0, quickMs: QUICK_DEATH_MS };
  const quickDeaths = p.quickDeaths + 1;
  // The first quick death may be bad luck: replace at once. From the second on, back off.
  const delayMs = quickDeaths < 2 ? 0 : Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** (quickDeaths - 2));
  return { quickDeaths, delayMs, quickMs: QUICK_DEATH_MS };
}
