// Script mode (SPEC §3, interface `listen`, issue 11): a module that makes its own server
// and calls listen() runs unchanged in every worker; its listen() takes the inherited
// listener, and the worker's policies still hold.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { freePort, request, run, serve, sleep, stop, tmpDir, waitFor, writeFiles } from './helpers.ts';
import { SERVICES, assertNoErrors, fromEveryWorker, hupsUnderLoad, markers, wsEcho } from './services.ts';

test('a script with Express and ws on one http.Server: HTTP and WebSocket echo from both workers, five HUPs under load, TERM runs its close handler', { timeout: 120_000 }, async () => {
  const dir = tmpDir('arbiter-ws-script-');
  const port = await freePort();
  const r = await serve([path.join(SERVICES, 'ws-script.mjs'), '-w', '2', '-b', `127.0.0.1:${port}`], { env: { MARKERS: dir } });
  try {
    assert.match(r.logs().find((l) => l.event === 'starting')!.msg, /listen: the module called listen\(\) while loading \(port 3000\)/);
    await fromEveryWorker(async () => (await request({ port })).headers['x-pid'] as string, 2, 'HTTP');
    await fromEveryWorker(async () => {
      const echo = await wsEcho(port, 'hello over ws');
      assert.equal(echo.reply, 'hello over ws');
      return echo.pid;
    }, 2, 'the WebSocket echo');
    assertNoErrors(await hupsUnderLoad(r, port, { times: 5, workers: 2 }));
    assert.equal((await wsEcho(port, 'after the reloads')).reply, 'after the reloads');
    const last = r.workers();
    const { code } = await stop(r);
    assert.equal(code, 0);
    for (const pid of last) assert.ok(markers(dir, 'close').includes(String(pid)), `worker ${pid} ran the script's server.on('close')`);
  } finally {
    if (r.proc.exitCode === null) await stop(r);
  }
});

test('no bind given: the master binds what the script asked for, one listener per server in the order they listen', { timeout: 60_000 }, async () => {
  const [main, admin] = [await freePort(), await freePort()];
  const r = await serve([path.join(SERVICES, 'two-servers.mjs'), '-w', '2'], { env: { MAIN_PORT: String(main), ADMIN_PORT: String(admin) } });
  try {
    assert.deepEqual(r.logs().find((l) => l.event === 'listening')!.listeners, [`127.0.0.1:${main}`, `127.0.0.1:${admin}`]);
    assert.match((await request({ port: main })).body, /^main \d+\n$/);
    // The admin server's handler reads the first server's address(): the real listener's.
    assert.equal((await request({ port: admin })).body, `admin ${main}\n`);
    assert.equal((await stop(r)).code, 0);
  } finally {
    if (r.proc.exitCode === null) await stop(r);
  }
});

test('a plain http.createServer(...).listen(PORT) script: served where `node script.js` would, with the worker policies (keep-alive, Connection: close, headerTimeout, access log)', { timeout: 90_000 }, async () => {
  const dir = tmpDir('arbiter-plain-script-');
  const port = await freePort();
  // The script names its port in its code, as scripts do.
  writeFiles(dir, { 'server.cjs': readFileSync(path.join(SERVICES, 'plain-script.cjs'), 'utf8').replace('listen(3000)', `listen(${port})`) });
  const log = path.join(dir, 'access.log');
  const r = await serve(['server.cjs', '-w', '2', '--keep-alive', '0', '--header-timeout', '1', '--access-log', log], { cwd: dir });
  try {
    const listening = r.logs().find((l) => l.event === 'listening')!.listeners as string[];
    assert.match(listening[0]!, new RegExp(`^(\\[::\\]|0\\.0\\.0\\.0):${port}$`));
    const res = await request({ port }, { path: '/hello?x=1' });
    assert.equal(res.body, 'plain GET /hello?x=1\n');
    // keepalive 0: the worker's policy on the script's server.
    assert.equal(res.headers.connection, 'close');
    await waitFor(() => existsSync(log) && readFileSync(log, 'utf8').includes('"GET /hello?x=1 HTTP/1.1" 200'), 5000, 'the access log line');
    // headerTimeout on the script's server: a head that never completes gets 408.
    const slow = net.connect(port, '127.0.0.1');
    let got = '';
    slow.on('data', (d) => (got += d));
    slow.write('GET / HTTP/1.1\r\nHost: x\r\n');
    await waitFor(() => slow.destroyed || got.includes('408'), 5000, 'a 408 for the unfinished head');
    slow.destroy();
    assert.match(got, /^HTTP\/1\.1 408/);
    const loadDone = hupsUnderLoad(r, port, { times: 2, workers: 2 });
    assertNoErrors(await loadDone);
    assert.equal((await stop(r)).code, 0);
  } finally {
    if (r.proc.exitCode === null) await stop(r);
  }
});

test('a module that neither exports an app nor listens is a one-line boot failure; -k h11 refuses a script with one line', { timeout: 60_000 }, async () => {
  const none = run([path.join(SERVICES, 'no-listen.mjs'), '-b', `127.0.0.1:${await freePort()}`]);
  const n = await none.exited;
  assert.equal(n.code, 3);
  const line = none.stderr().trim().split('\n').filter((l) => !l.startsWith('{'));
  assert.equal(line.length, 1, none.stderr());
  assert.match(line[0]!, /^arbiter: error: app module .*no-listen\.mjs has no export "default" \(it exports: answer\) and did not call listen\(\) while loading/);

  const h11 = run([path.join(SERVICES, 'ws-script.mjs'), '-k', 'h11', '-b', `127.0.0.1:${await freePort()}`]);
  const h = await h11.exited;
  assert.equal(h.code, 2);
  assert.match(h11.stderr(), /^arbiter: error: app module .*ws-script\.mjs calls listen\(\) itself \(script mode, interface listen\), which only -k http can run: h11 serves with its own engine/m);
  assert.equal(h11.stderr().trim().split('\n').length, 1, h11.stderr());

  const explicit = run([path.join(SERVICES, 'ws-script.mjs'), '-k', 'h11', '--interface', 'listen']);
  assert.equal((await explicit.exited).code, 2);
  assert.match(explicit.stderr(), /interface listen \(script mode\) needs -k http/);
});

test('a script that awaits before it listens (an async main) is found, and one that listens late past its binds gets an error event, not a bind', { timeout: 60_000 }, async () => {
  const dir = tmpDir('arbiter-async-script-');
  const port = await freePort();
  writeFiles(dir, {
    'main.mjs': `
import http from 'node:http';
async function main() {
  await new Promise((r) => setTimeout(r, 300)); // connect to a database, say
  const server = http.createServer((req, res) => res.end('async main\\n'));
  await new Promise((r) => server.listen(${port}, r));
  setTimeout(() => {
    const extra = http.createServer();
    extra.on('error', (err) => console.error('EXTRA', err.code));
    extra.listen(0);
  }, 500);
}
main();
`,
  });
  const r = await serve(['main.mjs'], { cwd: dir });
  try {
    assert.equal((await request({ port })).body, 'async main\n');
    await r.waitLog((l) => l.event === 'listen_unbound' && /server 2 \(port 0\) has no listener to take/.test(l.msg), 5000, 'the late listen() refused');
    await sleep(200);
    assert.equal((await request({ port })).body, 'async main\n');
  } finally {
    await stop(r);
  }
});
