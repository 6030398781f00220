/**
 * The errors both processes raise, and how an error becomes the one line a user reads.
 * `SettingError` is a usage or config mistake (exit 2); `AppLoadError` means the app cannot
 * be loaded (exit 3, or 2 under --check-config).
 */
import path from 'node:path';
import { ROOT } from './paths.js';

export class SettingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SettingError';
  }
}

/** `detail` is the app's own error, trimmed of our frames (see appStack). */
export class AppLoadError extends Error {
  constructor(message: string, readonly detail?: string) {
    super(message);
    this.name = 'AppLoadError';
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** `TypeError: message` on one line, for log lines about errors of the app's making. */
export function oneLine(err: unknown): string {
  if (err instanceof Error) return `${err.name === 'Error' ? 'Error' : err.name}: ${err.message.split('\n')[0]}`;
  return String(err);
}

/** The first non-empty line of an error's message (cosmiconfig's and YAML's run long). */
export function firstLine(err: unknown): string {
  const text = errorMessage(err);
  return text.split('\n').map((l) => l.trim()).find((l) => l !== '') ?? text;
}

const OUR_DIRS = ['dist', 'src', 'workers'].map((d) => path.join(ROOT, d) + path.sep);

/** The error's stack without Node's and arbiter's own frames: the part the user can act on. */
export function appStack(err: unknown): string | undefined {
  if (!(err instanceof Error) || !err.stack) return undefined;
  const lines = err.stack.split('\n');
  const head = lines.filter((l) => !/^\s+at /.test(l));
  const frames = lines.filter((l) => /^\s+at /.test(l) && !l.includes('node:internal') && !OUR_DIRS.some((d) => l.includes(d)) && !l.includes('/node_modules/tsx/'));
  return [...head, ...frames.slice(0, 12)].join('\n');
}

/** Indent a multi-line detail under an `arbiter: error:` line. */
export function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => '    ' + l.trim())
    .join('\n');
}
