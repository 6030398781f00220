// Process-tree CPU accounting from /proc, for "requests per server CPU-second".
//
// treeCpuTicks(root) = Σ over the root and every live descendant of
//   utime + stime + cutime + cstime   (fields 14-17 of /proc/<pid>/stat, in clock ticks).
// A live process's cutime/cstime only include children it has already reaped (dead ones), so
// nothing is counted twice, and a child that exits during the window moves its CPU into its
// parent's cutime/cstime instead of vanishing: the sum only grows, and the delta between two
// samples is the CPU the whole tree burned in between. (A descendant reaped by something
// outside the tree, e.g. re-parented to init, is the one case that can be lost; none of the
// servers here do that.) /proc/<pid>/stat covers all threads of the process.
import { readFileSync, readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

let TICKS = 100;
try {
  TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
} catch {}
export const CLK_TCK = TICKS;

/** Parse /proc/<pid>/stat; null when the process is gone. */
export function readStat(pid) {
  let text;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // comm (field 2) may contain spaces and parentheses: split after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state), so field N is rest[N - 3].
  return {
    pid,
    state: rest[0],
    ppid: Number(rest[1]),
    utime: Number(rest[11]),
    stime: Number(rest[12]),
    cutime: Number(rest[13]),
    cstime: Number(rest[14]),
  };
}

/** All live processes as a ppid → [pid] map (one scan of /proc). */
function childrenMap() {
  const map = new Map();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const st = readStat(Number(name));
    if (!st) continue;
    let list = map.get(st.ppid);
    if (!list) map.set(st.ppid, (list = []));
    list.push(st.pid);
  }
  return map;
}

/** pids of root's live descendants (not including root). */
export function descendants(root) {
  const map = childrenMap();
  const out = [];
  const queue = [root];
  while (queue.length) {
    const p = queue.shift();
    for (const c of map.get(p) ?? []) {
      out.push(c);
      queue.push(c);
    }
  }
  return out;
}

/** One sample of the tree: total ticks and the pids seen. */
export function sampleTree(root) {
  const pids = [root, ...descendants(root)];
  let ticks = 0;
  const seen = [];
  const per = new Map();
  for (const pid of pids) {
    const st = readStat(pid);
    if (!st) continue;
    // (a zombie's own times are final but not yet in its parent's c*time: count them too)
    const t = st.utime + st.stime + st.cutime + st.cstime;
    ticks += t;
    per.set(pid, t);
    if (st.state !== 'Z') seen.push(pid);
  }
  return { ticks, pids: seen, per, at: process.hrtime.bigint() };
}

/** CPU seconds between two samples. */
export function cpuSeconds(before, after) {
  return (after.ticks - before.ticks) / CLK_TCK;
}

/** This process's reaped-children CPU (ticks): used to measure wrk's own CPU. */
export function selfChildrenTicks() {
  const st = readStat(process.pid);
  return st ? st.cutime + st.cstime : 0;
}

export function isAlive(pid) {
  const st = readStat(pid);
  return !!st && st.state !== 'Z';
}

/** Busy CPU ticks of the whole machine (all CPUs) from /proc/stat: everything but idle and iowait. */
export function machineBusyTicks() {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0];
  const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
  return user + nice + system + irq + softirq + (steal || 0);
}

/** CPU seconds per process between two samples (processes seen in the second one). */
export function perProcessSeconds(before, after) {
  const out = [];
  for (const [pid, t] of after.per) {
    let cmd = '';
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
    } catch {}
    out.push({ pid, cpuSeconds: (t - (before.per.get(pid) ?? 0)) / CLK_TCK, cmd: cmd.slice(0, 120), new: !before.per.has(pid) });
  }
  return out.sort((a, b) => b.cpuSeconds - a.cpuSeconds);
}
