/** The `user` and `group` settings as the ids a worker process runs with. */
import { chownSync, closeSync, openSync, readFileSync } from 'node:fs';

/** `user`/`group` as names or numbers → spawn's uid/gid, read from /etc/passwd and /etc/group. */
export function resolveIds(user: string | null, group: string | null): { uid?: number; gid?: number } {
  const out: { uid?: number; gid?: number } = {};
  const lookup = (file: string, name: string, idField: number): { id: number; gid?: number } | null => {
    if (/^\d+$/.test(name)) return { id: Number(name) };
    try {
      for (const line of readFileSync(file, 'utf8').split('\n')) {
        const f = line.split(':');
        if (f[0] === name) return { id: Number(f[idField]), gid: Number(f[3]) };
      }
    } catch {
      /* no such file: names cannot be resolved */
    }
    return null;
  };
  if (user) {
    const u = lookup('/etc/passwd', user, 2);
    if (!u) throw new Error(`unknown user "${user}"`);
    out.uid = u.id;
    if (u.gid !== undefined && !group) out.gid = u.gid;
  }
  if (group) {
    const g = lookup('/etc/group', group, 2);
    if (!g) throw new Error(`unknown group "${group}"`);
    out.gid = g.id;
  }
  return out;
}

export interface Ids {
  uid?: number;
  gid?: number;
}

/**
 * Hand a path the workers must write or connect to (a log file, a unix socket) to the user
 * and group they run as, as Gunicorn does. The master opens or creates it first, while it
 * still may, so an unprivileged worker is never refused its own log. Nothing to do without
 * `user`/`group`, or when the master itself is not privileged to change owners.
 */
export function handTo(ids: Ids, file: string, create: boolean): void {
  if (ids.uid === undefined && ids.gid === undefined) return;
  try {
    if (create) closeSync(openSync(file, 'a', 0o644));
    chownSync(file, ids.uid ?? -1, ids.gid ?? -1);
  } catch {
    /* not ours to change (no privilege, or the path is elsewhere): the worker reports what it meets */
  }
}
