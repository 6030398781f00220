/**
 * The pidfile: claimed atomically, so two masters never share one. A pidfile whose process
 * is gone (a crash, a kill -9) is stale and replaced; one whose process lives refuses.
 */
import { linkSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
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

/**
 * Claim `file` for `pid`. The pid is written to a temp file first and hard-linked into place,
 * so the pidfile appears with its content or not at all: two starts in the same instant can
 * never see each other's file empty and take it for stale. link(2) fails when the pidfile
 * exists; a stale one (its process is gone) is moved aside first, and what was moved aside is
 * checked again, because another start may have claimed the name in between.
 */
export function writePidfile(file: string, pid: number): void {
  const tmp = `${file}.${pid}.${process.hrtime.bigint()}.tmp`;
  try {
    writeFileSync(tmp, `${pid}\n`, { mode: 0o644, flag: 'wx' });
  } catch (err) {
    throw new Error(`cannot write pidfile ${file}: ${(err as Error).message}`);
  }
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        linkSync(tmp, file);
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new Error(`cannot write pidfile ${file}: ${(err as Error).message}`);
      }
      const other = readPid(file);
      if (other === pid) return;
      if (other !== null && alive(other)) throw new Error(`pidfile ${file} names a running process (${other}): is another arbiter running?`);
      moveStale(file, `${tmp}.stale`);
    }
    throw new Error(`cannot write pidfile ${file}: it keeps coming back`);
  } finally {
    rmSync(tmp, { force: true });
  }
}

/** Move a stale pidfile out of the way; if what was moved is a live claim after all, put it back. */
function moveStale(file: string, aside: string): void {
  try {
    renameSync(file, aside);
  } catch {
    return; // someone else moved it: try again
  }
  const moved = readPid(aside);
  if (moved !== null && alive(moved)) {
    try {
      linkSync(aside, file);
    } catch {
      /* a third start claimed it meanwhile; that claim stands */
    }
  }
  rmSync(aside, { force: true });
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
