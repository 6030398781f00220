// Control socket and `arbiter status | scale | reload | stop` (issue 6, part 4).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { statSync, writeFileSync, existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { BIN, FIXTURES, alive, childrenOf, freePort, request, serve, run, stop, tmpDir, waitFor } from './helpers.ts';

const PID_APP = path.join(FIXTURES, 'apps', 'pid.js');

function cli(args: string[], env: NodeJS.ProcessEnv = {}, cwd?: string) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 30_000, env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ARBITER_'))), ...env }, cwd });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Raw line-delimited JSON exchange on the control socket. */
function raw(sock: string, payload: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(sock);
    let buf = '';
    s.setEncoding('utf8');
    s.on('connect', () => s.write(payload));
    s.on('data', (d) => {
      buf += d;
      if (buf.split('\n').length - 1 >= payload.split('\n').filter((l) => l.trim()).length) s.end();
    });
    s.on('close', () => resolve(buf));
    s.on('error', reject);
    s.setTimeout(5000, () => s.destroy(new Error('timeout')));
  });
}

test('status --json matches the real worker pids; scale 3 leads to 3 workers; socket is 0600', { timeout: 60_000 }, async () => {
  const dir = tmpDir();
  const sock = path.join(dir, 'ctl.sock');
  const port = await freePort();
  const r = await serve([PID_APP, '-w', '2', '-b', `127.0.0.1:${port}`, '--control-socket', sock]);
  try {
    assert.equal(statSync(sock).mode & 0o777, 0o600);
    assert.ok(statSync(sock).isSocket());

    // Heartbeats and requests settle quickly; compare with /proc.
    await request({ port });
    const st = await waitFor(() => {
      const out = cli(['status', '--json', '--control-socket', sock]);
      assert.equal(out.code, 0, out.stderr);
      const s = JSON.parse(out.stdout);
      return s.workers.every((w: { rss: number | null }) => w.rss !== null) ? s : null;
    }, 10_000, 'status with heartbeats');
    assert.equal(st.pid, r.pid);
    assert.equal(st.target, 2);
    assert.equal(st.workerClass, 'http');
    assert.deepEqual(st.listeners, [`127.0.0.1:${port}`]);
    assert.deepEqual(Object.keys(st.restarts).sort(), ['crash', 'max-requests', 'memory', 'reload', 'timeout']);
    assert.ok(st.uptime >= 0 && typeof st.version === 'string');
    assert.deepEqual(st.workers.map((w: { pid: number }) => w.pid).sort(), r.workers().sort());
    for (const w of st.workers) {
      assert.equal(w.state, 'serving');
      assert.ok(w.age >= 1 && w.uptime >= 0 && w.heartbeatAgo >= 0 && w.heartbeatAgo < 5, JSON.stringify(w));
      assert.ok(w.rss > 1_000_000, JSON.stringify(w));
      assert.equal(typeof w.requests, 'number');
      assert.equal(w.active, 0);
    }

    // The human table: one row per worker, with the header.
    const human = cli(['status', '--control-socket', sock]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /PID\s+AGE\s+STATE\s+UPTIME\s+REQUESTS\s+ACTIVE\s+RSS\s+HEARTBEAT/);
    for (const pid of r.workers()) assert.match(human.stdout, new RegExp(`^${pid}\\s+\\d+\\s+serving`, 'm'));
    assert.match(human.stdout, new RegExp(`master ${r.pid}`));

    // ARBITER_CONTROL_SOCKET finds it too; scale up.
    const scaled = cli(['scale', '3'], { ARBITER_CONTROL_SOCKET: sock });
    assert.equal(scaled.code, 0, scaled.stderr);
    assert.match(scaled.stdout, /2 -> 3/);
    await waitFor(() => r.workers().length === 3, 10_000, '3 worker processes');
    const after = await waitFor(() => {
      const s = JSON.parse(cli(['status', '--json', '--control-socket', sock]).stdout);
      return s.workers.length === 3 && s.workers.every((w: { state: string }) => w.state === 'serving') ? s : null;
    }, 10_000, '3 serving workers in status');
    assert.equal(after.target, 3);
    assert.deepEqual(after.workers.map((w: { pid: number }) => w.pid).sort(), r.workers().sort());

    // And down again.
    assert.equal(cli(['scale', '1', '--control-socket', sock]).code, 0);
    await waitFor(() => r.workers().length === 1, 15_000, '1 worker process');
  } finally {
    await stop(r);
  }
  assert.ok(!existsSync(sock), 'the control socket is removed on exit');
});

test('bad requests get error replies and never hurt the master; reload and stop through the socket', { timeout: 60_000 }, async () => {
  const dir = tmpDir();
  const sock = path.join(dir, 'ctl.sock');
  const port = await freePort();
  const r = await serve([PID_APP, '-w', '1', '-b', `127.0.0.1:${port}`, '--control-socket', sock]);
  try {
    const replies = (await raw(sock, 'not json\n{"cmd":"frobnicate"}\n[1,2]\n{"cmd":"scale","n":0}\n{"cmd":"scale","n":"3"}\n{"cmd":"scale","n":1.5}\n{"cmd":"scale","n":100000}\n{}\n{"cmd":"status"}\n'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.equal(replies.length, 9);
    for (const bad of replies.slice(0, 8)) {
      assert.equal(bad.ok, false);
      assert.equal(typeof bad.error, 'string');
    }
    assert.equal(replies[8].ok, true);
    assert.equal(replies[8].status.pid, r.pid);

    // A client that sends half a line and vanishes; one that sends a huge line.
    await new Promise<void>((resolve) => {
      const s = net.connect(sock, () => {
        s.write('{"cmd":"sta');
        s.destroy();
        resolve();
      });
    });
    const huge = await raw(sock, 'x'.repeat(200_000));
    assert.match(huge, /too long|longer than/);
    assert.ok(alive(r.pid));

    // CLI usage errors exit 2, with one line.
    for (const args of [['scale'], ['scale', 'many'], ['scale', '0'], ['status', '--bogus'], ['status', 'extra']]) {
      const out = cli([...args, '--control-socket', sock]);
      assert.equal(out.code, 2, `${args.join(' ')}: ${out.stderr}`);
      assert.equal(out.stderr.trim().split('\n').length, 1, out.stderr);
    }

    // reload through the socket replaces the worker.
    const before = r.workers();
    const rel = cli(['reload', '--control-socket', sock]);
    assert.equal(rel.code, 0, rel.stderr);
    await waitFor(() => {
      const now = r.workers();
      return now.length === 1 && !before.includes(now[0]!) && !alive(before[0]!);
    }, 15_000, 'worker replaced after reload');
    assert.equal((await request({ port })).status, 200);

    // stop through the socket: the command waits for the master to exit.
    // (Asynchronously: the test process must stay free to reap the master.)
    const st = run(['stop', '--control-socket', sock]);
    assert.equal((await st.exited).code, 0, st.stderr());
    assert.match(st.stdout(), /stopped/);
    assert.deepEqual(await r.exited, { code: 0, signal: null });
  } finally {
    if (alive(r.pid)) await stop(r);
  }
});

test('no master: exit 1 with one line; no socket configured: exit 2; a stale socket is replaced, a live one refused', { timeout: 60_000 }, async () => {
  const dir = tmpDir();
  const sock = path.join(dir, 'ctl.sock');

  const missing = cli(['status', '--control-socket', sock]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^arbiter: error: cannot reach the master/);
  assert.equal(missing.stderr.trim().split('\n').length, 1);

  // No selector and nobody running in this runtime directory: an empty list, not an error.
  const none = cli(['status'], { ARBITER_RUNTIME_DIR: path.join(dir, 'run') }, dir);
  assert.equal(none.code, 0, none.stderr);
  assert.match(none.stdout, /no arbiter running/);

  // A stale socket file: a process bound it and was killed, so nobody answers on it.
  const holder = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(sock)}, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((res) => holder.stdout!.once('data', res));
  holder.kill('SIGKILL');
  await new Promise((res) => holder.once('exit', res));
  assert.ok(statSync(sock).isSocket(), 'the stale socket file is left behind');
  const refused = cli(['status', '--control-socket', sock]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /refused|stale/);

  const port = await freePort();
  const r = await serve([PID_APP, '-w', '1', '-b', `127.0.0.1:${port}`, '--control-socket', sock]);
  try {
    assert.equal(cli(['status', '--control-socket', sock]).code, 0);
    // A second arbiter on the same control socket refuses to start, and the first keeps it.
    const port2 = await freePort();
    const second = run([PID_APP, '-w', '1', '-b', `127.0.0.1:${port2}`, '--control-socket', sock]);
    const res = await second.exited;
    assert.equal(res.code, 1, second.stderr());
    assert.match(second.stderr(), /control socket .* in use/);
    assert.equal(JSON.parse(cli(['status', '--json', '--control-socket', sock]).stdout).pid, r.pid);
    // Not a socket: never removed.
    const plain = path.join(dir, 'plain');
    writeFileSync(plain, 'keep me');
    const third = run([PID_APP, '-w', '1', '-b', `127.0.0.1:${await freePort()}`, '--control-socket', plain]);
    assert.equal((await third.exited).code, 1);
    assert.match(third.stderr(), /not a socket/);
    assert.ok(existsSync(plain));
  } finally {
    await stop(r);
  }
  assert.equal(childrenOf(r.pid).length, 0);
});
