// Real apps used unchanged (SPEC §3): a plain handler, Express and Hono, over the node and
// fetch interfaces where they support them; .ts, .cjs and package apps.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { EXAMPLES, FIXTURES, freePort, request, serve, stop } from './helpers.ts';

async function serving(app: string[], check: (port: number) => Promise<void>, extra: string[] = []) {
  const port = await freePort();
  const r = await serve([...app, '-b', `127.0.0.1:${port}`, ...extra], { cwd: path.join(FIXTURES, 'apps') });
  try {
    await check(port);
    return r;
  } finally {
    await stop(r);
  }
}

const json = { 'content-type': 'application/json' };

test('plain handler over the node interface and the fetch interface', { timeout: 30_000 }, async () => {
  const node = await serving([`${EXAMPLES}/hello.js:handler`], async (port) => {
    assert.equal((await request({ port })).body, 'Hello, world!\n');
  });
  assert.match(node.logs().find((l) => l.event === 'starting')!.msg, /node: a function of 2 parameters/);
  const fetch = await serving([`${EXAMPLES}/hello.js:fetchHandler`], async (port) => {
    const r = await request({ port });
    assert.equal(r.body, 'Hello, world!\n');
    assert.equal(r.headers['content-type'], 'text/plain');
  });
  assert.match(fetch.logs().find((l) => l.event === 'starting')!.msg, /fetch: a function of 1 parameter/);
});

test('a real Express app, unchanged, over the node interface', { timeout: 30_000 }, async () => {
  await serving([`${EXAMPLES}/express-app.js`], async (port) => {
    assert.equal((await request({ port })).body, 'Hello from Express!\n');
    const user = await request({ port, }, { path: '/users/42' });
    assert.equal(JSON.parse(user.body).id, '42');
    const echo = await request({ port }, { path: '/echo', method: 'POST', headers: json, body: JSON.stringify({ a: [1, 2] }) });
    assert.deepEqual(JSON.parse(echo.body), { received: { a: [1, 2] } });
    assert.equal((await request({ port }, { path: '/nope' })).status, 404);
  });
});

test('a real Hono app, unchanged, over the fetch interface and over the node interface', { timeout: 30_000 }, async () => {
  const check = async (port: number) => {
    assert.equal((await request({ port })).body, 'Hello from Hono!\n');
    assert.equal(JSON.parse((await request({ port }, { path: '/users/7' })).body).id, '7');
    const echo = await request({ port }, { path: '/echo', method: 'POST', headers: json, body: '{"x":true}' });
    assert.deepEqual(JSON.parse(echo.body), { received: { x: true } });
    assert.equal((await request({ port }, { path: '/nope' })).status, 404);
  };
  const viaFetch = await serving([`${EXAMPLES}/hono-app.js`], check);
  assert.match(viaFetch.logs().find((l) => l.event === 'starting')!.msg, /fetch: object with a fetch method/);
  await serving([`${EXAMPLES}/hono-node.js:listener`, '--interface', 'node'], check);
});

test('TypeScript, CommonJS and package apps load without a build step', { timeout: 30_000 }, async () => {
  await serving(['typed.ts:handler'], async (port) => assert.equal((await request({ port })).body, 'hello from typescript\n'));
  await serving(['typed:handler'], async (port) => assert.equal((await request({ port })).body, 'hello from typescript\n'));
  await serving(['common.cjs:handler'], async (port) => assert.equal((await request({ port })).body, 'hello from commonjs\n'));
  await serving(['packaged-app:app'], async (port) => assert.equal((await request({ port })).body, 'hello from a package\n'));
});

test('an app error becomes a 500 and the worker keeps serving', { timeout: 30_000 }, async () => {
  const port = await freePort();
  const r = await serve([path.join(FIXTURES, 'apps', 'faulty.js'), '-b', `127.0.0.1:${port}`]);
  try {
    assert.equal((await request({ port }, { path: '/throw' })).status, 500);
    assert.equal((await request({ port }, { path: '/reject' })).status, 500);
    assert.equal((await request({ port })).status, 200);
    await r.waitLog((l) => l.level === 'error' && /app error: Error: kaboom/.test(l.msg), 5000, 'the app error in the log');
  } finally {
    await stop(r);
  }
});
