/**
 * The readable form of a log line, for a terminal: one line per event, `time level who: msg`,
 * and nothing else (the structured fields stay in the JSON form; the message says what
 * happened). An error's stack, when the line carries one, follows indented.
 *
 *   20:01:02.345 INFO  master 4120: booting worker with pid 4133
 *   20:01:02.512 out   worker 4133 (age 1): listening on 8000
 */
export interface LogRecord {
  level?: string | number;
  time?: string | number;
  pid?: number;
  role?: string;
  age?: number;
  stream?: string;
  msg?: string;
  err?: unknown;
  [k: string]: unknown;
}

const NUMERIC: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };
const COLOR: Record<string, string> = { trace: '90', debug: '36', info: '32', warn: '33', error: '31', fatal: '41;97', out: '0', err: '33' };

function clock(time: unknown): string {
  const d = typeof time === 'string' || typeof time === 'number' ? new Date(time) : new Date();
  const t = Number.isNaN(d.getTime()) ? new Date() : d;
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(t.getHours())}:${p(t.getMinutes())}:${p(t.getSeconds())}.${p(t.getMilliseconds(), 3)}`;
}

function stackOf(err: unknown): string | null {
  if (!err || typeof err !== 'object') return null;
  const stack = (err as { stack?: unknown }).stack;
  return typeof stack === 'string' && stack.includes('\n') ? stack : null;
}

/** One record as one readable line (plus an indented stack for errors that have one). */
export function formatRecord(rec: LogRecord, color: boolean): string {
  // App output is labelled by its stream; arbiter's own lines by their level.
  const label = rec.stream === 'stdout' ? 'out' : rec.stream === 'stderr' ? 'err' : typeof rec.level === 'number' ? (NUMERIC[rec.level] ?? String(rec.level)) : String(rec.level ?? 'info');
  const who = rec.role === 'worker' ? `worker ${rec.pid}${rec.age !== undefined ? ` (age ${rec.age})` : ''}` : `${rec.role ?? 'master'} ${rec.pid ?? ''}`.trim();
  const paint = (code: string, text: string) => (color ? `\x1b[${code}m${text}\x1b[0m` : text);
  const tag = label.toUpperCase() === label || label === 'out' || label === 'err' ? label : label.toUpperCase();
  let line = `${paint('2', clock(rec.time))} ${paint(COLOR[label] ?? '0', tag.padEnd(5))} ${who}: ${rec.msg ?? ''}`;
  const stack = stackOf(rec.err);
  if (stack) line += '\n' + stack.split('\n').map((l) => `    ${l.trim()}`).join('\n');
  return line;
}

/** A JSON log line as a readable one; anything that is not JSON passes as it is. */
export function formatJsonLine(line: string, color: boolean): string {
  let rec: unknown;
  try {
    rec = JSON.parse(line);
  } catch {
    return line;
  }
  return rec && typeof rec === 'object' && !Array.isArray(rec) ? formatRecord(rec as LogRecord, color) : line;
}
