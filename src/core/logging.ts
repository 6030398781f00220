/**
 * pino for the master and the workers (SPEC §9). There is one log, and the master writes it:
 *
 *   - a worker logs JSON lines to its stderr, which is a pipe to the master; the master
 *     reads every worker's stdout and stderr line by line (src/worker-output.ts) and writes
 *     the worker's own log lines as they are and the app's output tagged with the worker's
 *     pid, age and stream. A worker never opens the error log, so USR1 has one file to
 *     reopen and `-u` has none to hand over;
 *   - the master writes `errorLog`: JSON lines, or, when that is a terminal, readable
 *     one-line events (log-format.ts).
 *
 * Writes are synchronous and whole lines at a time, so lines from different workers never
 * mix and nothing is lost when a process exits right after writing.
 */
import pino, { type DestinationStream, type Logger } from 'pino';
import { formatJsonLine } from './log-format.js';

export type { Logger };

export interface LogOptions {
  level: string;
  /** The master's: `-` (stderr) or a file. A worker always logs to its stderr pipe. */
  errorLog: string;
  role: 'master' | 'worker';
  /** Fields on every line (a worker's `pool`). */
  fields?: Record<string, string>;
}

interface Reopenable {
  reopen?: () => void;
  flushSync?: () => void;
}

let destination: (DestinationStream & Reopenable) | null = null;
/** Only a file can be reopened; stderr stays what it is. */
let reopenable = false;

/** Readable lines on a terminal: the JSON a logger (or a worker) writes, turned into one line each. */
function readableStderr(): DestinationStream {
  const out = pino.destination({ dest: 2, sync: true });
  const color = process.stderr.hasColors?.() ?? false;
  return {
    write(chunk: string) {
      let text = '';
      for (const line of chunk.split('\n')) if (line) text += formatJsonLine(line, color) + '\n';
      out.write(text);
    },
  };
}

export function createLogger(opts: LogOptions): Logger {
  const toStderr = opts.role === 'worker' || opts.errorLog === '-';
  reopenable = !toStderr;
  if (opts.role === 'master' && toStderr && process.stderr.isTTY) destination = readableStderr();
  else destination = pino.destination({ dest: toStderr ? 2 : opts.errorLog, sync: true, append: true, mkdir: true });
  return pino(
    {
      level: opts.level,
      base: { pid: process.pid, role: opts.role, ...opts.fields },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}

/** In the master: write complete JSON log lines (each ending in "\n") to the error log. */
export function writeLogLines(text: string): void {
  if (destination) destination.write(text);
  else process.stderr.write(text);
}

/** USR1: start a new file where the old one was (logrotate's `postrotate`). */
export function reopenErrorLog(): void {
  if (reopenable) destination?.reopen?.();
}

/** Print a one-line error for the user, outside any logger: usage and config mistakes. */
export function fatalLine(message: string): void {
  process.stderr.write(`arbiter: error: ${message}\n`);
}
