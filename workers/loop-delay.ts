/**
 * Event-loop delay for the heartbeat (`arbiter top`, status, metrics): how late a timer that
 * should fire every `intervalMs` fires, as the mean and the maximum since the last read.
 *
 * Not perf_hooks.monitorEventLoopDelay(): its HdrHistogram spans a nanosecond to an hour at
 * three significant digits, some 0.4 MB of counters that every reset() rewrites, so they stay
 * resident in every worker; node:perf_hooks itself is 0.16 MB more to load (measured with
 * /proc/self/smaps_rollup on Node 20). The heartbeat only ever reported the mean and the
 * maximum, which three numbers hold. The timer is the same as the histogram's (one wake-up
 * per interval, unref'd: it keeps no process alive).
 */

/** The delay figures from what was sampled: ms beyond the interval, one decimal. */
export function delayFigures(sum: number, count: number, max: number): { mean: number; max: number } {
  const tenth = (ms: number) => Math.max(0, Math.round(ms * 10) / 10);
  return count ? { mean: tenth(sum / count), max: tenth(max) } : { mean: 0, max: 0 };
}

/**
 * Milliseconds on the monotonic clock. Not performance.now(): the `performance` global loads
 * Node's perf_hooks internals the first time it is read, some 0.1 MB of heap for one clock.
 */
export function monotonicMs(): number {
  const [s, ns] = process.hrtime();
  return s * 1e3 + ns / 1e6;
}

export class LoopDelay {
  #sum = 0;
  #count = 0;
  #max = 0;
  #last = monotonicMs();

  constructor(readonly intervalMs: number) {
    setInterval(() => this.#sample(), intervalMs).unref();
  }

  #sample(): void {
    const t = monotonicMs();
    const late = t - this.#last - this.intervalMs;
    this.#last = t;
    this.#sum += late > 0 ? late : 0;
    this.#count++;
    if (late > this.#max) this.#max = late;
  }

  /** Mean and maximum since the previous read, and start over. */
  read(): { mean: number; max: number } {
    const figures = delayFigures(this.#sum, this.#count, this.#max);
    this.#sum = this.#count = this.#max = 0;
    return figures;
  }
}
