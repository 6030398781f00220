// Real apps used unchanged (SPEC §3): a plain handler, Express and Hono, over the node and
// fetch interfaces where they support them; .ts, .cjs and package apps.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { existsSync, readFileSync } from 'node:fs';
import https from 'node:https';
import { EXAMPLES, FIXTURES, freePort, request, run, selfSignedCert, serve, sleep, stop, tmpDir, writeFiles } from './helpers.ts';

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

test('fetch apps on -k http: a light Request (method, url, headers, body) and request.signal when the client goes away', { timeout: 30_000 }, async () => {
  const dir = tmpDir('arbiter-fetch-http-');
  const aborted = path.join(dir, 'aborted');
  writeFiles(dir, {
    'app.mjs': `
import { writeFileSync } from 'node:fs';
export default {
  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === '/empty') return new Response(null, { status: 204 });
    if (url.pathname === '/wait') {
      await new Promise((resolve) => request.signal.addEventListener('abort', resolve));
      writeFileSync(process.env.ABORTED, 'aborted');
      return new Response('late');
    }
    const body = request.method === 'POST' ? await request.text() : '';
    return Response.json({ method: request.method, url: request.url, agent: request.headers.get('x-agent'), body, isRequest: request instanceof Request });
  },
};
`,
  });
  const port = await freePort();
  const r = await serve([path.join(dir, 'app.mjs'), '-k', 'http', '-b', `127.0.0.1:${port}`], { env: { ABORTED: aborted } });
  try {
    const get = JSON.parse((await request({ port }, { path: '/a?b=1', headers: { 'x-agent': 'test' } })).body);
    assert.deepEqual(get, { method: 'GET', url: `http://127.0.0.1:${port}/a?b=1`, agent: 'test', body: '', isRequest: true });
    const post = JSON.parse((await request({ port }, { path: '/p', method: 'POST', body: 'payload' })).body);
    assert.equal(post.body, 'payload');
    const empty = await request({ port }, { path: '/empty' });
    assert.equal(empty.status, 204);
    assert.equal(empty.headers['content-length'], undefined);
    // a method the native Request refuses still reaches the app by name
    assert.equal(JSON.parse((await request({ port }, { path: '/t', method: 'TRACE' })).body).method, 'TRACE');
    // the client leaves while the app waits: request.signal aborts
    const sock = net.connect(port, '127.0.0.1');
    await new Promise((resolve) => sock.once('connect', resolve));
    sock.write('GET /wait HTTP/1.1\r\nHost: x\r\n\r\n');
    await sleep(300);
    sock.destroy();
    const until = Date.now() + 5000;
    while (!existsSync(aborted) && Date.now() < until) await sleep(50);
    assert.ok(existsSync(aborted), 'request.signal did not abort');
  } finally {
    await stop(r);
  }
});

test('real Koa and Fastify apps, unchanged, on both HTTP classes', { timeout: 60_000 }, async () => {
  for (const [file, name] of [['koa-app.js', 'Koa'], ['fastify-app.js', 'Fastify']] as const) {
    for (const cls of ['http', 'h11']) {
      const r = await serving([`${EXAMPLES}/${file}`, '-k', cls], async (port) => {
        const hello = await request({ port });
        assert.equal(hello.body, `Hello from ${name}!\n`, `${name} on ${cls}`);
        assert.match(String(hello.headers['content-type']), /^text\/plain/);
        assert.equal(JSON.parse((await request({ port }, { path: '/users/9' })).body).id, '9');
        const echo = await request({ port }, { path: '/echo', method: 'POST', headers: json, body: '{"k":[1]}' });
        assert.deepEqual(JSON.parse(echo.body), { received: { k: [1] } }, `${name} on ${cls}: POST body`);
        assert.equal((await request({ port }, { path: '/nope' })).status, 404);
      });
      assert.match(r.logs().find((l) => l.event === 'starting')!.msg, new RegExp(`node: ${name} app`));
    }
  }
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

test('an app that needs NODE_EXTRA_CA_CERTS while it loads starts: the check does not fail it for lack of them', { timeout: 30_000 }, async () => {
  // The app check starts without the extra certificates (src/appcheck.ts); a failed load
  // there is tried again as a worker runs it, with them.
  const dir = tmpDir('arbiter-extra-ca-');
  const { key, cert } = selfSignedCert(dir);
  const tlsServer = https.createServer({ key: readFileSync(key), cert: readFileSync(cert) }, (_req, res) => res.end('trusted'));
  await new Promise<void>((resolve) => tlsServer.listen(0, '127.0.0.1', resolve));
  writeFiles(dir, {
    'app.mjs': `import https from 'node:https';
const said = await new Promise((resolve, reject) =>
  https.get(process.env.TRUSTED_URL, (res) => { let b = ''; res.on('data', (d) => (b += d)); res.on('end', () => resolve(b)); }).on('error', reject));
export const handler = (req, res) => res.end('the server said ' + said);
`,
  });
  const port = await freePort();
  const env = { NODE_EXTRA_CA_CERTS: cert, TRUSTED_URL: `https://127.0.0.1:${(tlsServer.address() as net.AddressInfo).port}/` };
  try {
    const r = await serve([path.join(dir, 'app.mjs:handler'), '-b', `127.0.0.1:${port}`, '-w', '1'], { env });
    try {
      assert.equal((await request({ port })).body, 'the server said trusted');
    } finally {
      await stop(r);
    }
    // Without the certificate the app cannot load, and the start says so in one line.
    const bad = run([path.join(dir, 'app.mjs:handler'), '-b', `127.0.0.1:${port}`, '-w', '1'], { env: { ...env, NODE_EXTRA_CA_CERTS: '' } });
    assert.equal((await bad.exited).code, 3);
    assert.match(bad.stderr(), /self-signed certificate/);
  } finally {
    tlsServer.close();
  }
});
