/**
 * What /proc says about a process, for `arbiter status` and `arbiter top`: CPU time used.
 * The second field of /proc/PID/stat is the command name in parentheses, and a worker's name
 * ("arbiter worker [app]") has spaces and may have parentheses: the fields are counted from
 * after the LAST ')'.
 */
import { readFileSync } from 'node:fs';

/** Clock ticks per second of utime/stime: USER_HZ, 100 on every Linux Node runs on. */
const TICKS = 100;

/** The fields after the command name: [state, ppid, pgrp, ...] (field 3 of proc(5) is index 0). */
export function statFields(stat: string): string[] {
  return stat.slice(stat.lastIndexOf(')') + 2).trim().split(' ');
}

/** The fields of a /proc/PID/stat file, or null when it cannot be read (not Linux, or gone). */
export function statFile(file: string): string[] | null {
  try {
    return statFields(readFileSync(file, 'utf8'));
  } catch {
    return null;
  }
}

/** User + system CPU seconds of `pid`, or null (not Linux, or the process is gone). */
export function cpuSeconds(pid: number): number | null {
  const f = statFile(`/proc/${pid}/stat`);
  if (!f) return null;
  // utime and stime are fields 14 and 15 of proc(5).
  const ticks = Number(f[11]) + Number(f[12]);
  return Number.isFinite(ticks) ? ticks / TICKS : null;
}
