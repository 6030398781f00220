/**
 * Owning a unix socket path without ever destroying someone else's.
 *
 * libuv unlinks a unix server's path when the server closes. When a USR2 master had taken
 * over the old master's path, the old master's exit therefore removed the new master's
 * socket (`arbiter status` after `arbiter upgrade`: "no such socket"). So a server here never
 * listens on its real path: it listens on a private temporary name beside it (libuv may
 * unlink that one as it likes), and the real path is made to point at it with link(2) (only
 * if free: two arbiters racing for one name cannot both win) or rename(2) (a USR2 master
 * replacing its parent, atomically). On close the real path is removed only while it is
 * still this server's inode.
 */
import { chmodSync, linkSync, lstatSync, readdirSync, renameSync, statSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { alive } from './pidfile.js';

/** What is at a socket path: a live server, a dead one's file, nothing, or not a socket. */
export type PathState = 'live' | 'stale' | 'absent' | 'other';

/** Is something answering on this unix socket? A slow answer counts as live. */
export function probe(file: string, timeoutMs = 1000): Promise<PathState> {
  return new Promise((resolve) => {
    let st;
    try {
      st = lstatSync(file);
    } catch {
      return resolve('absent');
    }
    if (!st.isSocket()) return resolve('other');
    const s = net.connect(file);
    const done = (v: PathState) => {
      s.destroy();
      resolve(v);
    };
    s.once('connect', () => done('live'));
    s.once('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED' ? 'stale' : err.code === 'ENOENT' ? 'absent' : 'live'));
    s.setTimeout(timeoutMs, () => done('live'));
  });
}

/** Remove a socket file nobody answers on; true when it was stale and is gone. */
export async function removeIfStale(file: string): Promise<boolean> {
  if ((await probe(file)) !== 'stale') return false;
  try {
    unlinkSync(file);
  } catch {
    /* someone else cleaned up first */
  }
  return true;
}

/** The temporary names of servers whose process is gone, in `dir` (a kill -9 leaves them). */
export function removeDeadTemporaries(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names) {
    const m = /^\..+\.(\d+)\.tmp$/.exec(n);
    if (!m || alive(Number(m[1]))) continue;
    try {
      unlinkSync(path.join(dir, n));
    } catch {
      /* gone */
    }
  }
}

export interface ClaimedSocket {
  server: net.Server;
  /** The real path, once claimed. */
  readonly path: string;
  /** Point the real path at this server: `exclusive` (only if free, or stale) or `replace`. */
  claim(how: 'exclusive' | 'replace'): Promise<void>;
  /** The real path still leads to this server. */
  owns(): boolean;
  close(): void;
}

export class PathTaken extends Error {}

/**
 * Listen on a temporary name next to `file`, mode 0600 from the first moment (the umask
 * covers the bind, which happens inside listen()). The caller then claims `file`.
 */
export async function listenBeside(file: string, onConnection: (s: net.Socket) => void): Promise<ClaimedSocket> {
  const real = path.resolve(file);
  const temp = path.join(path.dirname(real), `.${path.basename(real)}.${process.pid}.tmp`);
  try {
    unlinkSync(temp);
  } catch {
    /* not there: the usual case */
  }
  const server = net.createServer(onConnection);
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => reject(new Error(`${real}: ${err.code ?? err.message}`));
    server.once('error', onError);
    const old = process.umask(0o177);
    try {
      server.listen(temp, () => {
        server.off('error', onError);
        resolve();
      });
    } finally {
      process.umask(old);
    }
  });
  chmodSync(temp, 0o600);
  const { ino, dev } = statSync(temp);
  let claimed = false;
  const owns = () => {
    try {
      const st = statSync(real);
      return st.ino === ino && st.dev === dev;
    } catch {
      return false;
    }
  };
  return {
    server,
    path: real,
    owns,
    async claim(how) {
      if (how === 'replace') renameSync(temp, real);
      else {
        for (let attempt = 0; ; attempt++) {
          try {
            linkSync(temp, real);
            break;
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 3) throw new Error(`${real}: ${(err as Error).message}`);
          }
          const state = await probe(real);
          if (state === 'live') throw new PathTaken(`${real} is in use by a running arbiter`);
          if (state === 'other') throw new Error(`${real} exists and is not a socket; not replacing it`);
          if (state === 'stale') {
            try {
              unlinkSync(real);
            } catch {
              /* raced with another cleaner */
            }
          }
        }
        unlinkSync(temp);
      }
      claimed = true;
    },
    close() {
      server.close();
      if (claimed && owns()) {
        try {
          unlinkSync(real);
        } catch {
          /* already gone */
        }
      }
      try {
        unlinkSync(temp);
      } catch {
        /* linked and removed, or renamed */
      }
    },
  };
}
