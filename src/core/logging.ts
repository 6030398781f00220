/**
 * pino for the master and the workers: JSON lines, or readable text when the error log is a
 * terminal. Both kinds of process write the same file; USR1 makes each reopen it so that
 * logrotate can move it away.
 */
import { createRequire } from 'node:module';
import pino, { type Logger, type DestinationStream } from 'pino';

export type { Logger };

export interface LogOptions {
  level: string;
  errorLog: string;
  /** `master`, or `worker` with its pid. */
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

export function createLogger(opts: LogOptions): Logger {
  const toStderr = opts.errorLog === '-';
  reopenable = !toStderr;
  if (toStderr && process.stderr.isTTY) {
    // Loaded only for a terminal: most processes never pay for it.
    const pretty = createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty');
    destination = pretty({
      sync: true,
      colorize: true,
      translateTime: 'SYS:HH:MM:ss.l',
      ignore: 'hostname',
      singleLine: true,
      messageKey: 'msg',
    }) as unknown as DestinationStream;
  } else {
    destination = pino.destination({ dest: toStderr ? 2 : opts.errorLog, sync: true, append: true, mkdir: true });
  }
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

/** USR1: start a new file where the old one was (logrotate's `postrotate`). */
export function reopenErrorLog(): void {
  if (reopenable) destination?.reopen?.();
}

/** Print a one-line error for the user, outside any logger: usage and config mistakes. */
export function fatalLine(message: string): void {
  process.stderr.write(`arbiter: error: ${message}\n`);
}
