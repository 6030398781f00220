// `-w auto` inside a real CPU-limited cgroup on this machine (needs root, as CI runs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, rmdirSync, writeFileSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BOOT_SLOT_MS } from '../src/policy.ts';
import { BIN, EXAMPLES, freePort, run, stop } from './helpers.ts';

/** A cgroup limited to 1.5 CPUs: v1's CFS quota where the cpu controller is mounted, else v2's cpu.max. */
function limitedGroup(): { dir: string; undo(): void; expect: RegExp } {
  const name = `arbiter-test-${process.pid}`;
  const v1 = '/sys/fs/cgroup/cpu';
  if (existsSync(path.join(v1, 'cpu.cfs_quota_us'))) {
    const dir = path.join(v1, name);
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'cpu.cfs_period_us'), '100000');
    writeFileSync(path.join(dir, 'cpu.cfs_quota_us'), '150000');
    return { dir, undo: () => rmdirSync(dir), expect: /cgroup v1 cpu\.cfs_quota_us 150000 \/ cpu\.cfs_period_us 100000/ };
  }
  const v2 = '/sys/fs/cgroup';
  assert.ok(readFileSync(path.join(v2, 'cgroup.controllers'), 'utf8').includes('cpu'), 'no cgroup cpu controller on this machine');
  const dir = path.join(v2, name);
  mkdirSync(dir);
  writeFileSync(path.join(dir, 'cpu.max'), '150000 100000');
  return { dir, undo: () => rmdirSync(dir), expect: /cgroup v2 cpu\.max 150000 100000/ };
}

test('-w auto in a cgroup limited to 1.5 CPUs starts 2 workers and says why', { timeout: 30_000 }, async () => {
  assert.equal(process.getuid?.(), 0, 'creating cgroups needs root (CI runs as root)');
  const group = limitedGroup();
  try {
    const port = await freePort();
    const r = run([], {
      cmd: ['sh', '-c', `echo $$ > ${group.dir}/cgroup.procs && exec "${process.execPath}" "${BIN}" ${EXAMPLES}/hello.js -w auto -b 127.0.0.1:${port}`],
    });
    const sizing = await r.waitLog((l) => l.event === 'sizing', 15_000, 'the sizing line');
    assert.equal(sizing.workers, 2);
    assert.match(sizing.msg, /^2 workers: auto from /);
    assert.match(sizing.msg, group.expect);
    assert.match(sizing.msg, /\(1\.5 CPUs\)/);
    await r.waitLog((l) => l.event === 'ready', 15_000, 'ready');
    assert.equal(r.workers().length, 2);
    await stop(r);
  } finally {
    group.undo();
  }
});

test('-w auto with no limit starts as many workers as os.availableParallelism()', { timeout: 30_000 }, async () => {
  const port = await freePort();
  const r = run([`${EXAMPLES}/hello.js`, '-w', 'auto', '-b', `127.0.0.1:${port}`]);
  const sizing = await r.waitLog((l) => l.event === 'sizing', 15_000, 'the sizing line');
  assert.equal(sizing.workers, os.availableParallelism());
  await r.waitLog((l) => l.event === 'ready', 15_000, 'ready');
  assert.equal(r.workers().length, os.availableParallelism());
  await stop(r);
});

test('no more workers boot at once than there are CPUs: with one, each waits for the last to serve (or for BOOT_SLOT_MS)', { timeout: 60_000 }, async () => {
  const port = await freePort();
  // One CPU by affinity (os.availableParallelism() follows it): one worker boots at a time.
  const r = run([], { cmd: ['taskset', '-c', '0', process.execPath, BIN, `${EXAMPLES}/hello.js`, '-w', '4', '-b', `127.0.0.1:${port}`, '--log-level', 'debug'] });
  try {
    await r.waitLog((l) => l.event === 'ready', 30_000, 'ready');
    assert.equal(r.workers().length, 4);
    const events = r.logs().filter((l) => l.event === 'worker_booting' || l.event === 'worker_ready');
    const at = (l: (typeof events)[number]) => Date.parse(String(l.time));
    const booting = events.filter((l) => l.event === 'worker_booting');
    assert.equal(booting.length, 4);
    for (let i = 1; i < booting.length; i++) {
      const before = events.slice(0, events.indexOf(booting[i]!));
      const readyBefore = before.filter((l) => l.event === 'worker_ready').length;
      const heldLong = at(booting[i]!) - at(booting[i - 1]!) >= BOOT_SLOT_MS - 5;
      assert.ok(readyBefore >= i || heldLong, `worker ${i + 1} started while ${i - readyBefore} others still booted:\n${events.map((l) => `${l.time} ${l.event} ${l.worker}`).join('\n')}`);
    }
  } finally {
    await stop(r);
  }
});
