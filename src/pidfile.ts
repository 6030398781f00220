/**
 * The pidfile: created exclusively, so two masters never share one. A pidfile whose process
 * is gone (a crash, a kill -9) is stale and replaced; one whose process lives refuses.
 */
import { openSync, writeSync, closeSync, readFileSync, unlinkSync, renameSync } from 'node:fs';
import { statFile } from './procstat.js';

/** Running: it exists (ours or another user's), and is not a zombie waiting to be reaped. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  return statFile(`/proc/${pid}/stat`)?.[0] !== 'Z';
}

export function readPid(file: string): number | null {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

export function writePidfile(file: string, pid: number): void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, 'wx', 0o644);
      writeSync(fd, `${pid}\n`);
      closeSync(fd);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new Error(`cannot write pidfile ${file}: ${(err as Error).message}`);
      const other = readPid(file);
      if (other !== null && other !== pid && alive(other)) throw new Error(`pidfile ${file} names a running process (${other}): is another arbiter running?`);
      unlinkSync(file);
    }
  }
  throw new Error(`cannot write pidfile ${file}`);
}

/** Remove the pidfile if it is still ours (after a USR2 hand-over it belongs to the new master). */
export function removePidfile(file: string, pid: number): void {
  if (readPid(file) === pid) {
    try {
      unlinkSync(file);
    } catch {
      /* already gone */
    }
  }
}

/** USR2: the old master's pidfile moves aside for the new master's. */
export function moveAside(file: string): string {
  const old = `${file}.oldbin`;
  renameSync(file, old);
  return old;
}
