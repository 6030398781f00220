// systemd (issue 6, part 3): socket activation and Type=notify readiness.
// The notify socket is a real AF_UNIX datagram socket, received by a few lines of Python
// (Node has no unix datagram sockets); systemd-notify and systemd-socket-activate are the
// real binaries from the `systemd` package.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { BIN, FIXTURES, alive, childrenOf, freePort, request, run, sleep, stop, tmpDir, waitFor } from './helpers.ts';

const PID_APP = path.join(FIXTURES, 'apps', 'pid.js');
const has = (cmd: string, ...args: string[]) => spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
const haveActivate = has('systemd-socket-activate', '--version');
const haveNotify = has('systemd-notify', '--version') && has('python3', '-c', 'import socket; socket.AF_UNIX');

const RECEIVER = `
import socket, sys, os, json, struct
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind('\\0' + path[1:] if path.startswith('@') else path)
print(json.dumps({"listening": path}), flush=True)
while True:
    msg, anc, flags, addr = s.recvmsg(65536, socket.CMSG_SPACE(12) + socket.CMSG_SPACE(4 * 16))
    pid = None
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack('iII', data[:12])[0]
    print(json.dumps({"pid": pid, "msg": msg.decode()}), flush=True)
`;

interface Note {
  pid: number | null;
  vars: Record<string, string>;
  at: number;
}

/** A NOTIFY_SOCKET that records what arrives. */
async function notifySocket(address: string): Promise<{ notes: Note[]; proc: ChildProcess; close(): void }> {
  const dir = tmpDir();
  const script = path.join(dir, 'receiver.py');
  writeFileSync(script, RECEIVER);
  const proc = spawn('python3', [script, address], { stdio: ['ignore', 'pipe', 'inherit'] });
  const notes: Note[] = [];
  let buf = '';
  let up!: () => void;
  const listening = new Promise<void>((r) => (up = r));
  proc.stdout!.setEncoding('utf8');
  proc.stdout!.on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const j = JSON.parse(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
      if (j.listening) up();
      else {
        const vars = Object.fromEntries((j.msg as string).split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
        if (!('BARRIER' in vars)) notes.push({ pid: j.pid, vars, at: Date.now() });
      }
    }
  });
  await Promise.race([listening, sleep(5000).then(() => Promise.reject(new Error('receiver did not start')))]);
  return { notes, proc, close: () => void proc.kill('SIGKILL') };
}

test('socket activation: serves on the inherited socket without binding one of its own', { skip: haveActivate ? false : 'no systemd-socket-activate', timeout: 60_000 }, async () => {
  const port = await freePort();
  const r = run(['-l', `127.0.0.1:${port}`, process.execPath, BIN, PID_APP, '-w', '2'], { cmd: ['systemd-socket-activate'] });
  try {
    // Like a socket unit, systemd-socket-activate starts the service on the first connection;
    // that connection waits in the backlog and is served once the workers are up.
    await sleep(300);
    const first = await Promise.race([
      request({ port }, { timeoutMs: 20_000 }),
      r.exited.then(({ code }) => Promise.reject(new Error(`exited ${code}: ${r.stderr()}`))),
    ]);
    assert.equal(first.status, 200);
    await r.waitLog((l) => l.event === 'ready', 10_000, 'ready');
    const listening = r.logs().find((l) => l.event === 'listening')!;
    assert.deepEqual(listening.listeners, ['systemd fd 3']);
    // systemd-socket-activate execs the command: the arbiter is the process we started.
    assert.equal(childrenOf(r.pid).length, 2);
    const res = await request({ port });
    assert.equal(res.status, 200);
    assert.ok(childrenOf(r.pid).includes(Number(res.body.trim())));
    // Nothing bound on the default address by us.
    const sockets = spawnSync('ss', ['-Hltnp'], { encoding: 'utf8' }).stdout ?? '';
    for (const line of sockets.split('\n').filter((l) => l.includes(`pid=${r.pid},`))) assert.match(line, new RegExp(`:${port}\\b`));
  } finally {
    await stop(r);
  }
});

for (const kind of ['path', 'abstract'] as const) {
  test(`Type=notify (${kind} NOTIFY_SOCKET): READY=1 after the workers serve, RELOADING=1 then READY=1 on HUP, STOPPING=1 on TERM`, { skip: haveNotify ? false : 'no systemd-notify or python3', timeout: 60_000 }, async () => {
    const address = kind === 'path' ? path.join(tmpDir(), 'notify.sock') : `@arbiter-test-${process.pid}-${Date.now()}`;
    const sd = await notifySocket(address);
    const port = await freePort();
    const r = run([PID_APP, '-w', '2', '-b', `127.0.0.1:${port}`], { env: { NOTIFY_SOCKET: address } });
    try {
      const ready = await waitFor(() => sd.notes.find((n) => n.vars.READY === '1'), 20_000, `READY=1; stderr: ${r.stderr().slice(-1500)}`);
      const readyLog = r.logs().find((l) => l.event === 'ready');
      assert.ok(readyLog, 'READY=1 comes after the master logged ready');
      assert.ok(ready.at >= Date.parse(String(readyLog.time)) - 5);
      // (systemd-notify itself may still be a child of the master for a moment.)
      await waitFor(() => r.workers().length === 2, 10_000, 'two workers');
      // As root systemd-notify sends with the master's credentials (NotifyAccess=main would do).
      if (process.getuid?.() === 0) assert.equal(ready.pid, r.pid);
      assert.equal((await request({ port })).status, 200);

      const before = r.workers();
      r.signal('SIGHUP');
      await waitFor(() => sd.notes.find((n) => n.vars.RELOADING === '1'), 10_000, 'RELOADING=1');
      const reloading = sd.notes.find((n) => n.vars.RELOADING === '1')!;
      assert.match(reloading.vars.MONOTONIC_USEC ?? '', /^\d+$/);
      await waitFor(() => sd.notes.filter((n) => n.vars.READY === '1').length === 2, 15_000, 'READY=1 after the reload');
      const newReady = r.logs().filter((l) => l.event === 'worker_ready' && !before.includes(l.worker as number));
      assert.equal(newReady.length, 2, 'READY=1 after the reload comes once the new workers serve');

      r.signal('SIGTERM');
      await waitFor(() => sd.notes.find((n) => n.vars.STOPPING === '1'), 10_000, 'STOPPING=1');
      assert.equal((await r.exited).code, 0);
    } finally {
      if (alive(r.pid)) await stop(r);
      sd.close();
    }
  });
}

test('without NOTIFY_SOCKET, or with one nobody listens on, the arbiter runs as usual', { timeout: 60_000 }, async () => {
  const port = await freePort();
  const r = run([PID_APP, '-w', '1', '-b', `127.0.0.1:${port}`], { env: { NOTIFY_SOCKET: path.join(tmpDir(), 'nobody.sock') } });
  try {
    await r.waitLog((l) => l.event === 'ready', 20_000, 'ready');
    assert.equal((await request({ port })).status, 200);
  } finally {
    assert.equal((await stop(r)).code, 0);
  }
});
