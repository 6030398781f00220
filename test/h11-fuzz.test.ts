// Bounded fuzz against a live -k h11 worker: mutated valid requests and random bytes over raw
// sockets. The worker never crashes, every connection gets a reply or a close within 5 s, and
// every reply is a well-formed HTTP/1.1 response stream (status line, headers, framing).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { freePort, request, serve, stop, tmpDir, writeFiles } from './helpers.ts';

const STREAMS = Number(process.env.H11_FUZZ_STREAMS) || 1500;
const SEED = Number(process.env.H11_FUZZ_SEED) || 0x5eed11;
const CONCURRENCY = 16;

/** xorshift32: deterministic, seedable. */
function prng(seed: number) {
  let x = seed >>> 0 || 1;
  const next = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
  return {
    int: (n: number) => next() % n,
    pick: <T>(a: readonly T[]): T => a[next() % a.length]!,
    chance: (p: number) => next() / 0x100000000 < p,
  };
}

const VALID = [
  'GET / HTTP/1.1\r\nHost: a\r\n\r\n',
  'GET /x?y=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nUser-Agent: fuzz\r\n\r\n',
  'HEAD / HTTP/1.1\r\nHost: a\r\n\r\n',
  'POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello',
  'POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nT: v\r\n\r\n',
  'POST /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc',
  'GET / HTTP/1.0\r\n\r\n',
  'GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n',
  'OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n',
  'GET http://a/abs HTTP/1.1\r\nHost: a\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n',
  'DELETE /d HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n',
];
const TOKENS = ['\r\n', '\r', '\n', ' ', '\t', ':', ';', ',', '0', 'chunked', 'Content-Length: ', 'Transfer-Encoding: ', 'Host: ',
  'HTTP/1.1', 'HTTP/2.0', '\x00', '\x7f', '\xff', 'ffffffffffffffffff', '-1', '%', '#', '\r\n\r\n', 'GET / HTTP/1.1\r\n'];

function mutate(rnd: ReturnType<typeof prng>, s: string): string {
  const n = 1 + rnd.int(4);
  for (let i = 0; i < n; i++) {
    const at = rnd.int(s.length + 1);
    switch (rnd.int(6)) {
      case 0: // delete a span
        s = s.slice(0, at) + s.slice(at + 1 + rnd.int(6));
        break;
      case 1: // insert a token
        s = s.slice(0, at) + rnd.pick(TOKENS) + s.slice(at);
        break;
      case 2: // flip a byte
        s = s.slice(0, at) + String.fromCharCode(rnd.int(256)) + s.slice(at + 1);
        break;
      case 3: // duplicate a span
        s = s.slice(0, at) + s.slice(at, at + rnd.int(20)) + s.slice(at);
        break;
      case 4: // truncate
        s = s.slice(0, at);
        break;
      default: // case change
        s = s.slice(0, at) + s.slice(at, at + 8).toUpperCase() + s.slice(at + 8);
    }
  }
  return s;
}

function makeStream(rnd: ReturnType<typeof prng>): { bytes: Buffer; pieces: number } {
  const kind = rnd.int(10);
  let s: string;
  if (kind < 6) {
    const reqs = 1 + rnd.int(3);
    s = '';
    for (let i = 0; i < reqs; i++) s += rnd.chance(0.7) ? mutate(rnd, rnd.pick(VALID)) : rnd.pick(VALID);
  } else if (kind < 8) {
    s = rnd.pick(VALID) + mutate(rnd, rnd.pick(VALID));
  } else {
    const n = rnd.int(300);
    s = '';
    for (let i = 0; i < n; i++) s += String.fromCharCode(rnd.int(256));
  }
  return { bytes: Buffer.from(s, 'latin1'), pieces: 1 + rnd.int(3) };
}

/** Every byte the server sent must be a sequence of complete, well-formed responses (a trailing cut only at close). */
function checkWellFormed(buf: Buffer): string | null {
  let pos = 0;
  let finals = 0;
  while (pos < buf.length) {
    const end = buf.indexOf('\r\n\r\n', pos);
    if (end === -1) return `incomplete head at ${pos}: ${JSON.stringify(buf.subarray(pos, pos + 80).toString('latin1'))}`;
    const lines = buf.subarray(pos, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.1 ([1-5]\d\d) [\t -~]*$/.exec(lines[0]!);
    if (!m) return `bad status line ${JSON.stringify(lines[0])}`;
    const status = Number(m[1]);
    const h: Record<string, string> = {};
    for (const l of lines.slice(1)) {
      if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+: [\t -~\x80-\xff]*$/.test(l)) return `bad header line ${JSON.stringify(l)}`;
      const c = l.indexOf(':');
      const k = l.slice(0, c).toLowerCase();
      if (k in h && (k === 'content-length' || k === 'transfer-encoding')) return `duplicate ${k}`;
      h[k] = l.slice(c + 2);
    }
    if (h['content-length'] !== undefined && h['transfer-encoding'] !== undefined) return 'CL and TE in one response';
    let p = end + 4;
    if (status >= 100 && status < 200) {
      pos = p;
      continue;
    }
    finals++;
    if (h['transfer-encoding'] !== undefined) {
      if (h['transfer-encoding'] !== 'chunked') return `odd TE ${h['transfer-encoding']}`;
      for (;;) {
        const le = buf.indexOf('\r\n', p);
        if (le === -1) return 'cut chunk';
        const size = parseInt(buf.subarray(p, le).toString('latin1'), 16);
        if (!/^[0-9a-f]+$/.test(buf.subarray(p, le).toString('latin1'))) return 'bad chunk size line';
        if (size === 0) {
          if (buf.subarray(le, le + 4).toString('latin1') !== '\r\n\r\n') return 'bad last chunk';
          p = le + 4;
          break;
        }
        if (buf.subarray(le + 2 + size, le + 4 + size).toString('latin1') !== '\r\n') return 'chunk not followed by CRLF';
        p = le + 4 + size;
      }
    } else if (h['content-length'] !== undefined) {
      if (!/^\d+$/.test(h['content-length'])) return 'bad content-length';
      const n = Number(h['content-length']);
      // HEAD responses carry the GET length but no body: accept a head directly followed by the next response or the end.
      const next = buf.subarray(p, p + 5).toString('latin1');
      if (next === 'HTTP/' || p === buf.length) {
        if (p + n > buf.length || buf.subarray(p + n, p + n + 5).toString('latin1') !== 'HTTP/') {
          pos = p;
          continue;
        }
      }
      if (p + n > buf.length) return `body shorter than Content-Length ${n}`;
      p += n;
    } else if (status !== 204 && status !== 304) {
      // close-delimited (HTTP/1.0) or bodiless (HEAD): the rest belongs to it
      p = buf.length;
    }
    pos = p;
  }
  void finals;
  return null;
}

function exchange(port: number, bytes: Buffer, pieces: number): Promise<{ data: Buffer; outcome: 'closed' | 'timeout' }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const sock = net.connect(port, '127.0.0.1', async () => {
      const step = Math.ceil(bytes.length / pieces) || 1;
      for (let i = 0; i < bytes.length; i += step) {
        if (sock.destroyed) break;
        sock.write(bytes.subarray(i, i + step));
        await new Promise((r) => setImmediate(r));
      }
      // Half-close: the server answers what it got and closes (or rejects a truncated head).
      if (!sock.destroyed) sock.end();
    });
    const timer = setTimeout(() => {
      sock.destroy();
      resolve({ data: Buffer.concat(chunks), outcome: 'timeout' });
    }, 5000);
    sock.on('data', (d) => chunks.push(d));
    sock.on('error', () => {});
    sock.on('close', () => {
      clearTimeout(timer);
      resolve({ data: Buffer.concat(chunks), outcome: 'closed' });
    });
  });
}

test(`h11 fuzz: ${STREAMS} mutated/random byte streams, seed ${SEED}`, { timeout: 120_000 }, async () => {
  const dir = tmpDir('arbiter-h11-fuzz-');
  writeFiles(dir, {
    'app.mjs': `
export default function handler(req, res) {
  const parts = [];
  req.on('data', (d) => parts.push(d));
  req.on('end', () => {
    const body = Buffer.concat(parts);
    if (req.url.length % 3 === 0) { res.write('chunk:'); res.end(body); return; }
    res.setHeader('content-type', 'text/plain');
    res.end('got ' + body.length);
  });
}
`,
  });
  const port = await freePort();
  const r = await serve([path.join(dir, 'app.mjs'), '-k', 'h11', '-w', '1', '-b', `127.0.0.1:${port}`, '--limit-request-body', '4096', '--keepalive', '2']);
  const started = Date.now();
  try {
    const rnd = prng(SEED);
    const cases = Array.from({ length: STREAMS }, () => makeStream(rnd));
    const failures: string[] = [];
    const seen = new Map<string, number>();
    let next = 0;
    const worker = async () => {
      while (next < cases.length && Date.now() - started < 60_000) {
        const i = next++;
        const c = cases[i]!;
        const { data, outcome } = await exchange(port, c.bytes, c.pieces);
        if (outcome === 'timeout') failures.push(`#${i}: no reply or close within 5 s for ${JSON.stringify(c.bytes.toString('latin1').slice(0, 200))}`);
        for (const m of data.toString('latin1').matchAll(/HTTP\/1\.1 (\d)\d\d /g)) seen.set(m[1]!, (seen.get(m[1]!) ?? 0) + 1);
        const bad = checkWellFormed(data);
        if (bad) failures.push(`#${i}: ${bad} for ${JSON.stringify(c.bytes.toString('latin1').slice(0, 200))}\n  got ${JSON.stringify(data.toString('latin1').slice(0, 300))}`);
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    assert.ok(next >= Math.min(STREAMS, 300), `only ${next} streams ran within the time bound`);
    assert.deepEqual(failures.slice(0, 10), []);
    // The mix exercised both sides: accepted requests and rejections.
    assert.ok((seen.get('2') ?? 0) > 50 && (seen.get('4') ?? 0) > 50, `status classes seen: ${JSON.stringify([...seen])}`);
    const crashes = r.logs().filter((l) => l.event === 'worker_exit' || l.event === 'worker_crashed' || l.event === 'unhandled_rejection');
    assert.deepEqual(crashes, [], 'the worker crashed or exited during the fuzz run');
    assert.equal((await request({ port }, { path: '/alive' })).status, 200);
  } finally {
    await stop(r);
  }
});
