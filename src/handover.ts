/**
 * The new master's side of a USR2 hand-over: the old master gave it a pipe (its descriptor
 * in ARBITER_UPGRADE_FD) and waits on it to learn that the new master serves, or why it
 * could not start, which `arbiter upgrade` then prints.
 */
import { closeSync, writeSync } from 'node:fs';
import { ENV } from './core/protocol.js';
import type { HandoverMessage } from './master.js';

let fd: number | null = null;

/** Take the descriptor out of the environment (workers and later masters must not see it). */
export function takeHandover(env: NodeJS.ProcessEnv = process.env): void {
  const n = Number(env[ENV.UPGRADE_FD]);
  delete env[ENV.UPGRADE_FD];
  fd = Number.isInteger(n) && n > 2 ? n : null;
}

/** Tell the old master, once; the pipe is closed after. */
export function tellOldMaster(msg: HandoverMessage): void {
  if (fd === null) return;
  try {
    writeSync(fd, JSON.stringify(msg) + '\n');
    closeSync(fd);
  } catch {
    /* the old master is gone: nobody to tell */
  }
  fd = null;
}
