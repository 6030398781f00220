/**
 * Clients that try to hold a worker's connections: idle floods, slowloris, a flood of the
 * metrics endpoint. Loopback only, bounded in connections and time; every socket is closed
 * when its test ends.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { FIXTURES, freePort, request, safeKill, serve, sleep, stop, waitFor } from './helpers.ts';

const PID_APP = path.join(FIXTURES, 'apps', 'pid.js');

interface Hostile {
  sockets: net.Socket[];
  /** ms from open to close, per socket that closed. */
  closedAfter: number[];
  got408: number;
  end(): void;
}

/** `n` connections that send nothing (idle) or a head one byte every `everyMs` (slow). */
function hostile(port: number, n: number, mode: 'idle' | 'slow', everyMs = 300): Hostile {
  const h: Hostile = { sockets: [], closedAfter: [], got408: 0, end: () => {} };
  const timers: NodeJS.Timeout[] = [];
  const head = 'GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ' + 'a'.repeat(400) + '\r\n';
  for (let i = 0; i < n; i++) {
    const opened = Date.now();
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => {});
    s.on('data', (d) => {
      if (d.toString('latin1').startsWith('HTTP/1.1 408 ')) h.got408++;
    });
    s.on('close', () => h.closedAfter.push(Date.now() - opened));
    if (mode === 'slow') {
      let k = 0;
      timers.push(setInterval(() => {
        if (!s.destroyed && k < head.length) s.write(head[k++]!);
      }, everyMs));
    }
    h.sockets.push(s);
  }
  h.end = () => {
    for (const t of timers) clearInterval(t);
    for (const s of h.sockets) s.destroy();
  };
  return h;
}

/** Ten ordinary requests, one connection each, all at once; how many were answered 200. */
async function ordinary(port: number): Promise<number> {
  const replies = await Promise.all(Array.from({ length: 10 }, () => request({ port }, { timeoutMs: 15_000 }).catch(() => null)));
  return replies.filter((r) => r?.status === 200).length;
}

for (const cls of ['http', 'h11']) {
  test(`-k ${cls}: idle connections beyond workerConnections do not lock out other clients`, { timeout: 60_000 }, async () => {
    const port = await freePort();
    const r = await serve([PID_APP, '-k', cls, '-w', '1', '-b', `127.0.0.1:${port}`, '--worker-connections', '50', '--header-timeout', '2']);
    const flood = hostile(port, 150, 'idle');
    try {
      await sleep(500);
      assert.equal(await ordinary(port), 10, 'every ordinary request answered while the idle flood is open');
      await waitFor(() => flood.closedAfter.length === 150, 15_000, `the idle connections closed (${flood.closedAfter.length} of 150)`);
      // Idle ones made room as others came, or were closed at their deadline (keepalive 5 s or headerTimeout 2 s).
      assert.ok(Math.max(...flood.closedAfter) < 9_000, `closed within ${Math.max(...flood.closedAfter)} ms`);
    } finally {
      flood.end();
      await stop(r);
    }
  });

  test(`-k ${cls}: slowloris gets 408 at headerTimeout whatever it trickles, and others are served meanwhile`, { timeout: 60_000 }, async () => {
    const port = await freePort();
    const r = await serve([PID_APP, '-k', cls, '-w', '1', '-b', `127.0.0.1:${port}`, '--worker-connections', '50', '--header-timeout', '2']);
    const slow = hostile(port, 60, 'slow', 200);
    try {
      await sleep(300);
      // The cap is full of slow heads: the ordinary requests wait in the backlog for the 408s.
      assert.equal(await ordinary(port), 10, 'every ordinary request answered');
      await waitFor(() => slow.closedAfter.length === 60, 15_000, `the slow connections closed (${slow.closedAfter.length} of 60)`);
      assert.ok(slow.got408 >= 50, `${slow.got408} of 60 got a 408`);
      // A byte every 200 ms would have kept them for ever: they are cut at 2 s (+ the check's period).
      assert.ok(Math.max(...slow.closedAfter) < 6_000, `closed within ${Math.max(...slow.closedAfter)} ms`);
    } finally {
      slow.end();
      await stop(r);
    }
  });
}

test('the metrics endpoint holds few connections: an idle flood cannot starve the master of descriptors', { timeout: 60_000 }, async () => {
  const port = await freePort();
  const mport = await freePort();
  // A low descriptor limit, so that a flood of 300 would exhaust it if the endpoint held them.
  const cmd = ['sh', '-c', `ulimit -n 256 && exec "$0" "$@"`, process.execPath, path.join(FIXTURES, '..', '..', 'bin', 'arbiter')];
  const r = await serve([PID_APP, '-w', '2', '-b', `127.0.0.1:${port}`, '--metrics-bind', `127.0.0.1:${mport}`], { cmd });
  const flood = hostile(mport, 300, 'idle');
  try {
    await sleep(1000);
    const victim = r.workers()[0]!;
    safeKill(victim, 'SIGKILL');
    await waitFor(() => r.logs().some((l) => l.event === 'worker_ready' && l.worker !== victim && (l.age as number) > 2), 5000, 'the replacement serving');
    assert.ok(!r.logs().some((l) => l.event === 'spawn_failed'), 'no failed spawn');
    assert.equal((await request({ port: mport }, { path: '/metrics' })).status, 200);
    assert.ok(flood.closedAfter.length >= 300 - 32, `the endpoint closed all but its 32 (${flood.closedAfter.length} closed)`);
  } finally {
    flood.end();
    await stop(r);
  }
});

test('a bare metricsBind port listens on loopback only', { timeout: 30_000 }, async () => {
  const mport = await freePort();
  const r = await serve([PID_APP, '-b', `127.0.0.1:${await freePort()}`, '--metrics-bind', String(mport)]);
  try {
    const line = await r.waitLog((l) => l.event === 'metrics_listening', 5000, 'metrics listening');
    assert.equal(line.address, `127.0.0.1:${mport}`);
  } finally {
    await stop(r);
  }
});
