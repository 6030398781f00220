/**
 * The watchdog: a thread beside the worker's main thread that notices when the main
 * thread's event loop stops beating and records where it is stuck.
 *
 * A stuck event loop cannot tell anyone anything, and a signal handler written in
 * JavaScript would never run. The watchdog thread has its own event loop: it connects an
 * inspector session to the main thread, pauses it (V8 serves the request from inside any
 * JavaScript loop), reads the call stack and what the worker was serving, resumes, and
 * writes the report to the master's report pipe, which the master reads when it kills the
 * worker for `timeout`.
 */
import { Worker } from 'node:worker_threads';

/** The global slot the worker classes fill with the work in hand (see WorkerContext.working). */
export const CURRENT = Symbol.for('arbiter.current');

export interface Watchdog {
  beat(): void;
  stop(): void;
}

export function startWatchdog(reportFd: number, timeoutSeconds: number, heartbeatSeconds: number): Watchdog {
  const shared = new Float64Array(new SharedArrayBuffer(8));
  shared[0] = Date.now();
  // Report early enough that the file is there when the master's patience runs out.
  const stuckAfterMs = Math.max(heartbeatSeconds * 2000, timeoutSeconds * 600);
  const thread = new Worker(new URL('./watchdog-thread.js', import.meta.url), {
    workerData: { shared, reportFd, stuckAfterMs },
    stdout: false,
    stderr: false,
  });
  thread.unref();
  thread.on('error', () => {
    /* diagnostics only: a broken watchdog must not take the worker down */
  });
  return {
    beat() {
      shared[0] = Date.now();
    },
    stop() {
      void thread.terminate();
    },
  };
}
