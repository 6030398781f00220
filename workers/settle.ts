/**
 * Once a worker serves, give back the memory its boot used and no longer needs.
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
 * memory after 3 s idle 9.5 MB -> 7.6 MB (a `cluster` worker: 7.9 MB), in some 5 ms of the
 * worker's time. It is done once, right after the worker reported `booted`, and only while the
 * heap is small: an app that loaded a large heap at start would pay a pause to match, for a
 * saving that is then noise.
 */

/** Above this much JavaScript heap in use, the worker's heap is the app's business. */
export const SETTLE_MAX_HEAP = 64 * 1024 * 1024;

/** Whether to settle a heap of `heapUsed` bytes. */
export function shouldSettle(heapUsed: number): boolean {
  return heapUsed < SETTLE_MAX_HEAP;
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
