// Framework fidelity (issue 11): real Express middleware from npm, unchanged, on both HTTP
// classes. Sessions need the implicit head to go through writeHead (on-headers); the access
// log names the URL as the client sent it, whatever routers did to req.url.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { freePort, serve, stop, tmpDir, waitFor } from './helpers.ts';
import { SERVICES } from './services.ts';

interface Got {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** One request on a new connection; the body as bytes. */
function get(port: number, o: { path: string; method?: string; headers?: Record<string, string>; body?: Buffer }): Promise<Got> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: o.path, method: o.method ?? 'GET', headers: o.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.setTimeout(10_000, () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end(o.body);
  });
}

const json = (g: Got) => JSON.parse(g.body.toString('utf8'));

/** `name=value` of each Set-Cookie, as a Cookie header. */
function cookieOf(g: Got, previous = ''): string {
  const jar = new Map(previous ? previous.split('; ').map((c) => c.split('=', 2) as [string, string]) : []);
  for (const line of g.headers['set-cookie'] ?? []) {
    const [pair] = line.split(';');
    const eq = pair!.indexOf('=');
    jar.set(pair!.slice(0, eq), pair!.slice(eq + 1));
  }
  return [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
}

for (const cls of ['http', 'h11'] as const) {
  test(`-k ${cls}: express-session, morgan, compression, helmet, cors, multer (5 MB), express.static with Range; the access log names the path as sent`, { timeout: 60_000 }, async () => {
    const dir = tmpDir('arbiter-middleware-');
    const staticDir = path.join(dir, 'public');
    const file = randomBytes(100_000);
    mkdirSync(staticDir);
    writeFileSync(path.join(staticDir, 'big.bin'), file);
    const morganLog = path.join(dir, 'morgan.log');
    const accessLog = path.join(dir, 'access.log');
    const port = await freePort();
    const r = await serve([path.join(SERVICES, 'middleware-app.mjs:app'), '-k', cls, '-w', '1', '-b', `127.0.0.1:${port}`, '--access-log', accessLog], {
      env: { MORGAN_LOG: morganLog, STATIC_DIR: staticDir },
    });
    try {
      // express-session: the cookie is set on the first response and the session kept.
      let cookie = '';
      for (let i = 1; i <= 3; i++) {
        const g = await get(port, { path: '/es/count', headers: cookie ? { cookie } : {} });
        if (i === 1) assert.match(String(g.headers['set-cookie']), /^connect\.sid=/, 'express-session set its cookie');
        cookie = cookieOf(g, cookie);
        assert.equal(json(g).n, i, `the session counter after ${i} requests`);
      }
      // helmet and cors headers; compression's gzip.
      const text = await get(port, { path: '/text', headers: { 'accept-encoding': 'gzip', origin: 'https://example.test' } });
      assert.equal(text.headers['content-encoding'], 'gzip');
      assert.equal(gunzipSync(text.body).toString(), 'compress me '.repeat(2000));
      assert.equal(text.headers['access-control-allow-origin'], 'https://example.test');
      assert.equal(text.headers['x-content-type-options'], 'nosniff');
      assert.match(String(text.headers['content-security-policy']), /default-src 'self'/);
      // multer: a 5 MB upload arrives whole.
      const upload = randomBytes(5 * 1024 * 1024);
      const boundary = '----arbiter' + randomBytes(8).toString('hex');
      const body = Buffer.concat([
        Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nfive megabytes\r\n`),
        Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="blob.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`),
        upload,
        Buffer.from(`\r\n--${boundary}--\r\n`),
      ]);
      const up = json(await get(port, { path: '/upload', method: 'POST', body, headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } }));
      assert.deepEqual(up, { size: upload.length, sha256: createHash('sha256').update(upload).digest('hex'), note: 'five megabytes' });
      // express.static with Range, under a mount that rewrites req.url.
      const range = await get(port, { path: '/static/big.bin', headers: { range: 'bytes=100-1099' } });
      assert.equal(range.status, 206);
      assert.equal(range.headers['content-range'], `bytes 100-1099/${file.length}`);
      assert.ok(range.body.equals(file.subarray(100, 1100)), 'the range bytes');
      // rawHeaders as the client spelled them.
      const raw = json(await get(port, { path: '/raw', headers: { 'X-Spelled-Like-This': 'yes' } }));
      assert.ok(raw.includes('X-Spelled-Like-This'), JSON.stringify(raw));
      // morgan's :response-time comes from on-headers: a number, not '-'.
      await waitFor(() => existsSync(morganLog) && readFileSync(morganLog, 'utf8').includes('GET /static/big.bin'), 5000, 'the morgan lines');
      const morganLines = readFileSync(morganLog, 'utf8');
      assert.match(morganLines, /^GET \/es\/count 200 \d+(\.\d+)?$/m);
      assert.match(morganLines, /^GET \/static\/big\.bin 206 \d+(\.\d+)?$/m);
      await waitFor(() => existsSync(accessLog) && readFileSync(accessLog, 'utf8').includes('"GET /static/big.bin HTTP/1.1" 206'), 5000, 'the access log line for the mounted static path');
      assert.doesNotMatch(readFileSync(accessLog, 'utf8'), /"GET \/big\.bin /);
    } finally {
      await stop(r);
    }
  });

  test(`-k ${cls}: cookie-session across two workers: the cookie is set and the counter reaches 3 (and more) whichever worker answers`, { timeout: 60_000 }, async () => {
    const dir = tmpDir('arbiter-cookie-session-');
    const port = await freePort();
    const r = await serve([path.join(SERVICES, 'middleware-app.mjs:app'), '-k', cls, '-w', '2', '-b', `127.0.0.1:${port}`], {
      env: { MORGAN_LOG: path.join(dir, 'morgan.log'), STATIC_DIR: dir },
    });
    try {
      let cookie = '';
      const pids = new Set<number>();
      for (let i = 1; i <= 40 && (i <= 3 || pids.size < 2); i++) {
        const g = await get(port, { path: '/cs/count', headers: cookie ? { cookie } : {} });
        if (i === 1) assert.match(String(g.headers['set-cookie']), /^cs=/, 'cookie-session set its cookie');
        cookie = cookieOf(g, cookie);
        const { n, pid } = json(g);
        assert.equal(n, i, `the session counter after ${i} requests`);
        pids.add(pid);
      }
      assert.equal(pids.size, 2, 'both workers answered');
    } finally {
      await stop(r);
    }
  });
}
