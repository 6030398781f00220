/**
 * Sizing from the container (SPEC §7): how many CPUs this process may really use, and its
 * memory limit. Everything is read through `fsRoot` so tests can point at a fixture tree;
 * the cgroup hierarchies are located through /proc/<pid>/cgroup and /proc/<pid>/mountinfo
 * rather than guessed paths, because distributions, container runtimes and hybrid hosts
 * mount them in different places.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface CpuFinding {
  /** Integer >= 1: the tightest limit rounded up. */
  cpus: number;
  /** The tightest limit before rounding, e.g. 1.5 for a 150000/100000 quota. */
  exact: number;
  /** Where the tightest limit came from, for the startup log. */
  source: string;
}

export interface MemoryFinding {
  /** The tightest memory limit in bytes, or null when there is none. */
  bytes: number | null;
  source: string;
}

interface Mount {
  root: string;
  mountPoint: string;
  fsType: string;
  superOptions: string[];
}

interface CgroupEntry {
  hierarchyId: string;
  controllers: string[];
  path: string;
}

/** One hierarchy's directories for this process, leaf first, ending at the mount point. */
interface Chain {
  version: 1 | 2;
  dirs: string[];
}

interface Limit {
  value: number;
  source: string;
}

// ---------------------------------------------------------------------------------------
// Parsing

/** The kernel escapes space, tab, newline and backslash in mountinfo paths as \ooo. */
function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Parses /proc/<pid>/mountinfo, keeping only cgroup and cgroup2 mounts. */
export function parseMountinfo(text: string): Mount[] {
  const mounts: Mount[] = [];
  for (const line of text.split('\n')) {
    const fields = line.trim().split(' ');
    // The optional fields (shared:N, master:N, ...) vary in number; "-" ends them.
    const sep = fields.indexOf('-', 6);
    if (sep < 0 || fields.length < sep + 4) continue;
    const fsType = fields[sep + 1]!;
    if (fsType !== 'cgroup' && fsType !== 'cgroup2') continue;
    mounts.push({
      root: unescapeMountPath(fields[3]!),
      mountPoint: unescapeMountPath(fields[4]!),
      fsType,
      superOptions: fields[sep + 3]!.split(','),
    });
  }
  return mounts;
}

/** Parses /proc/<pid>/cgroup: `hierarchy-id:controller-list:path` per line. */
export function parseProcCgroup(text: string): CgroupEntry[] {
  const entries: CgroupEntry[] = [];
  for (const line of text.split('\n')) {
    // The path is last and may itself contain colons, so only the first two split.
    const a = line.indexOf(':');
    const b = a < 0 ? -1 : line.indexOf(':', a + 1);
    if (b < 0) continue;
    const p = line.slice(b + 1).trim();
    if (!p.startsWith('/')) continue;
    entries.push({
      hierarchyId: line.slice(0, a),
      controllers: line.slice(a + 1, b).split(',').filter(Boolean),
      path: p,
    });
  }
  return entries;
}

/**
 * Counts the CPUs in a kernel cpu list such as `0-3,6,8-9`. Returns null for an empty or
 * malformed list, since an empty cpuset in cgroup v2 means "inherit", not "no CPUs".
 */
export function parseCpuList(text: string): number | null {
  const s = text.trim();
  if (s === '') return null;
  const cpus = new Set<number>();
  for (const part of s.split(',')) {
    const m = /^\s*(\d+)(?:-(\d+))?\s*$/.exec(part);
    if (!m) return null;
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    // Bound the loop: no machine has a million CPUs, a corrupt file might claim to.
    if (hi < lo || hi - lo > 1 << 20) return null;
    for (let c = lo; c <= hi; c++) cpus.add(c);
  }
  return cpus.size;
}

// ---------------------------------------------------------------------------------------
// Locating the hierarchies

function readText(fsRoot: string, file: string): string | null {
  try {
    return readFileSync(path.join(fsRoot, file), 'utf8').trim();
  } catch {
    return null;
  }
}

function isUnder(p: string, root: string): boolean {
  return root === '/' || p === root || p.startsWith(root.endsWith('/') ? root : root + '/');
}

/**
 * Maps a cgroup path onto a mount and lists the directories from the process's cgroup up
 * to the mount point: any of them may carry the limit (a pod's quota sits on the parent of
 * the container's cgroup), and ancestors above the mount root are invisible to us anyway.
 */
function chainOnMounts(cgPath: string, mounts: Mount[]): string[] | null {
  let best: Mount | undefined;
  for (const m of mounts) {
    if (isUnder(cgPath, m.root) && (!best || m.root.length > best.root.length)) best = m;
  }
  if (!best) {
    // The mount root is not an ancestor of our cgroup (e.g. a cgroup namespace created
    // after the mount, which shows up as `/..` roots). The mount point is the closest
    // view of our limits we have, so use it alone rather than nothing.
    const first = mounts[0];
    return first ? [first.mountPoint] : null;
  }
  const rel = best.root === '/' ? cgPath : cgPath.slice(best.root.length);
  const segs = rel.split('/').filter(Boolean);
  if (segs.includes('..')) return [best.mountPoint];
  const dirs: string[] = [];
  for (let i = segs.length; i >= 0; i--) {
    dirs.push(path.posix.join(best.mountPoint, ...segs.slice(0, i)));
  }
  return dirs;
}

interface CgroupView {
  fsRoot: string;
  mounts: Mount[];
  entries: CgroupEntry[];
}

function readView(fsRoot: string, pid: number | string): CgroupView {
  return {
    fsRoot,
    mounts: parseMountinfo(readText(fsRoot, `/proc/${pid}/mountinfo`) ?? ''),
    entries: parseProcCgroup(readText(fsRoot, `/proc/${pid}/cgroup`) ?? ''),
  };
}

/**
 * The hierarchies that carry `controller` for this process. A controller is attached to at
 * most one hierarchy, so on hybrid hosts (v1 controllers plus a controller-less v2 mount)
 * this yields just the v1 one; the v2 mount is only trusted for a controller it lists in
 * cgroup.controllers.
 */
function chainsFor(view: CgroupView, controller: string): Chain[] {
  const chains: Chain[] = [];

  const v1Entry = view.entries.find((e) => e.hierarchyId !== '0' && e.controllers.includes(controller));
  if (v1Entry) {
    const mounts = view.mounts.filter((m) => m.fsType === 'cgroup' && m.superOptions.includes(controller));
    const dirs = chainOnMounts(v1Entry.path, mounts);
    if (dirs) chains.push({ version: 1, dirs });
  }

  const v2Entry = view.entries.find((e) => e.hierarchyId === '0' && e.controllers.length === 0);
  if (v2Entry) {
    const mounts = view.mounts.filter((m) => m.fsType === 'cgroup2');
    const dirs = chainOnMounts(v2Entry.path, mounts);
    if (dirs) {
      const top = dirs[dirs.length - 1]!;
      const available = readText(view.fsRoot, path.posix.join(top, 'cgroup.controllers'));
      // Unreadable cgroup.controllers: fall back to whatever limit files exist.
      if (available === null || available.split(/\s+/).includes(controller)) {
        chains.push({ version: 2, dirs });
      }
    }
  }
  return chains;
}

/** Keeps the smallest limit; on a tie the first found (the one nearest the leaf) stays. */
function tighter(a: Limit | null, b: Limit | null): Limit | null {
  if (!b) return a;
  if (!a) return b;
  return b.value < a.value ? b : a;
}

function cpuQuotaAt(fsRoot: string, chain: Chain, dir: string): Limit | null {
  if (chain.version === 2) {
    const raw = readText(fsRoot, path.posix.join(dir, 'cpu.max'));
    if (raw === null) return null;
    const [quotaText, periodText = '100000'] = raw.split(/\s+/);
    if (quotaText === 'max') return null;
    const quota = Number(quotaText);
    const period = Number(periodText);
    if (!(quota > 0) || !(period > 0)) return null;
    return { value: quota / period, source: `cgroup v2 cpu.max ${quotaText} ${periodText} at ${dir}` };
  }
  const quotaText = readText(fsRoot, path.posix.join(dir, 'cpu.cfs_quota_us'));
  const periodText = readText(fsRoot, path.posix.join(dir, 'cpu.cfs_period_us'));
  if (quotaText === null || periodText === null) return null;
  const quota = Number(quotaText);
  const period = Number(periodText);
  // -1 means unlimited.
  if (!(quota > 0) || !(period > 0)) return null;
  return {
    value: quota / period,
    source: `cgroup v1 cpu.cfs_quota_us ${quotaText} / cpu.cfs_period_us ${periodText} at ${dir}`,
  };
}

function cpusetAt(fsRoot: string, chain: Chain, dir: string): Limit | null {
  // The effective list is what the kernel actually grants (the configured list narrowed
  // by ancestors and hot-unplug); the configured one is a fallback for older kernels.
  const names =
    chain.version === 2 ? ['cpuset.cpus.effective', 'cpuset.cpus'] : ['cpuset.effective_cpus', 'cpuset.cpus'];
  for (const name of names) {
    const raw = readText(fsRoot, path.posix.join(dir, name));
    if (raw === null) continue;
    const count = parseCpuList(raw);
    if (count === null || count < 1) continue;
    return { value: count, source: `cgroup v${chain.version} ${name} ${raw} at ${dir}` };
  }
  return null;
}

function describeCpus(n: number): string {
  const rounded = Math.round(n * 100) / 100;
  return `${rounded} CPU${rounded === 1 ? '' : 's'}`;
}

// ---------------------------------------------------------------------------------------
// Public API

/**
 * The CPUs this process may really use: the minimum of the cgroup CPU quota (v1 or v2, any
 * ancestor up to the mount root), the cpuset, and `availableParallelism` (scheduler
 * affinity), rounded up, at least 1. Never throws.
 */
export function detectCpus(
  fsRoot = '/',
  pid: number | string = 'self',
  availableParallelism: number = os.availableParallelism(),
): CpuFinding {
  const affinity = Number.isFinite(availableParallelism) && availableParallelism >= 1
    ? Math.floor(availableParallelism)
    : 1;
  let best: Limit | null = null;
  try {
    const view = readView(fsRoot, pid);
    for (const chain of chainsFor(view, 'cpu')) {
      for (const dir of chain.dirs) best = tighter(best, cpuQuotaAt(fsRoot, chain, dir));
    }
    for (const chain of chainsFor(view, 'cpuset')) {
      for (const dir of chain.dirs) best = tighter(best, cpusetAt(fsRoot, chain, dir));
    }
  } catch {
    // Belt and braces: a malformed tree must never stop the arbiter from booting.
  }
  if (!best) {
    return { cpus: affinity, exact: affinity, source: `os.availableParallelism() ${affinity} (no cgroup CPU limit found)` };
  }
  // Ties go to the cgroup limit: it explains more in a container's startup log.
  if (affinity < best.value) best = { value: affinity, source: `os.availableParallelism() ${affinity}` };
  return { cpus: Math.max(1, Math.ceil(best.value)), exact: best.value, source: best.source };
}

/**
 * Treated as "no limit": v1 reports unlimited as LONG_MAX rounded down to a page
 * (9223372036854771712 with 4 KiB pages, other values with other page sizes); anything
 * beyond 2^53 bytes (8 PiB) is not a limit any machine can hit.
 */
function isUnlimitedBytes(n: number): boolean {
  return n > Number.MAX_SAFE_INTEGER;
}

/** The tightest cgroup memory limit of this process or any ancestor up to the mount root. */
export function detectMemoryLimit(fsRoot = '/', pid: number | string = 'self'): MemoryFinding {
  let best: Limit | null = null;
  try {
    const view = readView(fsRoot, pid);
    for (const chain of chainsFor(view, 'memory')) {
      const file = chain.version === 2 ? 'memory.max' : 'memory.limit_in_bytes';
      for (const dir of chain.dirs) {
        const raw = readText(fsRoot, path.posix.join(dir, file));
        if (raw === null || raw === 'max' || !/^\d+$/.test(raw)) continue;
        const n = Number(raw);
        if (isUnlimitedBytes(n)) continue;
        best = tighter(best, { value: n, source: `cgroup v${chain.version} ${file} ${raw} at ${dir}` });
      }
    }
  } catch {
    // Same as detectCpus: report "none" rather than fail.
  }
  return best ? { bytes: best.value, source: best.source } : { bytes: null, source: 'no cgroup memory limit found' };
}

export type WorkersSpec = number | 'auto' | ((cpus: number) => number);

/** Turns the `workers` setting into a count plus the sentence the startup log prints. */
export function resolveWorkers(spec: WorkersSpec, finding: CpuFinding): { workers: number; why: string } {
  const plural = (n: number) => `${n} worker${n === 1 ? '' : 's'}`;
  const valid = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 1;
  if (spec === 'auto') {
    return {
      workers: finding.cpus,
      why: `${plural(finding.cpus)}: auto from ${finding.source} (${describeCpus(finding.exact)})`,
    };
  }
  if (typeof spec === 'number') {
    if (!valid(spec)) throw new Error(`workers must be an integer >= 1, 'auto' or a function of the CPU count; got ${spec}`);
    return { workers: spec, why: `${plural(spec)}: set in configuration` };
  }
  if (typeof spec === 'function') {
    let n: unknown;
    try {
      n = spec(finding.cpus);
    } catch (err) {
      throw new Error(`workers function threw for ${finding.cpus} CPUs: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (!valid(n)) {
      throw new Error(`workers function returned ${typeof n === 'string' ? JSON.stringify(n) : String(n)} for ${finding.cpus} CPUs; expected an integer >= 1`);
    }
    return {
      workers: n,
      why: `${plural(n)}: workers(${finding.cpus}) from ${finding.source} (${describeCpus(finding.exact)})`,
    };
  }
  throw new Error(`workers must be an integer >= 1, 'auto' or a function of the CPU count; got ${JSON.stringify(spec)}`);
}
