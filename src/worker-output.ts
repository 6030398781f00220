/**
 * A worker's stdout and stderr, in the master: read line by line from the worker's pipes and
 * written to the one log (SPEC §9). The worker's own log lines (JSON, from its logger) pass
 * as they are; anything else is the app's output (console.log, a library's warning) and
 * becomes a log line of its own, tagged with the worker's pid, age and stream:
 *
 *   {"level":"info","time":"…","pid":4133,"role":"worker","age":1,"stream":"stdout","msg":"hello"}
 *
 * Each chunk read is written in one piece, whole lines only, so two workers' lines never
 * mix. What a worker wrote just before it died is still in the pipe and is read to the end.
 */
import type { Readable } from 'node:stream';
import { writeLogLines } from './core/logging.js';
import { inspectorLine } from './stack-capture.js';

/** A line longer than this is written in pieces of this size (a runaway line cannot grow the master). */
export const MAX_LINE = 64 * 1024;
/** After data arrives, how long the pipe waits to be drained, for lines to gather. */
const GATHER_MS = 2;
/** A read that brings this many lines means a busy writer: no pause before the next. */
const BUSY_LINES = 64;
/** How long a worker's exit waits for its pipes to end (a grandchild may hold them open). */
const DRAIN_MS = 200;

/** One of our workers' own log lines: written by its pino logger (src/core/logging.ts). */
function isWorkerLog(line: string): boolean {
  return line.startsWith('{"level":"') && line.includes('"role":"worker"');
}

const LEVEL = { stdout: 'info', stderr: 'warn' } as const;

/** Whose output it is; `onInspector` takes the inspector's address (src/stack-capture.ts) out of its stderr. */
export interface Who {
  pid: number;
  age: number;
  onInspector?: (url: string) => void;
}

/** The log lines for `lines` of app output (or a worker's own log lines, passed as they are). */
export function tagLines(lines: string[], who: Who, stream: 'stdout' | 'stderr', now = new Date()): string {
  let out = '';
  let head: string | null = null;
  for (const line of lines) {
    if (stream === 'stderr' && isWorkerLog(line)) {
      out += line + '\n';
      continue;
    }
    if (stream === 'stderr' && who.onInspector) {
      const inspector = inspectorLine(line);
      if (inspector) {
        if (inspector.url) who.onInspector(inspector.url);
        continue;
      }
    }
    head ??= `{"level":"${LEVEL[stream]}","time":"${now.toISOString()}","pid":${who.pid},"role":"worker","age":${who.age},"stream":"${stream}","msg":`;
    out += head + JSON.stringify(line) + '}\n';
  }
  return out;
}

/**
 * Read one pipe line by line into the log. Resolves when the pipe has ended.
 *
 * After each read the pipe is left alone for GATHER_MS: an app that logs every request
 * would otherwise wake the master for every line, and each wake-up costs more than the line.
 * Meanwhile lines gather in the pipe (a worker blocks only if it writes more than the pipe
 * holds in that time), and are then read, tagged and written together. Reading is paused at
 * the pipe itself (its handle's readStop/readStart): a paused stream would go on reading
 * into its own buffer, one wake-up per line.
 */
function pump(from: Readable, who: Who, stream: 'stdout' | 'stderr'): Promise<void> {
  type Handle = { readStop?: () => number; readStart?: () => number } | null | undefined;
  const handleOf = () => (from as unknown as { _handle?: Handle })._handle;
  const handle = handleOf();
  return new Promise((resolve) => {
    let rest = '';
    let ended = false;
    from.setEncoding('utf8');
    /** Lines the last read brought. */
    let got = 0;
    const drain = () => {
      let text = rest;
      for (let chunk = from.read() as string | null; chunk !== null; chunk = from.read() as string | null) text += chunk;
      const lines = text.split('\n');
      rest = lines.pop()!;
      while (rest.length > MAX_LINE) {
        lines.push(rest.slice(0, MAX_LINE));
        rest = rest.slice(MAX_LINE);
      }
      got = lines.length;
      if (lines.length) writeLogLines(tagLines(lines.map(stripCr), who, stream));
    };
    from.on('readable', () => {
      drain();
      // A worker writing as fast as it can fills the pipe in less than GATHER_MS: read on.
      if (ended || got >= BUSY_LINES || typeof handle?.readStop !== 'function') return;
      handle.readStop();
      setTimeout(() => {
        if (!ended && handleOf()) handle.readStart?.();
      }, GATHER_MS);
    });
    const end = () => {
      if (ended) return;
      ended = true;
      drain();
      if (rest) writeLogLines(tagLines([stripCr(rest)], who, stream));
      rest = '';
      resolve();
    };
    from.once('end', end);
    from.once('error', end);
    from.once('close', end);
  });
}

const stripCr = (line: string) => (line.endsWith('\r') ? line.slice(0, -1) : line);

export interface CapturedOutput {
  /** Run `fn` once both pipes have ended (at once if they have), or after a short wait. */
  whenDrained(fn: () => void): void;
}

/** Start reading a worker's stdout and stderr (either may be absent: a test's fake worker). */
export function captureOutput(child: { stdout?: Readable | null; stderr?: Readable | null }, who: Who): CapturedOutput {
  let open = 0;
  let waiting: (() => void) | null = null;
  const ended = () => {
    if (--open === 0 && waiting) waiting();
  };
  for (const [from, stream] of [[child.stdout, 'stdout'], [child.stderr, 'stderr']] as const) {
    if (!from) continue;
    open++;
    void pump(from, who, stream).then(ended);
  }
  return {
    whenDrained(fn) {
      if (open === 0) return fn();
      let called = false;
      const once = () => {
        if (called) return;
        called = true;
        clearTimeout(timer);
        fn();
      };
      waiting = once;
      const timer = setTimeout(once, DRAIN_MS);
    },
  };
}
