import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
  detectCpus,
  detectMemoryLimit,
  parseCpuList,
  parseMountinfo,
  parseProcCgroup,
  resolveWorkers,
  type CpuFinding,
} from '../src/cpus.js';
import { parseBytes } from '../src/core/units.js';

// Fixture trees are built per test from a table of files so the repo carries no
// sys/fs/cgroup copies; each is a directory that stands in for `/`.
const made: string[] = [];
after(() => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
});

function tree(files: Record<string, string>): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'arbiter-cgroups-'));
  made.push(root);
  for (const [rel, content] of Object.entries(files)) {
    const file = path.join(root, rel);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, content.endsWith('\n') ? content : content + '\n');
  }
  return root;
}

const lines = (...l: string[]) => l.join('\n') + '\n';

// Real mountinfo lines, as a systemd host and a Docker container print them.
const MI_TMPFS = '25 21 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755';
const MI_V2_ROOT = '35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate';
const MI_V2_UNIFIED =
  '26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate';
const MI_V1_CPU =
  '40 30 0:35 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,cpu,cpuacct';
const MI_V1_CPUSET =
  '41 30 0:36 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,cpuset';
const MI_V1_MEMORY =
  '42 30 0:37 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,memory';
const MI_V1_SYSTEMD =
  '27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd';
const MI_ROOTFS = '22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw';

const V1_MOUNTINFO = lines(MI_ROOTFS, MI_TMPFS, MI_V1_SYSTEMD, MI_V1_CPU, MI_V1_CPUSET, MI_V1_MEMORY);
const HYBRID_MOUNTINFO = lines(MI_ROOTFS, MI_TMPFS, MI_V2_UNIFIED, MI_V1_SYSTEMD, MI_V1_CPU, MI_V1_CPUSET, MI_V1_MEMORY);
const V2_MOUNTINFO = lines(MI_ROOTFS, MI_V2_ROOT);

const V1_CGROUP = lines(
  '12:memory:/user.slice/app',
  '4:cpu,cpuacct:/user.slice/app',
  '3:cpuset:/',
  '1:name=systemd:/user.slice/app',
);

function v1(files: Record<string, string>): string {
  return tree({
    'proc/self/cgroup': V1_CGROUP,
    'proc/self/mountinfo': V1_MOUNTINFO,
    'sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '-1',
    'sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000',
    'sys/fs/cgroup/cpuset/cpuset.cpus': '0-15',
    'sys/fs/cgroup/cpuset/cpuset.effective_cpus': '0-15',
    ...files,
  });
}

function v2(files: Record<string, string>, cgroupPath = '/system.slice/app.service'): string {
  return tree({
    'proc/self/cgroup': `0::${cgroupPath}`,
    'proc/self/mountinfo': V2_MOUNTINFO,
    'sys/fs/cgroup/cgroup.controllers': 'cpuset cpu io memory hugetlb pids rdma misc',
    'sys/fs/cgroup/cpuset.cpus.effective': '0-15',
    ...files,
  });
}

// ---------------------------------------------------------------------------------------
// detectCpus

test('cgroup v1 quota 150000 / period 100000 gives 2 CPUs (exact 1.5)', () => {
  const root = v1({
    'sys/fs/cgroup/cpu,cpuacct/user.slice/app/cpu.cfs_quota_us': '150000',
    'sys/fs/cgroup/cpu,cpuacct/user.slice/app/cpu.cfs_period_us': '100000',
  });
  const f = detectCpus(root, 'self', 16);
  assert.equal(f.cpus, 2);
  assert.equal(f.exact, 1.5);
  assert.equal(
    f.source,
    'cgroup v1 cpu.cfs_quota_us 150000 / cpu.cfs_period_us 100000 at /sys/fs/cgroup/cpu,cpuacct/user.slice/app',
  );
});

test('cgroup v2 cpu.max 200000 100000 gives 2 CPUs', () => {
  const root = v2({ 'sys/fs/cgroup/system.slice/app.service/cpu.max': '200000 100000' });
  const f = detectCpus(root, 'self', 16);
  assert.deepEqual(f, {
    cpus: 2,
    exact: 2,
    source: 'cgroup v2 cpu.max 200000 100000 at /sys/fs/cgroup/system.slice/app.service',
  });
});

test('cgroup v2 fractional quota 1.5 rounds up to 2', () => {
  const root = v2({ 'sys/fs/cgroup/system.slice/app.service/cpu.max': '150000 100000' });
  const f = detectCpus(root, 'self', 16);
  assert.equal(f.cpus, 2);
  assert.equal(f.exact, 1.5);
});

test('a quota below one CPU still gives 1 worker (v1 50000/100000, v2 25000 100000)', () => {
  const a = detectCpus(
    v1({
      'sys/fs/cgroup/cpu,cpuacct/user.slice/app/cpu.cfs_quota_us': '50000',
      'sys/fs/cgroup/cpu,cpuacct/user.slice/app/cpu.cfs_period_us': '100000',
    }),
    'self',
    16,
  );
  assert.equal(a.cpus, 1);
  assert.equal(a.exact, 0.5);
  const b = detectCpus(v2({ 'sys/fs/cgroup/system.slice/app.service/cpu.max': '25000 100000' }), 'self', 16);
  assert.equal(b.cpus, 1);
  assert.equal(b.exact, 0.25);
});

test('hybrid host: v1 cpu controller is used, controller-less v2 unified mount is ignored', () => {
  const root = tree({
    'proc/self/cgroup': lines(
      '12:memory:/user.slice/app',
      '4:cpu,cpuacct:/user.slice/app',
      '3:cpuset:/',
      '1:name=systemd:/user.slice/app',
      '0::/user.slice/app',
    ),
    'proc/self/mountinfo': HYBRID_MOUNTINFO,
    'sys/fs/cgroup/unified/cgroup.controllers': '',
    // Would be wrong to read: the unified hierarchy has no cpu controller on this host.
    'sys/fs/cgroup/unified/user.slice/app/cpu.max': '50000 100000',
    'sys/fs/cgroup/cpu,cpuacct/user.slice/app/cpu.cfs_quota_us': '300000',
    'sys/fs/cgroup/cpu,cpuacct/user.slice/app/cpu.cfs_period_us': '100000',
    'sys/fs/cgroup/cpuset/cpuset.cpus': '0-7',
  });
  const f = detectCpus(root, 'self', 16);
  assert.equal(f.cpus, 3);
  assert.match(f.source, /^cgroup v1 cpu\.cfs_quota_us 300000 \/ cpu\.cfs_period_us 100000 at /);
});

test('no limit anywhere falls back to availableParallelism', () => {
  const root = v2({
    'sys/fs/cgroup/system.slice/app.service/cpu.max': 'max 100000',
    'sys/fs/cgroup/system.slice/cpu.max': 'max 100000',
  });
  const f = detectCpus(root, 'self', 3);
  // cpuset 0-15 is looser than affinity 3.
  assert.deepEqual(f, { cpus: 3, exact: 3, source: 'os.availableParallelism() 3' });

  const v1root = v1({});
  const g = detectCpus(v1root, 'self', 4);
  assert.equal(g.cpus, 4);
  assert.match(g.source, /^os\.availableParallelism\(\) 4/);
});

test('nothing readable (no /proc, garbage files) never throws and uses availableParallelism', () => {
  const empty = tree({ 'etc/hostname': 'x' });
  assert.deepEqual(detectCpus(empty, 'self', 6), {
    cpus: 6,
    exact: 6,
    source: 'os.availableParallelism() 6 (no cgroup CPU limit found)',
  });
  const garbage = tree({
    'proc/self/cgroup': 'not a cgroup file\n:::\n0::relative\n',
    'proc/self/mountinfo': 'nonsense\n1 2 3\n',
  });
  assert.equal(detectCpus(garbage, 'self', 2).cpus, 2);
  const badValues = v2({
    'sys/fs/cgroup/system.slice/app.service/cpu.max': 'lots 0',
    'sys/fs/cgroup/cpuset.cpus.effective': '3-1,x',
  });
  assert.equal(detectCpus(badValues, 'self', 5).cpus, 5);
  assert.equal(detectCpus('/definitely/not/here', 'self', 2).cpus, 2);
});

test('a cpuset narrower than the quota wins (cpuset 0 vs 4 CPUs of quota)', () => {
  const a = detectCpus(
    v2({
      'sys/fs/cgroup/system.slice/app.service/cpu.max': '400000 100000',
      'sys/fs/cgroup/system.slice/app.service/cpuset.cpus.effective': '0',
    }),
    'self',
    16,
  );
  assert.equal(a.cpus, 1);
  assert.equal(a.source, 'cgroup v2 cpuset.cpus.effective 0 at /sys/fs/cgroup/system.slice/app.service');

  const b = detectCpus(
    v1({
      'proc/self/cgroup': lines('4:cpu,cpuacct:/user.slice/app', '3:cpuset:/app'),
      'sys/fs/cgroup/cpu,cpuacct/user.slice/app/cpu.cfs_quota_us': '400000',
      'sys/fs/cgroup/cpu,cpuacct/user.slice/app/cpu.cfs_period_us': '100000',
      'sys/fs/cgroup/cpuset/app/cpuset.cpus': '0',
    }),
    'self',
    16,
  );
  assert.equal(b.cpus, 1);
  assert.equal(b.source, 'cgroup v1 cpuset.cpus 0 at /sys/fs/cgroup/cpuset/app');
});

test('cgroup v2 cpuset falls back to cpuset.cpus when cpuset.cpus.effective is missing', () => {
  const root = tree({
    'proc/self/cgroup': '0::/app',
    'proc/self/mountinfo': V2_MOUNTINFO,
    'sys/fs/cgroup/cgroup.controllers': 'cpuset cpu memory',
    'sys/fs/cgroup/app/cpuset.cpus': '0-2,6',
  });
  const f = detectCpus(root, 'self', 16);
  assert.equal(f.cpus, 4);
  assert.equal(f.source, 'cgroup v2 cpuset.cpus 0-2,6 at /sys/fs/cgroup/app');
});

test('nested limits: a parent tighter than the leaf wins (v2 and v1)', () => {
  const a = detectCpus(
    v2(
      {
        'sys/fs/cgroup/kubepods.slice/cpu.max': 'max 100000',
        'sys/fs/cgroup/kubepods.slice/pod1/cpu.max': '100000 100000',
        'sys/fs/cgroup/kubepods.slice/pod1/ctr/cpu.max': '300000 100000',
      },
      '/kubepods.slice/pod1/ctr',
    ),
    'self',
    16,
  );
  assert.equal(a.cpus, 1);
  assert.equal(a.source, 'cgroup v2 cpu.max 100000 100000 at /sys/fs/cgroup/kubepods.slice/pod1');

  const b = detectCpus(
    v1({
      'sys/fs/cgroup/cpu,cpuacct/user.slice/cpu.cfs_quota_us': '250000',
      'sys/fs/cgroup/cpu,cpuacct/user.slice/cpu.cfs_period_us': '100000',
      'sys/fs/cgroup/cpu,cpuacct/user.slice/app/cpu.cfs_quota_us': '-1',
      'sys/fs/cgroup/cpu,cpuacct/user.slice/app/cpu.cfs_period_us': '100000',
    }),
    'self',
    16,
  );
  assert.equal(b.cpus, 3);
  assert.equal(b.exact, 2.5);
  assert.match(b.source, / at \/sys\/fs\/cgroup\/cpu,cpuacct\/user\.slice$/);
});

test('container mountinfo whose root is the cgroup itself maps onto the mount point (v2)', () => {
  const root = tree({
    'proc/self/cgroup': '0::/docker/abc123',
    'proc/self/mountinfo': lines(
      '600 500 0:52 / / rw,relatime master:300 - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w',
      '610 600 0:30 /docker/abc123 /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw,nsdelegate',
    ),
    'sys/fs/cgroup/cgroup.controllers': 'cpuset cpu io memory pids',
    'sys/fs/cgroup/cpu.max': '150000 100000',
    'sys/fs/cgroup/memory.max': '268435456',
  });
  const f = detectCpus(root, 'self', 16);
  assert.deepEqual(f, { cpus: 2, exact: 1.5, source: 'cgroup v2 cpu.max 150000 100000 at /sys/fs/cgroup' });
  assert.deepEqual(detectMemoryLimit(root), {
    bytes: 268435456,
    source: 'cgroup v2 memory.max 268435456 at /sys/fs/cgroup',
  });
});

test('container mountinfo (v1): child cgroup of the mount root maps below the mount point', () => {
  const root = tree({
    'proc/self/cgroup': lines('5:cpu,cpuacct:/docker/abc123/worker', '3:cpuset:/docker/abc123'),
    'proc/self/mountinfo': lines(
      '600 500 0:52 / / rw,relatime - overlay overlay rw',
      '620 610 0:35 /docker/abc123 /sys/fs/cgroup/cpu,cpuacct ro,nosuid,nodev,noexec,relatime - cgroup cgroup rw,cpu,cpuacct',
      '621 610 0:36 /docker/abc123 /sys/fs/cgroup/cpuset ro,nosuid,nodev,noexec,relatime - cgroup cgroup rw,cpuset',
    ),
    'sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '200000',
    'sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000',
    'sys/fs/cgroup/cpu,cpuacct/worker/cpu.cfs_quota_us': '100000',
    'sys/fs/cgroup/cpu,cpuacct/worker/cpu.cfs_period_us': '100000',
    'sys/fs/cgroup/cpuset/cpuset.cpus': '0-3',
  });
  const f = detectCpus(root, 'self', 16);
  assert.equal(f.cpus, 1);
  assert.equal(f.source, 'cgroup v1 cpu.cfs_quota_us 100000 / cpu.cfs_period_us 100000 at /sys/fs/cgroup/cpu,cpuacct/worker');
  // With the child unlimited, the container's own quota at the mount point applies.
  fs.writeFileSync(path.join(root, 'sys/fs/cgroup/cpu,cpuacct/worker/cpu.cfs_quota_us'), '-1\n');
  const g = detectCpus(root, 'self', 16);
  assert.equal(g.cpus, 2);
  assert.equal(g.source, 'cgroup v1 cpu.cfs_quota_us 200000 / cpu.cfs_period_us 100000 at /sys/fs/cgroup/cpu,cpuacct');
});

test('the pid argument reads /proc/<pid>, and mountinfo escapes (\\040) are decoded', () => {
  const root = tree({
    'proc/4242/cgroup': '0::/app',
    'proc/4242/mountinfo': lines('35 24 0:30 / /cg\\040root rw,relatime shared:9 - cgroup2 cgroup2 rw'),
    'cg root/cgroup.controllers': 'cpu',
    'cg root/app/cpu.max': '100000 100000',
  });
  const f = detectCpus(root, 4242, 16);
  assert.equal(f.cpus, 1);
  assert.equal(f.source, 'cgroup v2 cpu.max 100000 100000 at /cg root/app');
});

test('availableParallelism tighter than the quota wins; ties keep the cgroup source', () => {
  const root = v2({ 'sys/fs/cgroup/system.slice/app.service/cpu.max': '400000 100000' });
  assert.deepEqual(detectCpus(root, 'self', 2), { cpus: 2, exact: 2, source: 'os.availableParallelism() 2' });
  assert.match(detectCpus(root, 'self', 4).source, /^cgroup v2 cpu\.max 400000 100000/);
});

test('on this machine: 1 <= cpus <= os.availableParallelism(), and parsing matches /proc', () => {
  const f = detectCpus();
  assert.ok(Number.isInteger(f.cpus));
  assert.ok(f.cpus >= 1 && f.cpus <= os.availableParallelism(), JSON.stringify(f));
  assert.ok(f.exact > 0 && f.exact <= f.cpus);
  assert.ok(f.source.length > 0);

  const m = detectMemoryLimit();
  assert.ok(m.bytes === null || (Number.isSafeInteger(m.bytes) && m.bytes > 0), JSON.stringify(m));

  if (process.platform === 'linux') {
    const entries = parseProcCgroup(fs.readFileSync('/proc/self/cgroup', 'utf8'));
    assert.ok(entries.length > 0);
    for (const e of entries) assert.ok(e.path.startsWith('/'));
    const mounts = parseMountinfo(fs.readFileSync('/proc/self/mountinfo', 'utf8'));
    for (const mt of mounts) {
      assert.ok(mt.fsType === 'cgroup' || mt.fsType === 'cgroup2');
      assert.ok(mt.mountPoint.startsWith('/') && mt.root.startsWith('/'));
    }
  }
});

// ---------------------------------------------------------------------------------------
// detectMemoryLimit

test('memory limit, cgroup v2: tightest ancestor wins, `max` means none', () => {
  const root = v2(
    {
      'sys/fs/cgroup/kubepods.slice/memory.max': 'max',
      'sys/fs/cgroup/kubepods.slice/pod1/memory.max': '536870912',
      'sys/fs/cgroup/kubepods.slice/pod1/ctr/memory.max': '1073741824',
    },
    '/kubepods.slice/pod1/ctr',
  );
  assert.deepEqual(detectMemoryLimit(root), {
    bytes: 536870912,
    source: 'cgroup v2 memory.max 536870912 at /sys/fs/cgroup/kubepods.slice/pod1',
  });
  const none = v2({ 'sys/fs/cgroup/system.slice/app.service/memory.max': 'max' });
  assert.deepEqual(detectMemoryLimit(none), { bytes: null, source: 'no cgroup memory limit found' });
});

test('memory limit, cgroup v1: huge "unlimited" values are none, real limits are found', () => {
  const root = v1({
    'sys/fs/cgroup/memory/memory.limit_in_bytes': '9223372036854771712',
    'sys/fs/cgroup/memory/user.slice/memory.limit_in_bytes': '9223372036854771712',
    'sys/fs/cgroup/memory/user.slice/app/memory.limit_in_bytes': '268435456',
  });
  assert.deepEqual(detectMemoryLimit(root), {
    bytes: 268435456,
    source: 'cgroup v1 memory.limit_in_bytes 268435456 at /sys/fs/cgroup/memory/user.slice/app',
  });
  const unlimited = v1({
    'sys/fs/cgroup/memory/memory.limit_in_bytes': '9223372036854771712',
    'sys/fs/cgroup/memory/user.slice/app/memory.limit_in_bytes': '9223372036854710272',
  });
  assert.equal(detectMemoryLimit(unlimited).bytes, null);
  assert.deepEqual(detectMemoryLimit(tree({ x: '' })), { bytes: null, source: 'no cgroup memory limit found' });
});

// ---------------------------------------------------------------------------------------
// resolveWorkers

const finding: CpuFinding = {
  cpus: 2,
  exact: 1.5,
  source: 'cgroup v1 cpu.cfs_quota_us 150000 / cpu.cfs_period_us 100000',
};

test('resolveWorkers: auto, a number and a function', () => {
  assert.deepEqual(resolveWorkers('auto', finding), {
    workers: 2,
    why: '2 workers: auto from cgroup v1 cpu.cfs_quota_us 150000 / cpu.cfs_period_us 100000 (1.5 CPUs)',
  });
  assert.deepEqual(resolveWorkers('auto', { cpus: 1, exact: 1, source: 'cpuset 0' }), {
    workers: 1,
    why: '1 worker: auto from cpuset 0 (1 CPU)',
  });
  assert.deepEqual(resolveWorkers(4, finding), { workers: 4, why: '4 workers: set in configuration' });
  const r = resolveWorkers((cpus) => 2 * cpus + 1, finding);
  assert.equal(r.workers, 5);
  assert.equal(r.why, '5 workers: workers(2) from cgroup v1 cpu.cfs_quota_us 150000 / cpu.cfs_period_us 100000 (1.5 CPUs)');
});

test('resolveWorkers: a function returning 0, 1.5 or throwing is a clear one-line error', () => {
  assert.throws(() => resolveWorkers(() => 0, finding), {
    message: 'workers function returned 0 for 2 CPUs; expected an integer >= 1',
  });
  assert.throws(() => resolveWorkers(() => 1.5, finding), {
    message: 'workers function returned 1.5 for 2 CPUs; expected an integer >= 1',
  });
  assert.throws(() => resolveWorkers((() => '3') as unknown as (n: number) => number, finding), /returned "3"/);
  assert.throws(
    () =>
      resolveWorkers(() => {
        throw new Error('boom');
      }, finding),
    { message: 'workers function threw for 2 CPUs: boom' },
  );
  for (const bad of [0, -1, 2.5, Number.NaN]) {
    assert.throws(() => resolveWorkers(bad, finding), /workers must be an integer >= 1/);
  }
  assert.throws(() => resolveWorkers('4' as unknown as number, finding), /got "4"/);
  for (const fn of [() => 0, () => 1.5]) {
    try {
      resolveWorkers(fn, finding);
    } catch (err) {
      assert.ok(!(err as Error).message.includes('\n'));
    }
  }
});

// ---------------------------------------------------------------------------------------
// parseBytes, parseCpuList

test('parseBytes: numbers, decimal and binary units, bare K/M/G are 1024-based', () => {
  const cases: Array<[string | number, number]> = [
    [0, 0],
    [1048576, 1048576],
    ['4096', 4096],
    ['100b', 100],
    ['512MB', 512_000_000],
    ['512mb', 512_000_000],
    ['2GB', 2_000_000_000],
    ['1KB', 1000],
    ['1.5GiB', 1.5 * 1024 ** 3],
    ['512MiB', 512 * 1024 ** 2],
    ['100k', 102400],
    ['100K', 102400],
    ['512m', 512 * 1024 ** 2],
    ['2G', 2 * 1024 ** 3],
    ['1T', 1024 ** 4],
    ['1.5k', 1536],
    ['0.3k', 307],
    ['.5K', 512],
    [' 256 MiB ', 256 * 1024 ** 2],
  ];
  for (const [input, expected] of cases) assert.equal(parseBytes(input), expected, String(input));
});

test('parseBytes: garbage throws a one-line error naming the value', () => {
  for (const bad of ['', 'lots', '12XB', '-5MB', '1..5G', 'G', '5 M B', '12constructor', '1e3', '99999999999TB']) {
    assert.throws(
      () => parseBytes(bad),
      (err: Error) => err.message.includes(JSON.stringify(bad)) && !err.message.includes('\n'),
      bad,
    );
  }
  for (const bad of [-1, Number.NaN, Infinity]) assert.throws(() => parseBytes(bad), /invalid byte size/);
});

test('parseCpuList counts kernel cpu lists', () => {
  assert.equal(parseCpuList('0-3,6,8-9'), 7);
  assert.equal(parseCpuList('0'), 1);
  assert.equal(parseCpuList('0-1\n'), 2);
  assert.equal(parseCpuList('0-3,2-5'), 6);
  assert.equal(parseCpuList(''), null);
  assert.equal(parseCpuList('3-1'), null);
  assert.equal(parseCpuList('a-b'), null);
});
