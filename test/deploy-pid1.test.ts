// arbiter as PID 1 of a new PID namespace, as in a container (issue 6, part 2):
// `unshare --fork --pid --mount-proc arbiter ...` — the entrypoint of the Dockerfile.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { BIN, FIXTURES, alive, childrenOf, descendants, freePort, killTree, load, request, run, safeKill, sleep, waitFor, type Running } from './helpers.ts';

const PID_APP = path.join(FIXTURES, 'apps', 'pid.js');
const UNSHARE = ['unshare', '--fork', '--pid', '--mount-proc'];

const canUnshare = (() => {
  const r = spawnSync('unshare', ['--fork', '--pid', '--mount-proc', 'true'], { timeout: 10_000 });
  return r.status === 0;
})();
const skip = canUnshare ? false : 'unshare --pid needs root (CAP_SYS_ADMIN) and util-linux';

/** Start arbiter under unshare; returns the runner (unshare) and the arbiter's host pid. */
async function start(args: string[]): Promise<{ r: Running; master: number }> {
  const r = run(args, { cmd: [...UNSHARE, process.execPath, BIN] });
  const master = await waitFor(() => childrenOf(r.pid)[0], 10_000, 'the arbiter under unshare');
  await Promise.race([
    r.waitLog((l) => l.event === 'ready', 20_000, 'arbiter ready'),
    r.exited.then(({ code }) => {
      throw new Error(`exited with ${code} before ready:\n${r.stderr()}`);
    }),
  ]);
  return { r, master };
}

/** Processes of the namespace in state Z (zombies), seen from the host. */
function zombiesUnder(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (f[0] === 'Z' && Number(f[1]) === pid) out.push(Number(name));
    } catch {
      /* gone */
    }
  }
  return out;
}

test('as PID 1: TERM under load is graceful (no errors), exit 0 propagates through unshare, nothing left', { skip, timeout: 90_000 }, async () => {
  const port = await freePort();
  const { r, master } = await start([PID_APP, '-w', '2', '-b', `127.0.0.1:${port}`]);
  const everything = [master, ...descendants(master)];
  try {
    // Inside, the arbiter is PID 1.
    assert.equal(readFileSync(`/proc/${master}/status`, 'utf8').match(/^NSpid:\s+\d+\s+(\d+)/m)?.[1], '1');

    // A worker killed behind its back is reaped by the master (PID 1 must reap) and replaced.
    const victim = childrenOf(master)[0]!;
    safeKill(victim, 'SIGKILL');
    await waitFor(() => !alive(victim) && childrenOf(master).length === 2, 10_000, 'replacement worker');
    await sleep(300);
    assert.deepEqual(zombiesUnder(master), [], 'no zombie children of the master');

    let end!: () => void;
    const until = new Promise<void>((res) => (end = res));
    const loading = load(port, { connections: 20, maxMs: 30_000, until });
    await sleep(700);
    safeKill(master, 'SIGTERM');
    await sleep(700);
    end();
    const res = await loading;
    const exit = await Promise.race([r.exited, sleep(40_000).then(() => null)]);
    assert.ok(exit, `unshare did not exit after TERM:\n${r.stderr().slice(-2000)}`);
    assert.deepEqual(exit, { code: 0, signal: null }, r.stderr().slice(-2000));
    assert.equal(res.errors, 0, JSON.stringify(res.errorKinds));
    assert.equal(res.non2xx, 0);
    assert.ok(res.ok > 50, `only ${res.ok} requests`);
    assert.ok(r.logs().some((l) => l.event === 'stopping' && l.graceful === true));
    for (const pid of [...everything, ...descendants(master)]) assert.ok(!alive(pid), `pid ${pid} left behind`);
    await assert.rejects(request({ port }, { timeoutMs: 1000 }));
  } finally {
    if (alive(r.pid)) killTree(r.pid);
  }
});

test('as PID 1: INT and QUIT are quick stops with exit 0', { skip, timeout: 60_000 }, async () => {
  for (const sig of ['SIGINT', 'SIGQUIT'] as const) {
    const port = await freePort();
    const { r, master } = await start([PID_APP, '-w', '2', '-b', `127.0.0.1:${port}`]);
    try {
      // A request in flight for 5 s does not hold a quick stop up.
      const slow = request({ port }, { path: '/slow?ms=5000', timeoutMs: 10_000 }).catch((e) => e);
      await sleep(300);
      const t0 = Date.now();
      safeKill(master, sig);
      const exit = await Promise.race([r.exited, sleep(15_000).then(() => null)]);
      assert.deepEqual(exit, { code: 0, signal: null }, `${sig}: ${r.stderr().slice(-1500)}`);
      assert.ok(Date.now() - t0 < 4000, `${sig} took ${Date.now() - t0} ms`);
      await slow;
    } finally {
      if (alive(r.pid)) killTree(r.pid);
    }
  }
});

test('as PID 1: exit codes propagate (3 when the app cannot load, 2 for a usage error)', { skip, timeout: 60_000 }, async () => {
  const bad = run(['no-such-app.js', '-b', `127.0.0.1:${await freePort()}`], { cmd: [...UNSHARE, process.execPath, BIN] });
  assert.equal((await bad.exited).code, 3, bad.stderr());
  const usage = run([PID_APP, '--workers', 'lots'], { cmd: [...UNSHARE, process.execPath, BIN] });
  assert.equal((await usage.exited).code, 2, usage.stderr());
});
