// h11 writes responses straight to the socket's libuv handle (workers/h11/handle-io.ts). These
// are the cases where the kernel cannot take a write at once, so libuv keeps it in flight:
// responses far larger than a socket buffer to a client that does not read yet, on keep-alive,
// before a close, and streamed with write()/'drain' backpressure. Every byte must arrive in
// order, a close must wait for what is in flight, and the fallback (under
// --pending-deprecation, where touching process.binding would print DEP0111) must behave alike.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { freePort, serve, sleep, stop, tmpDir, writeFiles, type Running } from './helpers.ts';

const dir = tmpDir('arbiter-h11-handle-io-');
const MB = 1024 * 1024;
writeFiles(dir, {
  'app.mjs': `
    const block = (n, seed) => { const b = Buffer.alloc(n); for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 255; return b; };
    const big = block(${24 * MB}, 7);
    let drains = 0;
    export default function handler(req, res) {
      if (req.url === '/big') {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': big.length });
        res.end(big);
      } else if (req.url === '/stream') {
        // 16 MiB in 64 KiB chunks, waiting for 'drain' whenever write() says so.
        const chunk = block(64 * 1024, 3);
        let left = 256;
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        const pump = () => {
          while (left > 0) {
            left--;
            if (!res.write(chunk)) { res.once('drain', () => { drains++; pump(); }); return; }
          }
          res.end();
        };
        pump();
      } else if (req.url === '/drains') {
        res.end(String(drains));
      } else {
        res.end('small ' + req.url);
      }
    }
  `,
});

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
function expected(n: number, seed: number): string {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 255;
  return sha(b);
}

async function start(extra: string[] = []): Promise<{ r: Running; port: number }> {
  const port = await freePort();
  const r = await serve([path.join(dir, 'app.mjs'), '-k', 'h11', '-w', '1', '-b', `127.0.0.1:${port}`, ...extra]);
  return { r, port };
}

/**
 * Send `raw` on a fresh connection, read nothing for `holdMs` (so the server's writes fill the
 * socket buffers and stay in flight), then read until the server closes or `until(last chunk)`.
 * With `slowly`, reading stops for that many ms after every MiB.
 */
function exchange(
  port: number, raw: string, holdMs: number, until: (last: Buffer) => boolean, slowly = 0,
): Promise<{ data: Buffer; closedByServer: boolean }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const sock = net.connect({ port, host: '127.0.0.1' });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no complete answer after 20 s (${size} bytes)`));
    }, 20_000);
    const done = (closedByServer: boolean) => {
      clearTimeout(timer);
      sock.destroy();
      resolve({ data: Buffer.concat(chunks), closedByServer });
    };
    sock.on('connect', () => {
      sock.pause();
      sock.write(raw);
      setTimeout(() => sock.resume(), holdMs);
    });
    let nextPause = MB;
    sock.on('data', (d) => {
      chunks.push(d);
      size += d.length;
      if (until(d)) return done(false);
      if (slowly > 0 && size >= nextPause) {
        nextPause += MB;
        sock.pause();
        setTimeout(() => sock.resume(), slowly);
      }
    });
    sock.on('end', () => done(true));
    sock.on('error', reject);
  });
}

/** Split `buf` into responses with Content-Length or chunked bodies: [status, headers, body]. */
function responses(buf: Buffer): { head: string; body: Buffer }[] {
  const out: { head: string; body: Buffer }[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const end = buf.indexOf('\r\n\r\n', pos);
    if (end === -1) break;
    const head = buf.subarray(pos, end).toString('latin1');
    let p = end + 4;
    const cl = /content-length: (\d+)/i.exec(head);
    if (cl) {
      const n = Number(cl[1]);
      if (buf.length < p + n) break;
      out.push({ head, body: buf.subarray(p, p + n) });
      pos = p + n;
      continue;
    }
    const parts: Buffer[] = [];
    for (;;) {
      const le = buf.indexOf('\r\n', p);
      if (le === -1) return out;
      const n = parseInt(buf.subarray(p, le).toString('latin1'), 16);
      if (n === 0) {
        if (buf.length < le + 4) return out;
        p = le + 4;
        break;
      }
      if (buf.length < le + 2 + n + 2) return out;
      parts.push(buf.subarray(le + 2, le + 2 + n));
      p = le + 2 + n + 2;
    }
    out.push({ head, body: Buffer.concat(parts) });
    pos = p;
  }
  return out;
}

const get = (p: string, close = false) => `GET ${p} HTTP/1.1\r\nHost: x\r\n${close ? 'Connection: close\r\n' : ''}\r\n`;

for (const mode of ['handle writes', 'fallback (--pending-deprecation)'] as const) {
  const extra = mode === 'handle writes' ? [] : ['--node-args=--pending-deprecation'];

  test(`h11 ${mode}: 24 MiB responses to a client that reads late arrive whole and in order, on keep-alive and before a close`, { timeout: 60_000 }, async () => {
    const { r, port } = await start(extra);
    try {
      const want = expected(24 * MB, 7);
      // Pipelined: big, small, big, then a small one that closes. The big ones cannot fit in
      // the socket buffers while the client holds off reading.
      const raw = get('/big') + get('/one') + get('/big') + get('/last', true);
      const { data, closedByServer } = await exchange(port, raw, 500, () => false);
      assert.ok(closedByServer, 'the server closed after the last response');
      const rs = responses(data);
      assert.equal(rs.length, 4, `4 responses (got ${rs.length}, ${data.length} bytes: ${rs.map((x) => x.head.split("\r\n")[0] + " " + x.body.length).join("; ")})`);
      assert.equal(sha(rs[0]!.body), want);
      assert.equal(rs[1]!.body.toString(), 'small /one');
      assert.equal(sha(rs[2]!.body), want);
      assert.equal(rs[3]!.body.toString(), 'small /last');
      assert.match(rs[3]!.head, /connection: close/i);

      // A close right behind a large response that is still in flight: nothing is cut off.
      const second = await exchange(port, get('/big', true), 800, () => false);
      assert.ok(second.closedByServer);
      const [only] = responses(second.data);
      assert.ok(only, 'a response');
      assert.equal(sha(only.body), want);

      // Read slowly, a MiB every 300 ms (about 7 s for the whole): longer than a closing
      // connection lingers, but the client keeps taking bytes, so it gets all of them.
      const slow = await exchange(port, get('/big', true), 0, () => false, 300);
      assert.ok(slow.closedByServer);
      const [whole] = responses(slow.data);
      assert.ok(whole, `a whole response (${slow.data.length} bytes)`);
      assert.equal(sha(whole.body), want);
    } finally {
      const { code } = await stop(r);
      assert.equal(code, 0);
    }
    if (mode !== 'handle writes') assert.doesNotMatch(r.stderr(), /DEP0111|process\.binding/, 'no deprecation warning in the logs');
  });

  test(`h11 ${mode}: a streamed body waits for 'drain' while writes are in flight, and every chunk arrives`, { timeout: 60_000 }, async () => {
    const { r, port } = await start(extra);
    try {
      const chunk = Buffer.alloc(64 * 1024);
      for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 31 + 3) & 255;
      const want = sha(Buffer.concat(Array.from({ length: 256 }, () => chunk)));
      const { data } = await exchange(port, get('/stream'), 600, (last) => last.subarray(-5).toString() === '0\r\n\r\n');
      const [res] = responses(data);
      assert.ok(res);
      assert.match(res.head, /transfer-encoding: chunked/i);
      assert.equal(res.body.length, 16 * MB);
      assert.equal(sha(res.body), want);
      await sleep(50);
      const drains = await exchange(port, get('/drains', true), 0, () => false);
      const n = Number(responses(drains.data)[0]!.body.toString());
      assert.ok(n >= 1, `write() returned false and 'drain' came (${n} drains)`);
    } finally {
      await stop(r);
    }
  });
}
