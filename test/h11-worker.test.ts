// The h11 worker class (-k h11) on real processes and real sockets: both app interfaces,
// Express and Hono unchanged, TLS, graceful stop, and rejections over raw sockets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { EXAMPLES, freePort, load, request, selfSignedCert, serve, sleep, stop, tmpDir, writeFiles, type Running } from './helpers.ts';

// ------------------------------------------------------------------ raw-socket helpers

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Parse complete HTTP/1.1 responses from `buf`. `head` lists requests that were HEAD (no body). */
function parseResponses(buf: Buffer, headFlags: boolean[] = []): { responses: RawResponse[]; rest: number } {
  const responses: RawResponse[] = [];
  let pos = 0;
  for (;;) {
    const end = buf.indexOf('\r\n\r\n', pos);
    if (end === -1) break;
    const lines = buf.subarray(pos, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3}) [^\r\n]*$/.exec(lines[0]!);
    if (!m) throw new Error(`bad status line ${JSON.stringify(lines[0])}`);
    const status = Number(m[1]);
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) {
      const c = l.indexOf(':');
      if (c <= 0) throw new Error(`bad header line ${JSON.stringify(l)}`);
      const k = l.slice(0, c).toLowerCase();
      headers[k] = headers[k] === undefined ? l.slice(c + 1).trim() : `${headers[k]}, ${l.slice(c + 1).trim()}`;
    }
    let p = end + 4;
    let body = '';
    const isHead = status >= 200 && (headFlags[responses.length] ?? false);
    if (status < 200 || status === 204 || status === 304 || isHead) {
      // no body
    } else if (headers['transfer-encoding'] === 'chunked') {
      const parts: Buffer[] = [];
      for (;;) {
        const le = buf.indexOf('\r\n', p);
        if (le === -1) return { responses, rest: pos };
        const size = parseInt(buf.subarray(p, le).toString('latin1'), 16);
        if (Number.isNaN(size)) throw new Error('bad chunk size');
        if (size === 0) {
          const te = buf.indexOf('\r\n\r\n', le - 2 < p ? p : le - 2);
          if (te === -1) return { responses, rest: pos };
          p = te + 4;
          break;
        }
        if (buf.length < le + 2 + size + 2) return { responses, rest: pos };
        parts.push(buf.subarray(le + 2, le + 2 + size));
        p = le + 2 + size + 2;
      }
      body = Buffer.concat(parts).toString('utf8');
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      if (buf.length < p + n) break;
      body = buf.subarray(p, p + n).toString('utf8');
      p += n;
    } else {
      body = buf.subarray(p).toString('utf8'); // close-delimited
      p = buf.length;
    }
    if (status >= 200) responses.push({ status, headers, body });
    pos = p;
  }
  return { responses, rest: pos };
}

interface RawResult {
  data: Buffer;
  closed: boolean;
  timedOut: boolean;
}

/** Write raw bytes, read until the server closes (or timeout). */
function raw(port: number, data: string | Buffer, opts: { end?: boolean; timeoutMs?: number } = {}): Promise<RawResult> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const sock = net.connect(port, '127.0.0.1', () => {
      sock.write(data);
      if (opts.end) sock.end();
    });
    const timer = setTimeout(() => {
      sock.destroy();
      resolve({ data: Buffer.concat(chunks), closed: false, timedOut: true });
    }, opts.timeoutMs ?? 5000);
    sock.on('data', (d) => chunks.push(d));
    sock.on('error', () => {});
    sock.on('close', () => {
      clearTimeout(timer);
      resolve({ data: Buffer.concat(chunks), closed: true, timedOut: false });
    });
  });
}

/** A kept-alive raw connection: send, then wait for `n` complete responses. */
class RawConn {
  private buf = Buffer.alloc(0);
  closed = false;
  private waiters: (() => void)[] = [];
  private constructor(readonly sock: net.Socket) {
    sock.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    sock.on('close', () => {
      this.closed = true;
      this.wake();
    });
    sock.on('error', () => {});
  }
  static open(port: number): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(new RawConn(s)));
      s.once('error', reject);
    });
  }
  private wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
  text(): string {
    return this.buf.toString('latin1');
  }
  async until(pred: () => boolean, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      if (this.closed) return;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out; got ${JSON.stringify(this.text().slice(0, 500))}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, left);
      });
    }
  }
  async responses(n: number, head: boolean[] = []): Promise<RawResponse[]> {
    await this.until(() => parseResponses(this.buf, head).responses.length >= n);
    const { responses } = parseResponses(this.buf, head);
    assert.ok(responses.length >= n, `expected ${n} responses, got ${responses.length}: ${JSON.stringify(this.text().slice(0, 500))}`);
    return responses;
  }
  write(s: string | Buffer) {
    this.sock.write(s);
  }
  close() {
    this.sock.destroy();
  }
}

// ------------------------------------------------------------------ fixture apps

const dir = tmpDir('arbiter-h11-');
const SEEN = path.join(dir, 'seen.log');
writeFiles(dir, {
  // A node-interface app that logs every request it sees to $H11_SEEN (the smuggling side channel).
  'app.mjs': `
import { appendFileSync } from 'node:fs';
export default function handler(req, res) {
  if (process.env.H11_SEEN) appendFileSync(process.env.H11_SEEN, req.method + ' ' + req.url + '\\n');
  if (req.url === '/crlf') {
    let err = 'none';
    try { res.setHeader('X-Bad', 'a\\r\\nInjected: yes'); } catch (e) { err = e.code || e.name; }
    try { res.writeHead(200, { 'x-bad2': 'b\\nInjected2: yes' }); } catch (e) { err += ',' + (e.code || e.name); }
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('caught ' + err);
    return;
  }
  if (req.url === '/throw') throw new Error('boom');
  // Framing the engine will not send, from a callback (a throw there would end the worker).
  if (req.url === '/badlen') { setTimeout(() => { res.writeHead(200, { 'content-length': 5 }); res.end('hello world'); }, 5); return; }
  if (req.url === '/overflow') {
    res.writeHead(200, { 'content-length': 3 });
    res.write('ab');
    setTimeout(() => res.end('cdef'), 5);
    return;
  }
  if (req.url.startsWith('/slow')) { setTimeout(() => res.end('slow'), 300); return; }
  const parts = [];
  req.on('data', (d) => parts.push(d));
  req.on('end', () => {
    const body = Buffer.concat(parts).toString();
    res.setHeader('content-type', 'text/plain');
    res.setHeader('x-url', req.url);
    res.end(body ? 'echo:' + body : 'hello ' + req.url);
  });
}
`,
  'fetch.mjs': `
export default {
  fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === '/crlf') {
      let err = 'none';
      try { return new Response('x', { headers: { 'x-bad': 'a\\r\\nInjected: yes' } }); } catch (e) { err = e.name; }
      return new Response('caught ' + err);
    }
    if (request.method === 'POST') return request.text().then((t) => new Response('echo:' + t));
    return new Response('hello ' + url.pathname, { headers: { 'content-type': 'text/plain' } });
  },
};
`,
});

async function start(app: string, extra: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<{ r: Running; port: number }> {
  const port = await freePort();
  const r = await serve([app, '-k', 'h11', '-w', '1', '-b', `127.0.0.1:${port}`, ...extra], { env });
  return { r, port };
}

function noCrash(r: Running) {
  const bad = r.logs().filter((l) => l.event === 'worker_crashed' || (l.event === 'worker_exit' && l.reason !== 'stop'));
  assert.deepEqual(bad, [], 'worker crashed');
}

// ------------------------------------------------------------------ behaviour

test('h11 node handler: keep-alive sequence, pipelining in order, HEAD, chunked echo, 100-continue, HTTP/1.0', { timeout: 60_000 }, async () => {
  const { r, port } = await start(path.join(dir, 'app.mjs'));
  try {
    // keep-alive: three requests one after another on one connection
    const c = await RawConn.open(port);
    for (let i = 1; i <= 3; i++) {
      c.write(`GET /k${i} HTTP/1.1\r\nHost: x\r\n\r\n`);
      const rs = await c.responses(i);
      assert.equal(rs[i - 1]!.status, 200);
      assert.equal(rs[i - 1]!.body, `hello /k${i}`);
      assert.equal(rs[i - 1]!.headers.connection, undefined);
      assert.ok(rs[i - 1]!.headers.date);
    }
    assert.equal(c.closed, false);
    c.close();

    // 8 pipelined requests in one write, answered in order
    const reqs = Array.from({ length: 8 }, (_, i) => `GET /p${i} HTTP/1.1\r\nHost: x\r\n${i === 7 ? 'Connection: close\r\n' : ''}\r\n`).join('');
    const p = await raw(port, reqs);
    assert.ok(p.closed);
    const pr = parseResponses(p.data).responses;
    assert.deepEqual(pr.map((x) => x.body), Array.from({ length: 8 }, (_, i) => `hello /p${i}`));
    assert.equal(pr[7]!.headers.connection, 'close');

    // HEAD: headers as for GET, no body bytes
    const h = await raw(port, 'HEAD /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    const ht = h.data.toString('latin1');
    assert.match(ht, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(ht, /content-length: 8\r\n/i);
    assert.ok(ht.endsWith('\r\n\r\n'), JSON.stringify(ht));

    // chunked request body echoed
    const ch = await raw(port, 'POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n');
    const cr = parseResponses(ch.data).responses;
    assert.equal(cr.length, 1);
    assert.equal(cr[0]!.body, 'echo:hello world');

    // Expect: 100-continue: 100 first, then the body is read and echoed
    const e = await RawConn.open(port);
    e.write('POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n');
    await e.until(() => e.text().includes('\r\n\r\n'));
    assert.match(e.text(), /^HTTP\/1\.1 100 Continue\r\n\r\n/);
    e.write('ping');
    await e.until(() => e.text().includes('echo:ping'));
    e.close();

    // HTTP/1.0 without keep-alive: Connection: close and the server closes
    const o = await raw(port, 'GET /old HTTP/1.0\r\n\r\n');
    assert.ok(o.closed && !o.timedOut);
    const or = parseResponses(o.data).responses;
    assert.equal(or.length, 1);
    assert.equal(or[0]!.headers.connection, 'close');
    assert.equal(or[0]!.body, 'hello /old');

    // an app error is a 500 (and logged), and the worker lives on
    const t = await request({ port }, { path: '/throw' });
    assert.equal(t.status, 500);
    await r.waitLog((l) => /app error: Error: boom/.test(l.msg), 5000, 'the app error log line');

    // A Content-Length that does not match the body: a 500 instead of broken framing, logged
    const bl = parseResponses((await raw(port, 'GET /badlen HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).data).responses;
    assert.deepEqual(bl.map((x) => x.status), [500]);
    await r.waitLog((l) => /app error: .*Content-Length does not match/.test(l.msg), 5000, 'the Content-Length log line');
    // ... and more body than declared once the head is out: the connection closes after 'ab'
    const ov = await raw(port, 'GET /overflow HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.ok(ov.closed && !ov.timedOut, 'connection closed');
    assert.match(ov.data.toString('latin1'), /\r\n\r\nab$/);
    noCrash(r);
  } finally {
    await stop(r);
  }
});

test('h11 refuses CR/LF header values in the app; nothing of them reaches the wire', { timeout: 30_000 }, async () => {
  const node = await start(path.join(dir, 'app.mjs'));
  const fetchApp = await start(path.join(dir, 'fetch.mjs'));
  try {
    const a = await raw(node.port, 'GET /crlf HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    const at = a.data.toString('latin1');
    assert.doesNotMatch(at, /Injected/i);
    const ar = parseResponses(a.data).responses;
    assert.equal(ar[0]!.status, 200);
    assert.match(ar[0]!.body, /^caught ERR_\w+,ERR_\w+$/);

    const b = await raw(fetchApp.port, 'GET /crlf HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.doesNotMatch(b.data.toString('latin1'), /Injected/i);
    const br = parseResponses(b.data).responses;
    assert.equal(br[0]!.body, 'caught TypeError');
  } finally {
    await Promise.all([stop(node.r), stop(fetchApp.r)]);
  }
});

test('h11 fetch interface: plain fetch app, POST body, pipelining', { timeout: 30_000 }, async () => {
  const { r, port } = await start(path.join(dir, 'fetch.mjs'));
  try {
    const g = await request({ port }, { path: '/a?b=1' });
    assert.equal(g.status, 200);
    assert.equal(g.body, 'hello /a');
    const pst = await request({ port }, { path: '/p', method: 'POST', body: 'data!' });
    assert.equal(pst.body, 'echo:data!');
    const reqs = Array.from({ length: 8 }, (_, i) => `GET /p${i} HTTP/1.1\r\nHost: x\r\n${i === 7 ? 'Connection: close\r\n' : ''}\r\n`).join('');
    const p = await raw(port, reqs);
    assert.deepEqual(parseResponses(p.data).responses.map((x) => x.body), Array.from({ length: 8 }, (_, i) => `hello /p${i}`));
    noCrash(r);
  } finally {
    await stop(r);
  }
});

test('h11 runs a real Express app unchanged', { timeout: 30_000 }, async () => {
  const { r, port } = await start(path.join(EXAMPLES, 'express-app.js'));
  try {
    const root = await request({ port });
    assert.equal(root.status, 200);
    assert.equal(root.body, 'Hello from Express!\n');
    assert.match(String(root.headers['content-type']), /text\/plain/);
    assert.ok(root.headers.etag);
    const user = await request({ port }, { path: '/users/42' });
    assert.equal(user.status, 200);
    assert.equal(JSON.parse(user.body).id, '42');
    const echo = await request({ port }, { path: '/echo', method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"a":[1,2]}' });
    assert.deepEqual(JSON.parse(echo.body), { received: { a: [1, 2] } });
    const bad = await request({ port }, { path: '/echo', method: 'POST', headers: { 'content-type': 'application/json' }, body: '{nope' });
    assert.equal(bad.status, 400);
    const missing = await request({ port }, { path: '/nowhere' });
    assert.equal(missing.status, 404);
    assert.match(missing.body, /Cannot GET \/nowhere/);
    // keep-alive through Express
    const agent = new (await import('node:http')).Agent({ keepAlive: true, maxSockets: 1 });
    for (let i = 0; i < 5; i++) assert.equal((await request({ port }, { path: `/users/${i}`, agent })).status, 200);
    agent.destroy();
    noCrash(r);
  } finally {
    await stop(r);
  }
});

test('h11 runs a real Hono app unchanged', { timeout: 30_000 }, async () => {
  const { r, port } = await start(path.join(EXAMPLES, 'hono-app.js'));
  try {
    const root = await request({ port });
    assert.equal(root.status, 200);
    assert.equal(root.body, 'Hello from Hono!\n');
    const user = await request({ port }, { path: '/users/42' });
    assert.equal(JSON.parse(user.body).id, '42');
    assert.match(String(user.headers['content-type']), /application\/json/);
    const echo = await request({ port }, { path: '/echo', method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"a":1}' });
    assert.deepEqual(JSON.parse(echo.body), { received: { a: 1 } });
    const missing = await request({ port }, { path: '/nowhere' });
    assert.equal(missing.status, 404);
    noCrash(r);
  } finally {
    await stop(r);
  }
});

test('h11 over TLS with certfile/keyfile', { timeout: 30_000 }, async () => {
  const { key, cert } = selfSignedCert(tmpDir('arbiter-h11-tls-'));
  const { r, port } = await start(path.join(dir, 'app.mjs'), ['--certfile', cert, '--keyfile', key]);
  try {
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, rejectUnauthorized: false });
    const get = (p: string, body?: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = https.request({ host: '127.0.0.1', port, path: p, method: body ? 'POST' : 'GET', agent, ca: readFileSync(cert) }, (res) => {
          let b = '';
          res.on('data', (d) => (b += d));
          res.on('end', () => resolve({ status: res.statusCode!, body: b }));
        });
        req.on('error', reject);
        req.end(body);
      });
    assert.deepEqual(await get('/tls'), { status: 200, body: 'hello /tls' });
    assert.deepEqual(await get('/tls2', 'secret'), { status: 200, body: 'echo:secret' });
    agent.destroy();
    noCrash(r);
  } finally {
    await stop(r);
  }
});

test('h11: TERM under keep-alive load: no errors, clean exit', { timeout: 40_000 }, async () => {
  const { r, port } = await start(path.join(dir, 'app.mjs'), ['--graceful-timeout', '20']);
  const loading = load(port, { connections: 30, maxMs: 8000, until: r.exited });
  const slow = Array.from({ length: 3 }, () => request({ port }, { path: '/slow' }));
  await sleep(1000);
  const { code } = await stop(r, 'SIGTERM');
  const res = await loading;
  const slowReplies = await Promise.all(slow);
  assert.equal(code, 0);
  assert.equal(res.errors, 0, JSON.stringify(res.errorKinds));
  assert.equal(res.non2xx, 0);
  assert.ok(res.ok > 100, `only ${res.ok} requests`);
  for (const s of slowReplies) assert.equal(s.status, 200);
});

// ------------------------------------------------------------------ strictness over raw sockets

const SMUGGLING: [string, string, number][] = [
  ['CL + TE', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n', 400],
  ['TE.TE: chunked, identity', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n', 400],
  ['TE.TE: xchunked', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n', 400],
  ['TE.TE: space before colon', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n', 400],
  ['TE.TE: obs-fold', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n', 400],
  ['TE.TE: gzip, chunked', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n', 501],
  ['TE.TE: vertical tab', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n', 400],
  ['TE in HTTP/1.0', 'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n', 400],
  ['duplicate CL', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n', 400],
  ['CL list', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0, 44\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n', 400],
  ['CL with sign', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n', 400],
  ['bad chunk size', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n', 400],
  ['chunk size overflow', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF1\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n', 400],
  ['chunk data without CRLF', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n', 400],
  ['bare LF', 'GET / HTTP/1.1\nHost: x\n\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n', 400],
  ['bare CR', 'GET / HTTP/1.1\rHost: x\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n', 400],
  ['obs-fold', 'GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n', 400],
  ['missing Host', 'GET / HTTP/1.1\r\nX: y\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n', 400],
  ['duplicate Host', 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n', 400],
  ['NUL in value', 'GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n', 400],
  ['HTTP/2.0', 'GET / HTTP/2.0\r\nHost: x\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n', 505],
  ['garbage version', 'GET / HTTX/1.1\r\nHost: x\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n', 400],
  ['long request line', `GET /${'a'.repeat(5000)} HTTP/1.1\r\nHost: x\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n`, 414],
  ['too many fields', `GET / HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 120 }, (_, i) => `X-${i}: v\r\n`).join('')}\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n`, 431],
  ['field too large', `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(9000)}\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n`, 431],
  ['body over limitRequestBody', `POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n${'z'.repeat(2000)}GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n`, 413],
  ['chunked body over limitRequestBody', `POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n${'z'.repeat(2000)}\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n`, 413],
  // No tunnels: refused before the app (whose res.end would otherwise have nothing valid to send).
  ['CONNECT', 'CONNECT smuggled.example:443 HTTP/1.1\r\nHost: smuggled.example:443\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n', 501],
];

test('h11 rejects smuggling-shaped requests: one response with the right status, then close; nothing behind reaches the app', { timeout: 60_000 }, async () => {
  const seen = SEEN + '.smuggle';
  const { r, port } = await start(path.join(dir, 'app.mjs'), ['--limit-request-body', '1024'], { H11_SEEN: seen });
  try {
    for (const [name, bytes, status] of SMUGGLING) {
      const res = await raw(port, bytes);
      assert.ok(res.closed && !res.timedOut, `${name}: connection not closed`);
      const text = res.data.toString('latin1');
      const statuses = [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
      assert.deepEqual(statuses, [status], `${name}: got ${JSON.stringify(text.slice(0, 300))}`);
      assert.match(text, /\r\nConnection: close\r\n/i, name);
    }
    const log = existsSync(seen) ? readFileSync(seen, 'utf8') : '';
    assert.doesNotMatch(log, /smuggled/, 'a smuggled request reached the app');
    // the worker still serves
    assert.equal((await request({ port }, { path: '/after' })).body, 'hello /after');
    noCrash(r);
  } finally {
    await stop(r);
  }
});
