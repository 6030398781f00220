// WebSockets and the lifecycle exports (SPEC §3, issue 11) on both HTTP classes: `ws`,
// socket.io and @hono/node-ws attached with onServer(server), used unchanged; startup()
// before the first request, shutdown() on a graceful stop; long-lived connections drained.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import path from 'node:path';
import WebSocket from 'ws';
import { io as ioClient } from 'socket.io-client';
import { freePort, request, selfSignedCert, serve, sleep, stop, tmpDir, waitFor } from './helpers.ts';
import { SERVICES, assertNoErrors, fromEveryWorker, hupsUnderLoad, markers, sseOpen, wsEcho, wsOpen } from './services.ts';

const CLASSES = ['http', 'h11'] as const;

for (const cls of CLASSES) {
  test(`-k ${cls}: an exported Express app with onServer(ws), startup() and shutdown(): echo from both workers, startup before the first request, shutdown on TERM`, { timeout: 90_000 }, async () => {
    const dir = tmpDir('arbiter-lifecycle-');
    const port = await freePort();
    const r = await serve([path.join(SERVICES, 'express-ws-app.mjs:app'), '-k', cls, '-w', '2', '-b', `127.0.0.1:${port}`], { env: { MARKERS: dir } });
    try {
      // Every worker that booted ran startup() before it said it was serving.
      assert.equal(markers(dir, 'startup').length, 2);
      const seen = await fromEveryWorker(async () => {
        const res = JSON.parse((await request({ port })).body);
        assert.equal(res.startedBeforeRequest, true, 'a request before startup() finished');
        return String(res.pid);
      }, 2, 'HTTP');
      for (const pid of seen) assert.ok(markers(dir, 'startup').includes(pid), `startup ran in ${pid}`);
      await fromEveryWorker(async () => {
        const echo = await wsEcho(port, `echo on ${cls}`);
        assert.equal(echo.reply, `echo on ${cls}`);
        return echo.pid;
      }, 2, 'the WebSocket echo');
      assertNoErrors(await hupsUnderLoad(r, port, { times: 2, workers: 2 }));
      // Clients connected at the stop hear shutdown(): a WebSocket's 1001, an event stream's
      // last event, long before gracefulTimeout (30 s).
      const open = await wsOpen(port);
      const closed = new Promise<number>((resolve) => open.once('close', (code) => resolve(code)));
      const events = await sseOpen(port, '/events');
      const last = r.workers();
      const t0 = Date.now();
      assert.equal((await stop(r)).code, 0);
      assert.equal(await closed, 1001);
      await events.ended;
      assert.match(events.text(), /event: bye\ndata: worker stopping/);
      assert.ok(Date.now() - t0 < 10_000);
      for (const pid of last) assert.ok(markers(dir, 'shutdown').includes(String(pid)), `shutdown ran in ${pid}`);
      // Each worker retired by the HUPs ran shutdown too.
      assert.equal(markers(dir, 'shutdown').length, markers(dir, 'startup').length);
    } finally {
      if (r.proc.exitCode === null) await stop(r);
    }
  });

  test(`-k ${cls}: a WebSocket and an event stream the app does not end stay open through a graceful stop until gracefulTimeout`, { timeout: 60_000 }, async () => {
    const dir = tmpDir('arbiter-ws-drain-');
    const port = await freePort();
    // Its shutdown() leaves the WebSockets open here.
    const r = await serve([path.join(SERVICES, 'express-ws-app.mjs:app'), '-e', 'KEEP_WEBSOCKETS=1', '-k', cls, '-w', '1', '-b', `127.0.0.1:${port}`, '--graceful-timeout', '3'], { env: { MARKERS: dir } });
    try {
      const ws = await wsOpen(port);
      let closedAt = 0;
      ws.on('close', () => (closedAt = Date.now()));
      const events = await sseOpen(port, '/events');
      let eventsEnded = 0;
      void events.ended.then((t) => (eventsEnded = t));
      const t0 = Date.now();
      r.signal('SIGTERM');
      await sleep(1500);
      assert.equal(closedAt, 0, 'the WebSocket was cut before gracefulTimeout');
      assert.equal(eventsEnded, 0, 'the event stream was cut before gracefulTimeout');
      ws.send('still there');
      const echo = await new Promise<string>((resolve) => ws.once('message', (m) => resolve(String(m))));
      assert.equal(echo, 'still there');
      await waitFor(() => closedAt > 0 && eventsEnded > 0, 10_000, 'both cut at gracefulTimeout');
      assert.ok(closedAt - t0 >= 2500, `the WebSocket cut after ${closedAt - t0} ms`);
      assert.ok(eventsEnded - t0 >= 2500, `the event stream cut after ${eventsEnded - t0} ms`);
      assert.equal((await r.exited).code, 0);
    } finally {
      if (r.proc.exitCode === null) await stop(r);
    }
  });

  test(`-k ${cls}: socket.io (WebSocket transport) on two workers through onServer; a connected client is disconnected on TERM`, { timeout: 90_000 }, async () => {
    const port = await freePort();
    const r = await serve([path.join(SERVICES, 'socketio-app.mjs:app'), '-k', cls, '-w', '2', '-b', `127.0.0.1:${port}`]);
    const connect = () => {
      const sock = ioClient(`http://127.0.0.1:${port}`, { transports: ['websocket'], reconnection: false, timeout: 5000 });
      return new Promise<{ pid: string; sock: typeof sock }>((resolve, reject) => {
        sock.once('hello', (pid: string) => resolve({ pid, sock }));
        sock.once('connect_error', reject);
      });
    };
    try {
      await fromEveryWorker(async () => {
        const { pid, sock } = await connect();
        const echoed = await sock.timeout(5000).emitWithAck('echo', { n: 1 });
        assert.deepEqual(echoed, { n: 1 });
        sock.close();
        return pid;
      }, 2, 'socket.io');
      assert.equal((await request({ port })).status, 200);
      assertNoErrors(await hupsUnderLoad(r, port, { times: 2, workers: 2 }));
      const { sock } = await connect();
      const gone = new Promise<string>((resolve) => sock.once('disconnect', (reason) => resolve(reason)));
      assert.equal((await stop(r)).code, 0);
      assert.match(await gone, /transport close|io server disconnect/);
    } finally {
      if (r.proc.exitCode === null) await stop(r);
    }
  });

  test(`-k ${cls}: Hono with @hono/node-ws: injectWebSocket(server) in onServer`, { timeout: 60_000 }, async () => {
    const port = await freePort();
    const r = await serve([path.join(SERVICES, 'hono-ws-app.mjs'), '-k', cls, '-w', '2', '-b', `127.0.0.1:${port}`]);
    try {
      assert.match((await request({ port })).body, /^hono \d+\n$/);
      assert.equal((await wsEcho(port, 'ping', '/ws')).reply, 'hono ping');
      assertNoErrors(await hupsUnderLoad(r, port, { times: 2, workers: 2 }));
      assert.equal((await wsEcho(port, 'again', '/ws')).reply, 'hono again');
      // Not a WebSocket route: Hono's own answer, and the connection is not handed over.
      await assert.rejects(wsEcho(port, 'x', '/'), /Unexpected server response: 200/);
      assert.equal((await stop(r)).code, 0);
    } finally {
      if (r.proc.exitCode === null) await stop(r);
    }
  });
}

test('TLS on both classes: WebSocket echo over wss through onServer, and a request in flight at TERM still completes', { timeout: 60_000 }, async () => {
  const dir = tmpDir('arbiter-wss-');
  const { key, cert } = selfSignedCert(dir);
  for (const cls of CLASSES) {
    const port = await freePort();
    const r = await serve([path.join(SERVICES, 'express-ws-app.mjs:app'), '-k', cls, '-b', `127.0.0.1:${port}`, '--certfile', cert, '--keyfile', key], { env: { MARKERS: dir } });
    try {
      const echo = await new Promise<string>((resolve, reject) => {
        const ws = new WebSocket(`wss://127.0.0.1:${port}/`, { rejectUnauthorized: false });
        ws.on('open', () => ws.send('over tls'));
        ws.on('message', (m) => {
          ws.close();
          resolve(String(m));
        });
        ws.on('error', reject);
      });
      assert.equal(echo, 'over tls', cls);
      const slow = new Promise<{ status: number; body: string }>((resolve, reject) => {
        https
          .get({ host: '127.0.0.1', port, path: '/slow', rejectUnauthorized: false, agent: new https.Agent({ keepAlive: true, rejectUnauthorized: false }) }, (res) => {
            let body = '';
            res.on('data', (d) => (body += d));
            res.on('end', () => resolve({ status: res.statusCode!, body }));
          })
          .on('error', reject);
      });
      await sleep(300);
      r.signal('SIGTERM');
      assert.deepEqual(await slow, { status: 200, body: 'slow done\n' }, `${cls}: the request in flight at TERM`);
      assert.equal((await r.exited).code, 0);
    } finally {
      if (r.proc.exitCode === null) await stop(r);
    }
  }
});
