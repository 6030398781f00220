// Listeners (SPEC §4): TCP v4 and v6, unix sockets (stale file replaced, removed on exit),
// several at once, fd://N, systemd's LISTEN_FDS, backlog; bound once by the master.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { EXAMPLES, BIN, freePort, request, run, serve, stop, tmpDir, waitFor } from './helpers.ts';

const HELLO = `${EXAMPLES}/hello.js:handler`;

/** Listening sockets for a port, from `ss`: one line per socket, with its backlog (Send-Q). */
function listening(port: number): { backlog: number }[] {
  const out = execFileSync('ss', ['-Hltn', `sport = :${port}`], { encoding: 'utf8' });
  return out.trim().split('\n').filter(Boolean).map((l) => ({ backlog: Number(l.trim().split(/\s+/)[2]) }));
}

test('several binds at once: IPv4, IPv6 and a unix socket; one socket each, with the backlog asked for', { timeout: 30_000 }, async () => {
  const dir = tmpDir();
  const sock = path.join(dir, 'app.sock');
  const [p4, p6] = [await freePort(), await freePort('::1')];
  const r = await serve([HELLO, '-w', '2', '-b', `127.0.0.1:${p4}`, '-b', `[::1]:${p6}`, '-b', `unix:${sock}`, '--backlog', '77']);
  try {
    assert.equal((await request({ port: p4 })).status, 200);
    assert.equal((await request({ port: p6, host: '::1' })).status, 200);
    assert.equal((await request({ port: 0, socketPath: sock })).status, 200);
    // Bound once by the master and shared: one listening socket, not one per worker.
    const l = listening(p4);
    assert.equal(l.length, 1, JSON.stringify(l));
    assert.equal(l[0]!.backlog, 77);
  } finally {
    await stop(r);
  }
  assert.equal(existsSync(sock), false, 'the unix socket file is removed on exit');
});

test('a stale unix socket file from a dead run is replaced; a live one is refused', { timeout: 30_000 }, async () => {
  const dir = tmpDir();
  const sock = path.join(dir, 'stale.sock');
  // Leave a socket file behind the way a killed process does.
  const holder = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(sock)}, () => process.kill(process.pid, 'SIGKILL'))`]);
  await new Promise((r) => holder.once('exit', r));
  assert.ok(existsSync(sock));
  const r = await serve([HELLO, '-b', `unix:${sock}`]);
  assert.equal((await request({ port: 0, socketPath: sock })).status, 200);
  const second = run([HELLO, '-b', `unix:${sock}`]);
  assert.equal((await second.exited).code, 1);
  assert.match(second.stderr(), /cannot bind unix:.*stale\.sock: address already in use/);
  await stop(r);
  writeFileSync(path.join(dir, 'plain'), 'x');
  const third = run([HELLO, '-b', `unix:${path.join(dir, 'plain')}`]);
  assert.equal((await third.exited).code, 1);
  assert.match(third.stderr(), /exists and is not a socket/);
});

/** A listening socket of our own, handed to a child as fd 3. */
async function listenerFd(): Promise<{ server: net.Server; port: number; fd: number }> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as net.AddressInfo).port, fd: (server as any)._handle.fd };
}

test('fd://N serves on an inherited descriptor', { timeout: 30_000 }, async () => {
  const { server, port, fd } = await listenerFd();
  const r = run([HELLO, '-b', 'fd://3'], { stdio: ['ignore', 'pipe', 'pipe', fd] });
  server.close();
  await r.waitLog((l) => l.event === 'ready', 15_000, 'ready');
  assert.equal((await request({ port })).status, 200);
  await stop(r);
});

test("systemd socket activation: LISTEN_FDS/LISTEN_PID, without binding a socket of its own", { timeout: 30_000 }, async () => {
  const { server, port, fd } = await listenerFd();
  const unused = await freePort();
  // LISTEN_PID must be the arbiter's own pid: set it in a shell that then execs arbiter.
  const r = run([], {
    cmd: ['sh', '-c', `LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=web exec "${process.execPath}" "${BIN}" ${HELLO} -b 127.0.0.1:${unused}`],
    stdio: ['ignore', 'pipe', 'pipe', fd],
  });
  server.close();
  await r.waitLog((l) => l.event === 'ready', 15_000, 'ready');
  assert.equal((await request({ port })).status, 200);
  const listen = r.logs().find((l) => l.event === 'listening')!;
  assert.deepEqual(listen.listeners, ['systemd fd 3 (web)']);
  assert.equal(listening(unused).length, 0, 'the bind setting is not bound when systemd passes sockets');
  await stop(r);
});

test('started by systemd-socket-activate', { timeout: 30_000 }, async () => {
  const port = await freePort();
  const r = run([HELLO], { cmd: ['systemd-socket-activate', '-l', `127.0.0.1:${port}`, process.execPath, BIN] });
  // systemd-socket-activate starts arbiter on the first connection.
  const reply = await waitFor(() => request({ port }, { timeoutMs: 10_000 }), 20_000, 'a reply through systemd-socket-activate');
  assert.equal(reply.status, 200);
  await stop(r);
});
