/**
 * Where a stuck worker is stuck: the JavaScript stack that `WORKER TIMEOUT` carries.
 *
 * A worker whose event loop is blocked cannot say anything, and a JavaScript signal handler in
 * it would never run. V8's inspector can still answer: it has its own thread, and a
 * `Debugger.pause` is served from inside any running JavaScript, `for (;;) {}` included. So
 * every worker starts with the inspector ready but closed (`--inspect-port=0`: a free
 * loopback port when it opens; `--inspect-publish-uid=stderr`: its address, with an
 * unguessable id, is printed on the worker's stderr only, and not served over HTTP). When a
 * worker has been silent for most of its timeout, the master sends it SIGUSR1, which opens
 * the inspector; reads the address from the worker's stderr pipe (src/worker-output.ts holds
 * those lines back from the log); connects, pauses the worker, reads the stack and what it
 * was serving, resumes it and disconnects. A worker that comes back is told to close it.
 *
 * This costs a worker nothing until it is stuck. The alternative it replaced, a watchdog
 * thread in every worker that connected an in-process inspector session, cost about 8 MB of
 * each worker's memory and 30 ms of each start (a second isolate) for a report almost never
 * written. The WebSocket client (`ws`) is loaded by the master the first time a worker is
 * stuck.
 */
import type { StuckReport } from './core/protocol.js';

/** Node flags that make a worker's inspector openable by SIGUSR1 on a free port. */
export const INSPECTOR_ARGS = ['--inspect-port=0', '--inspect-publish-uid=stderr'] as const;

/**
 * The flags to add to a worker's node arguments: none when the capture is off (timeout 0) or
 * the user set up the inspector in `nodeArgs` themselves: then it is theirs (a `WORKER
 * TIMEOUT` has no stack, and what the inspector prints stays in the log).
 */
export function inspectorArgs(nodeArgs: readonly string[], timeout: number): string[] {
  if (timeout <= 0 || nodeArgs.some((a) => a.startsWith('--inspect'))) return [];
  return [...INSPECTOR_ARGS];
}

const LISTENING = /^Debugger listening on (ws:\/\/\S+)$/;
/** What Node's inspector prints on stderr: not the app's output, so not the log's business. */
const INSPECTOR_LINES = [LISTENING, /^For help, see: https:\/\/nodejs\.org\/en\/docs\/inspector$/, /^Debugger attached\.$/, /^Debugger ending on /, /^Waiting for the debugger to disconnect\.\.\.$/];

/** For a worker's stderr: true (and the address, if this line gives it) when the line is the inspector's. */
export function inspectorLine(line: string): { url?: string } | null {
  if (!INSPECTOR_LINES.some((re) => re.test(line))) return null;
  const m = LISTENING.exec(line);
  return m ? { url: m[1] } : {};
}

const DESCRIBE_CURRENT = `(() => { const c = globalThis[Symbol.for('arbiter.current')];
  if (c == null) return '';
  if (typeof c === 'string') return c;
  return String(c.method) + ' ' + String(c.url); })()`;

interface CallFrame {
  callFrameId: string;
  functionName: string;
  url: string;
  location: { scriptId: string; lineNumber: number; columnNumber: number };
}

/**
 * Connect to the inspector at `url`, pause, read the stack and the work in hand, resume,
 * disconnect. Null when it cannot within `withinMs` (the worker is then killed without one).
 */
export async function captureStack(url: string, pid: number, silentMs: number, withinMs: number): Promise<StuckReport | null> {
  const { WebSocket } = await import('ws');
  const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: withinMs });
  let nextId = 0;
  const pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  // Call frames of ES modules may carry only a script id; Debugger.enable announces every
  // script, and with it the id's URL.
  const urls = new Map<string, string>();
  let onPaused: ((frames: CallFrame[]) => void) | null = null;
  ws.on('message', (data) => {
    let m: { id?: number; method?: string; params?: any; result?: unknown; error?: { message: string } };
    try {
      m = JSON.parse(String(data));
    } catch {
      return;
    }
    if (m.id !== undefined) {
      const p = pending.get(m.id);
      pending.delete(m.id);
      if (m.error) p?.reject(new Error(m.error.message));
      else p?.resolve(m.result);
    } else if (m.method === 'Debugger.scriptParsed') urls.set(m.params.scriptId, m.params.url);
    else if (m.method === 'Debugger.paused') onPaused?.(m.params.callFrames);
  });
  const post = <T>(method: string, params: object = {}) =>
    new Promise<T>((resolve, reject) => {
      const id = ++nextId;
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      ws.send(JSON.stringify({ id, method, params }));
    });
  const work = (async (): Promise<StuckReport> => {
    await new Promise<void>((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    const paused = new Promise<CallFrame[]>((resolve) => (onPaused = resolve));
    await post('Debugger.enable');
    await post('Debugger.pause');
    const frames = await paused;
    let working = '';
    try {
      const r = await post<{ result: { value?: string } }>('Debugger.evaluateOnCallFrame', {
        callFrameId: frames[0]!.callFrameId, expression: DESCRIBE_CURRENT, returnByValue: true, silent: true,
      });
      working = r.result.value ?? '';
    } catch {
      /* the stack is what matters */
    }
    await post('Debugger.resume');
    await post('Debugger.disable').catch(() => {});
    const stack = frames.map((f) => {
      const file = (f.url || urls.get(f.location.scriptId) || '<unknown>').replace(/^file:\/\//, '');
      return `at ${f.functionName || '<anonymous>'} (${file}:${f.location.lineNumber + 1}:${f.location.columnNumber + 1})`;
    });
    return { pid, silentMs, working, stack };
  })();
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([work, new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), withinMs)))]);
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
    work.catch(() => {});
    // A paused worker must never be left paused by us: closing the session resumes it.
    ws.terminate();
  }
}
