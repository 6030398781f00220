/**
 * Once the master is ready (src/boot.ts), give back the memory its start used and no longer
 * needs. Written for workers first and measured there (below), but not used in them: after it
 * a `-k http` worker answered ~18% fewer requests per CPU-second for as long as it ran
 * (bench/README.md, "Footprint"); the master is not on the request path.
 *
 * Booting a worker runs the ES module loader for a dozen modules of ours and the app's: some
 * 2 MB allocated in moments, where a `cluster` worker allocates under 1 MB. That fills both
 * semi-spaces of V8's young generation (1 MB each) and promotes the loader's leftovers into
 * old-space pages that stay committed, half empty. V8 gives such memory back only in a
 * memory-reducing collection (the young generation's idle half is uncommitted, sparse old
 * pages are compacted), which it runs by itself only for a process that has been idle a
 * while after a full collection, or when the embedder reports memory pressure; an idle
 * worker that collected nothing but two scavenges never gets one.
 *
 * The inspector's `HeapProfiler.collectGarbage` is such a collection (V8's
 * LowMemoryNotification), reachable without `--expose-gc` and without a global `gc()` the app
 * could see: an in-process inspector session, connected for the one command and then closed.
 * Measured on Node 20 with `-k http -w 4` serving examples/hello.js: a worker's anonymous
 * memory after 3 s idle 9.5 MB -> 7.6 MB (a `cluster` worker: 7.9 MB), for some 15 ms of the
 * worker's time. It is done once, as soon as the worker has served nothing for half a second
 * after it booted (a pause is not put in front of the first requests of a start or a reload;
 * a worker busy from the start has no idle memory to give back, and is left alone after 10
 * s), and only while the heap is small: an app that loaded a large heap at start would pay a
 * pause to match, for a saving that is then noise.
 */

/** Above this much JavaScript heap in use, the worker's heap is the app's business. */
export const SETTLE_MAX_HEAP = 64 * 1024 * 1024;

/** Whether to settle a heap of `heapUsed` bytes. */
export function shouldSettle(heapUsed: number): boolean {
  return heapUsed < SETTLE_MAX_HEAP;
}

/** How long a worker must have served nothing, and how many times it is looked at. */
export const SETTLE_IDLE_MS = 500;
const SETTLE_LOOKS = 20;

/**
 * Settle (`act`) once `served()` (requests or tasks so far) stays the same for `idleMs`; give
 * up after `looks` busy looks. The timer keeps nothing alive.
 */
export function settleWhenIdle(served: () => number, idleMs = SETTLE_IDLE_MS, looks = SETTLE_LOOKS, act: () => unknown = settleHeap): void {
  let seen = served();
  let left = looks;
  const timer = setInterval(() => {
    const now = served();
    if (now === seen) {
      clearInterval(timer);
      void act();
    } else if (--left <= 0) clearInterval(timer);
    seen = now;
  }, idleMs);
  timer.unref();
}

/**
 * Run one memory-reducing collection. Never throws: a Node built without the inspector, or an
 * inspector that refuses, leaves the heap as it was.
 */
export async function settleHeap(): Promise<boolean> {
  if (!shouldSettle(process.memoryUsage().heapUsed)) return false;
  try {
    const { Session } = await import('node:inspector');
    const session = new Session();
    session.connect();
    try {
      await new Promise<void>((resolve, reject) => session.post('HeapProfiler.collectGarbage', (err) => (err ? reject(err) : resolve())));
    } finally {
      session.disconnect();
    }
    return true;
  } catch {
    return false;
  }
}
