/** The `user` and `group` settings as the ids a worker process runs with. */
import { readFileSync } from 'node:fs';

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
