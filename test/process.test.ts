// Process settings and logging: pidfile, chdir, env, umask, user/group, access log, USR1,
// structured lifecycle events.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { EXAMPLES, FIXTURES, freePort, request, run, serve, stop, tmpDir, waitFor, writeFiles } from './helpers.ts';

const HELLO = `${EXAMPLES}/hello.js:handler`;

test('pidfile: written after binding, a stale one replaced, a live one refused, removed on exit', { timeout: 30_000 }, async () => {
  const dir = tmpDir();
  const pidfile = path.join(dir, 'arbiter.pid');
  writeFileSync(pidfile, '999999\n'); // no such process: stale
  const port = await freePort();
  const r = await serve([HELLO, '-b', `127.0.0.1:${port}`, '-p', pidfile]);
  assert.equal(readFileSync(pidfile, 'utf8').trim(), String(r.pid));
  const second = run([HELLO, '-b', `127.0.0.1:${await freePort()}`, '-p', pidfile]);
  assert.equal((await second.exited).code, 1);
  assert.match(second.stderr(), /pidfile .* names a running process/);
  await stop(r);
  assert.equal(existsSync(pidfile), false);
});

test('chdir, env and umask reach the workers', { timeout: 30_000 }, async () => {
  const dir = tmpDir();
  writeFiles(dir, {
    'app/inspect.js': `export default (req, res) => res.end(JSON.stringify({ cwd: process.cwd(), greeting: process.env.GREETING, umask: process.umask() }));`,
  });
  const port = await freePort();
  const sock = path.join(dir, 's.sock');
  const r = await serve(['inspect.js', '--chdir', path.join(dir, 'app'), '-e', 'GREETING=hi there', '-m', '027', '-b', `127.0.0.1:${port}`, '-b', `unix:${sock}`]);
  try {
    const seen = JSON.parse((await request({ port })).body);
    assert.deepEqual(seen, { cwd: path.join(dir, 'app'), greeting: 'hi there', umask: 0o27 });
    assert.equal(statSync(sock).mode & 0o777, 0o750, 'the unix socket was created under the umask');
  } finally {
    await stop(r);
  }
});

async function privilegedPort(): Promise<number> {
  for (let p = 700; p < 1000; p++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.createServer().once('error', () => resolve(false));
      s.listen(p, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (ok) return p;
  }
  throw new Error('no free port below 1000');
}

test('user/group: the master binds a privileged port, workers run unprivileged', { timeout: 30_000 }, async (t) => {
  assert.equal(process.getuid?.(), 0, 'this test needs root (CI runs as root)');
  const port = await privilegedPort();
  const r = await serve([path.join(FIXTURES, 'apps', 'pid.js'), '-u', 'nobody', '-g', 'nogroup', '-b', `127.0.0.1:${port}`], { cwd: '/tmp' });
  try {
    const reply = await request({ port });
    const worker = Number(reply.headers['x-pid']);
    const status = readFileSync(`/proc/${worker}/status`, 'utf8');
    assert.match(status, /^Uid:\s+65534\s/m);
    assert.match(status, /^Gid:\s+65534\s/m);
    assert.match(readFileSync(`/proc/${r.pid}/status`, 'utf8'), /^Uid:\s+0\s/m);
  } finally {
    await stop(r);
  }
});

test("access log in Gunicorn's format, JSON, and reopened on USR1", { timeout: 30_000 }, async () => {
  const dir = tmpDir();
  const log = path.join(dir, 'access.log');
  const port = await freePort();
  const r = await serve([HELLO, '-b', `127.0.0.1:${port}`, '--access-logfile', log]);
  try {
    await request({ port }, { path: '/x?y=1', headers: { 'user-agent': 'test-agent', referer: 'http://ref/' } });
    const line = await waitFor(() => existsSync(log) && readFileSync(log, 'utf8').trim(), 5000, 'the access log line');
    assert.match(String(line), /^127\.0\.0\.1 - - \[\d\d\/\w{3}\/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "GET \/x\?y=1 HTTP\/1\.1" 200 14 "http:\/\/ref\/" "test-agent"$/);
    renameSync(log, log + '.1');
    r.signal('SIGUSR1');
    await r.waitLog((l) => l.event === 'signal' && l.signal === 'SIGUSR1', 5000, 'USR1');
    await waitFor(() => existsSync(log), 5000, 'a new access log file after USR1');
    await request({ port }, { path: '/after-rotate' });
    await waitFor(() => readFileSync(log, 'utf8').includes('/after-rotate'), 5000, 'the new file to be written');
    assert.doesNotMatch(readFileSync(log + '.1', 'utf8'), /after-rotate/);
  } finally {
    await stop(r);
  }
  const port2 = await freePort();
  const j = await serve([HELLO, '-b', `127.0.0.1:${port2}`, '--access-logfile', '-', '--access-logformat', 'json']);
  await request({ port: port2 }, { path: '/json' });
  const entry = await waitFor(() => j.stdout().split('\n').find((l) => l.includes('/json')), 5000, 'a JSON access line');
  assert.deepEqual({ ...JSON.parse(entry), time: 0, duration_us: 0, pid: 0 }, {
    time: 0, remote: '127.0.0.1', method: 'GET', url: '/json', version: '1.1', status: 200, bytes: 14, duration_us: 0, referer: null, user_agent: null, pid: 0,
  });
  await stop(j);
});

test('lifecycle events are structured with pid and reason', { timeout: 30_000 }, async () => {
  const port = await freePort();
  const r = await serve([HELLO, '-w', '2', '-b', `127.0.0.1:${port}`]);
  const [victim] = r.workers();
  process.kill(victim!, 'SIGKILL');
  const exit = await r.waitLog((l) => l.event === 'worker_exit' && l.worker === victim, 5000, 'worker_exit');
  assert.equal(exit.signal, 'SIGKILL');
  assert.equal(exit.reason, 'crash');
  assert.equal(exit.level, 'error');
  assert.equal(exit.pid, r.pid);
  const booting = r.logs().filter((l) => l.event === 'worker_booting');
  assert.ok(booting.length >= 3 && booting.every((l) => typeof l.worker === 'number'));
  await stop(r);
  assert.ok(r.logs().some((l) => l.event === 'stopping' && l.graceful === true));
});
