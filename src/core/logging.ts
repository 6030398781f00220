/**
 * Logging for the master and the workers (SPEC §9). There is one log, and the master writes it:
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
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import path from 'node:path';

/**
 * The logger's calling convention is pino's, `log.info({ event, ... }, 'message')` or
 * `log.info('message')`, and so is its line: `{"level":"info","time":ISO,"pid":..,"role":..,
 * ...fields, "msg":..}`, with an `err` field serialized as `{ type, message, stack, ... }`.
 * It is not pino: every line here is one synchronous write of a whole line to a pipe or a
 * file, which is the one thing arbiter needs of a logger, and pino's modules were 2.8 MB of
 * every process (a fifth of a worker's budget, SPEC §11).
 */
export interface LogFn {
  (fields: object, msg?: string): void;
  (msg: string): void;
}

export interface Logger {
  trace: LogFn;
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  fatal: LogFn;
  /** The lowest level written (`silent` writes nothing); can be changed at run time. */
  level: string;
  isLevelEnabled(level: string): boolean;
  /** A logger that adds `fields` to every line. */
  child(fields: Record<string, unknown>): Logger;
}

export interface LogOptions {
  level: string;
  /** The master's: `-` (stderr) or a file. A worker always logs to its stderr pipe. */
  errorLog: string;
  role: 'master' | 'worker';
  /** Fields on every line (a worker's `pool`). */
  fields?: Record<string, string>;
  /**
   * The master's readable form of a line, for a terminal (log-format.ts's formatJsonLine);
   * given by the master, so that a worker, which always writes JSON, never loads it.
   */
  readable?: (line: string, color: boolean) => string;
}

const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };
const NAMES = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;

/** Where lines go: a descriptor written synchronously, whole lines at a time. */
class Destination {
  private fd: number;
  constructor(private readonly file: string | null) {
    this.fd = file === null ? 2 : Destination.open(file);
  }

  private static open(file: string): number {
    mkdirSync(path.dirname(file), { recursive: true });
    return openSync(file, 'a');
  }

  write(text: string): void {
    const buf = Buffer.from(text);
    for (let off = 0; off < buf.length; ) {
      try {
        off += writeSync(this.fd, buf, off);
      } catch (err) {
        // stderr may be a non-blocking pipe whose reader is behind: wait for it, briefly.
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') return;
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
      }
    }
  }

  /** USR1: a new file where the old one was (logrotate's `postrotate`). */
  reopen(): void {
    if (this.file === null) return;
    const old = this.fd;
    this.fd = Destination.open(this.file);
    closeSync(old);
  }
}

let destination: Destination | null = null;
/** A terminal gets readable lines (log-format.ts); everything else JSON lines. */
let readable: { format: NonNullable<LogOptions['readable']>; color: boolean } | null = null;

/** pino's `err` serializer: what JSON.stringify would lose of an Error. */
function serializeError(err: unknown): unknown {
  if (!(err instanceof Error)) return err;
  const out: Record<string, unknown> = { type: err.constructor?.name ?? 'Error', message: err.message, stack: err.stack };
  for (const key of Object.keys(err)) if (!(key in out)) out[key] = (err as unknown as Record<string, unknown>)[key];
  if (err.cause !== undefined) out.cause = serializeError(err.cause);
  return out;
}

/** JSON that survives what an app or a hook may put in a field (cycles, BigInt). */
function stringify(record: Record<string, unknown>): string {
  try {
    return JSON.stringify(record);
  } catch {
    const seen = new WeakSet();
    return JSON.stringify(record, (_k, v) => {
      if (typeof v === 'bigint') return v.toString();
      if (v && typeof v === 'object') {
        if (seen.has(v)) return '[Circular]';
        seen.add(v);
      }
      return v;
    });
  }
}

function makeLogger(base: Record<string, unknown>, state: { threshold: number; name: string }): Logger {
  const logger = { child: (fields: Record<string, unknown>) => makeLogger({ ...base, ...fields }, state) } as Logger;
  for (const name of NAMES) {
    const value = LEVELS[name]!;
    logger[name] = ((fields: object | string, msg?: string) => {
      if (value < state.threshold) return;
      const record: Record<string, unknown> = { level: name, time: new Date().toISOString(), ...base };
      if (typeof fields === 'string') record.msg = fields;
      else {
        if (fields instanceof Error) {
          record.err = serializeError(fields);
          msg ??= fields.message;
        } else {
          Object.assign(record, fields);
          if ('err' in record) record.err = serializeError(record.err);
        }
        if (msg !== undefined) record.msg = msg;
      }
      writeLogLines(stringify(record) + '\n');
    }) as LogFn;
  }
  Object.defineProperty(logger, 'level', {
    get: () => state.name,
    set: (name: string) => {
      if (!(name in LEVELS)) throw new Error(`unknown log level "${name}"`);
      state.name = name;
      state.threshold = LEVELS[name]!;
    },
  });
  logger.isLevelEnabled = (name) => (LEVELS[name] ?? Infinity) >= state.threshold;
  return logger;
}

export function createLogger(opts: LogOptions): Logger {
  const toStderr = opts.role === 'worker' || opts.errorLog === '-';
  destination = new Destination(toStderr ? null : path.resolve(opts.errorLog));
  readable = opts.readable && toStderr && process.stderr.isTTY ? { format: opts.readable, color: process.stderr.hasColors?.() ?? false } : null;
  const state = { threshold: LEVELS.info!, name: 'info' };
  const logger = makeLogger({ pid: process.pid, role: opts.role, ...opts.fields }, state);
  logger.level = opts.level;
  return logger;
}

/** In the master: write complete JSON log lines (each ending in "\n") to the error log. */
export function writeLogLines(text: string): void {
  if (readable) {
    let out = '';
    for (const line of text.split('\n')) if (line) out += readable.format(line, readable.color) + '\n';
    text = out;
  }
  if (destination) destination.write(text);
  else process.stderr.write(text);
}

/** USR1: start a new file where the old one was (logrotate's `postrotate`). */
export function reopenErrorLog(): void {
  destination?.reopen();
}

/** Print a one-line error for the user, outside any logger: usage and config mistakes. */
export function fatalLine(message: string): void {
  process.stderr.write(`arbiter: error: ${message}\n`);
}
