// h11 engine — seeded randomized property test: mutated requests never make the engine throw,
// never produce events after an error, and give the same events whatever the chunking.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { H11Connection } from '../workers/h11/engine/index.js';
import type { H11Event } from '../workers/h11/engine/index.js';
import { drive, prng } from './h11-engine-helpers.test.js';

const SEEDS = [
  'GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n',
  'POST /submit HTTP/1.1\r\nHost: example.com\r\nContent-Length: 11\r\nContent-Type: text/plain\r\n\r\nhello world',
  'POST /up HTTP/1.1\r\nHost: a:80\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n',
  'GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n',
  'OPTIONS * HTTP/1.1\r\nHost: c\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nokGET /next HTTP/1.1\r\nHost: c\r\n\r\n',
  'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n',
];
const INTERESTING = [13, 10, 32, 9, 0, 58, 44, 59, 61, 34, 92, 48, 53, 97, 120, 0x0b, 0x7f, 0xff, 0x80, 43, 45];
const ALLOWED = new Set([400, 413, 414, 431, 501, 505]);

function mutate(rand: () => number, input: string): string {
  const b = [...Buffer.from(input, 'latin1')];
  const n = 1 + Math.floor(rand() * 4);
  for (let k = 0; k < n; k++) {
    const i = Math.floor(rand() * (b.length + 1));
    const r = rand();
    const byte = rand() < 0.7 ? INTERESTING[Math.floor(rand() * INTERESTING.length)]! : Math.floor(rand() * 256);
    if (r < 0.3) b.splice(i, 0, byte);
    else if (r < 0.5) b.splice(i, 1);
    else if (r < 0.7) b[Math.min(i, b.length - 1)] = byte;
    else if (r < 0.8) {
      const j = Math.floor(rand() * b.length);
      b.splice(i, 0, ...b.slice(Math.min(i, j), Math.max(i, j)).slice(0, 64));
    } else if (r < 0.9) b.length = Math.max(0, Math.min(b.length, i));
    else {
      const c = b[Math.min(i, b.length - 1)];
      if (c !== undefined) b[Math.min(i, b.length - 1)] = c ^ 0x20;
    }
  }
  return Buffer.from(b).toString('latin1');
}

function randomSplit(rand: () => number, s: string): string[] {
  const parts: string[] = [];
  let i = 0;
  while (i < s.length) {
    const n = rand() < 0.3 ? 1 : 1 + Math.floor(rand() * 20);
    parts.push(s.slice(i, i + n));
    i += n;
  }
  return parts;
}

test('randomized: 2,000 mutated requests — no throw, nothing after an error, chunking-invariant', () => {
  const rand = prng(0xa11ce);
  const opts = { limitRequestLine: 64, limitRequestFields: 8, limitRequestFieldSize: 64, maxBodySize: 32 };
  let errors = 0;
  for (let it = 0; it < 2000; it++) {
    const input = mutate(rand, SEEDS[it % SEEDS.length]!);
    const eof = rand() < 0.3;
    const whole = drive([input], opts, eof);
    const parts = drive(randomSplit(rand, input), opts, eof);
    const ctx = `iteration ${it}: ${JSON.stringify(input)}`;
    assert.deepEqual(parts.events, whole.events, ctx);
    assert.equal(parts.out, whole.out, ctx);
    for (const r of [whole, parts]) {
      const ei = r.raw.findIndex((e) => e.type === 'error');
      if (ei >= 0) {
        errors++;
        assert.equal(ei, r.raw.length - 1, `events after an error: ${ctx}`);
        const e = r.raw[ei] as Extract<H11Event, { type: 'error' }>;
        assert.ok(ALLOWED.has(e.status), ctx);
        assert.ok(r.conn.shouldClose, ctx);
        assert.deepEqual(r.conn.receive(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')), [], ctx);
      }
      // request / data* / end ordering
      let inReq = false;
      for (const e of r.raw) {
        if (e.type === 'request') {
          assert.ok(!inReq, ctx);
          inReq = true;
        } else if (e.type === 'data') assert.ok(inReq, ctx);
        else if (e.type === 'end') {
          assert.ok(inReq, ctx);
          inReq = false;
        }
      }
    }
  }
  assert.ok(errors > 200, `mutations should trigger errors (got ${errors})`);
});

test('randomized: arbitrary bytes never make receive() throw', () => {
  const rand = prng(7);
  for (let it = 0; it < 500; it++) {
    const c = new H11Connection({ limitRequestFieldSize: 128, limitRequestLine: 128 });
    let errored = false;
    let connect = false;
    for (let k = 0; k < 8; k++) {
      const len = Math.floor(rand() * 64);
      const b = Buffer.alloc(len);
      for (let i = 0; i < len; i++) b[i] = rand() < 0.5 ? INTERESTING[Math.floor(rand() * INTERESTING.length)]! : Math.floor(rand() * 256);
      const evs = c.receive(b);
      for (const e of evs) if (e.type === 'request') connect = e.method === 'CONNECT';
      if (errored) assert.deepEqual(evs, []);
      if (evs.some((e) => e.type === 'error')) errored = true;
      if (c.writeState === 'ready' && c.readState === 'waiting') c.respond(connect ? 405 : 200, null, 'x');
    }
    c.receiveEOF();
  }
});
