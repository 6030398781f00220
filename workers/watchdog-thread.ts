/** The watchdog thread's side (see watchdog.ts). */
import { Session } from 'node:inspector';
import { writeSync } from 'node:fs';
import { workerData } from 'node:worker_threads';
import type { StuckReport } from '../src/core/protocol.js';

const { shared, reportFd, stuckAfterMs } = workerData as { shared: Float64Array; reportFd: number; stuckAfterMs: number };

let reported = false;
let capturing = false;

// Connected only while capturing: a connected session makes Node print "Waiting for the
// debugger to disconnect" when the worker exits.
let session: Session;

function post<T>(method: string, params?: object): Promise<T> {
  return new Promise((resolve, reject) => session.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res as T))));
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

async function capture(silentMs: number): Promise<void> {
  capturing = true;
  session = new Session();
  session.connectToMainThread();
  // Call frames of ES modules carry only a script id; Debugger.enable announces every
  // script, and with it the id's URL.
  const urls = new Map<string, string>();
  session.on('Debugger.scriptParsed', (m) => {
    const p = m.params as { scriptId: string; url: string };
    urls.set(p.scriptId, p.url);
  });
  try {
    const paused = new Promise<CallFrame[]>((resolve) =>
      session.once('Debugger.paused', (m) => resolve((m.params as { callFrames: CallFrame[] }).callFrames)),
    );
    await post('Debugger.enable');
    await post('Debugger.pause');
    const frames = await paused;
    let working = '';
    try {
      const r = await post<{ result: { value?: string } }>('Debugger.evaluateOnCallFrame', {
        callFrameId: frames[0]!.callFrameId,
        expression: DESCRIBE_CURRENT,
        returnByValue: true,
        silent: true,
      });
      working = r.result.value ?? '';
    } catch {
      /* the stack is what matters */
    }
    await post('Debugger.resume');
    await post('Debugger.disable');
    const stack = frames.map((f) => {
      const url = (f.url || urls.get(f.location.scriptId) || '<unknown>').replace(/^file:\/\//, '');
      return `at ${f.functionName || '<anonymous>'} (${url}:${f.location.lineNumber + 1}:${f.location.columnNumber + 1})`;
    });
    const report: StuckReport = { pid: process.pid, silentMs, working, stack };
    // One line, one write: the master keeps the newest complete line.
    writeSync(reportFd, JSON.stringify(report) + '\n');
    reported = true;
  } catch {
    /* nothing to report with; the master still kills the worker */
  } finally {
    session.disconnect();
    capturing = false;
  }
}

setInterval(() => {
  const silentMs = Date.now() - shared[0]!;
  if (silentMs < stuckAfterMs) {
    reported = false;
    return;
  }
  if (!reported && !capturing) void capture(silentMs);
}, 200);
