// The master starts without TurboFan and turns it back on when ready, and so does each worker
// while it loads its class and the app, back on as it reports booted (src/core/v8-at-start.ts),
// unless node's own flags say otherwise. `--trace-opt` makes V8 print each function it
// optimises on the process's stdout (a worker's stdout is relayed into the master's log).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { userSetFlags } from '../src/core/v8-at-start.ts';
import { BIN, FIXTURES, freePort, request, serve, stop, waitFor } from './helpers.ts';

const CHATTY = `${FIXTURES}/apps/chatty.js:handler`;
// bootHot() runs hot while the module loads, serveHot() in every request.
const HOT = `${FIXTURES}/apps/hot.js:handler`;
const optimised = (stdout: string) => stdout.split('\n').filter((l) => l.includes('completed optimizing') && l.includes('TURBOFAN'));
/** The same, from the workers' stdout as the master's log relays it. */
const optimisedInWorkers = (r: Awaited<ReturnType<typeof serve>>) =>
  r.logs().filter((l) => l.role === 'worker' && l.stream === 'stdout').map((l) => String(l.msg)).filter((m) => m.includes('completed optimizing') && m.includes('TURBOFAN'));

test("the user's own flags are left alone", () => {
  assert.equal(userSetFlags([], ''), false);
  assert.equal(userSetFlags(['--trace-opt', '--max-old-space-size=100'], '--enable-source-maps'), false);
  assert.equal(userSetFlags(['--no-opt'], ''), true);
  assert.equal(userSetFlags([], '--turbofan'), true);
  assert.equal(userSetFlags([], '--max-old-space-size=64 --semi-space-growth-factor=4'), true);
  assert.equal(userSetFlags(['--no-turbofan'], ''), true);
});

test('nothing is optimised while the master starts; its hot code is once it is ready', { timeout: 60_000 }, async () => {
  const port = await freePort();
  const r = await serve([CHATTY, '-b', `127.0.0.1:${port}`, '-w', '1'], { cmd: [process.execPath, '--trace-opt', BIN] });
  try {
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(optimised(r.stdout()), [], 'optimised during the start');
    // Relaying the worker's lines is the master's hot path: it is optimised once it runs.
    await waitFor(async () => {
      await request({ port }, { path: '/?lines=500' });
      return optimised(r.stdout()).length > 0;
    }, 30_000, 'an optimised function in the master after ready');
  } finally {
    await stop(r);
  }
});

test('a master started with --no-turbofan stays without it', { timeout: 60_000 }, async () => {
  const port = await freePort();
  const r = await serve([CHATTY, '-b', `127.0.0.1:${port}`, '-w', '1'], { cmd: [process.execPath, '--no-turbofan', '--trace-opt', BIN] });
  try {
    for (let i = 0; i < 40; i++) await request({ port }, { path: '/?lines=500' });
    await r.waitLog((l) => l.msg === 'line 499 of 500', 10_000, 'the last relayed line');
    assert.deepEqual(optimised(r.stdout()), []);
  } finally {
    await stop(r);
  }
});

test("nothing is optimised while a worker loads the app; the app's hot code is once the worker serves", { timeout: 60_000 }, async () => {
  const port = await freePort();
  const r = await serve([HOT, '-b', `127.0.0.1:${port}`, '-w', '1', '--node-args=--trace-opt']);
  try {
    // Without the quiet boot, bootHot() and the module's loop are optimised as the app loads.
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(optimisedInWorkers(r), [], 'optimised while the worker booted');
    await waitFor(async () => {
      await request({ port });
      return optimisedInWorkers(r).some((m) => /serveHot|handler/.test(m));
    }, 30_000, "the app's request path optimised once the worker serves");
    assert.ok(!optimisedInWorkers(r).some((m) => m.includes('bootHot')), 'bootHot ran only while booting');
  } finally {
    await stop(r);
  }
});

test('a worker given --no-turbofan in nodeArgs stays without it', { timeout: 60_000 }, async () => {
  const port = await freePort();
  const r = await serve([HOT, '-b', `127.0.0.1:${port}`, '-w', '1', '--node-args=--no-turbofan', '--node-args=--trace-opt']);
  try {
    for (let i = 0; i < 40; i++) assert.equal((await request({ port })).status, 200);
    // What the worker printed is relayed before it exits; the log is complete after the stop.
    await stop(r);
    assert.deepEqual(optimisedInWorkers(r), []);
  } finally {
    if (r.proc.exitCode === null) await stop(r);
  }
});
