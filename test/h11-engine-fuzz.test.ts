// h11 engine — seeded randomized property test: mutated requests never make the engine throw,
// never produce events after an error, and give the same events whatever the chunking.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { H11Connection } from '../workers/h11/engine/index.js';
import type { H11Event } from '../workers/h11/engine/index.js';
import { drive, normalize, prng } from './h11-engine-helpers.test.js';

const SEEDS = [
  'GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n',
  'POST /submit HTTP/1.1\r\nHost: example.com\r\nContent-Length: 11\r\nContent-Type: text/plain\r\n\r\nhello world',
  'POST /up HTTP/1.1\r\nHost: a:80\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n',
  'GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n',
  'OPTIONS * HTTP/1.1\r\nHost: c\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nokGET /next HTTP/1.1\r\nHost: c\r\n\r\n',
  'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n',
  'GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n\x81\x05helloGET /n HTTP/1.1\r\nHost: a\r\n\r\n',
  'POST /h2c HTTP/1.1\r\nHOST: a\r\nConnection: upgrade, close\r\nUpgrade: h2c\r\nContent-Length: 3\r\n\r\nabcPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n',
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

test('randomized: upgrades — after a switch nothing is parsed, and the held bytes are exactly what followed the request', () => {
  const rand = prng(0x101);
  const upgrades = SEEDS.filter((s) => /upgrade/i.test(s));
  let switched = 0;
  for (let it = 0; it < 600; it++) {
    // A third of the inputs unmutated: those test the held bytes under random chunking.
    const seed = upgrades[it % upgrades.length]!;
    const input = it % 3 === 0 ? seed : mutate(rand, seed);
    const decisions = [rand(), rand(), rand(), rand()]; // per request: switch (detach / 101) or decline
    const results = [[input], randomSplit(rand, input)].map((parts) => {
      const c = new H11Connection({ limitRequestFieldSize: 128, limitRequestLine: 128, maxBodySize: 64 });
      const evs: H11Event[] = [];
      let fed = 0, held: string | null = null, nreq = 0, offered = '';
      const handle = (got: H11Event[]): void => {
        if (held !== null) assert.deepEqual(got, [], 'nothing is parsed after a switch');
        evs.push(...got);
        for (const e of got) {
          if (e.type !== 'request') continue;
          nreq++;
          offered = e.upgrade?.split(',').map((p) => p.trim()).find((p) => p !== '') ?? '';
        }
      };
      for (const p of parts) {
        handle(c.receive(Buffer.from(p, 'latin1')));
        fed += p.length;
        // Answer every complete request; keep parsing what was held behind it.
        while (held === null && c.writeState === 'ready' && c.readState === 'waiting') {
          const d = decisions[(nreq - 1) % decisions.length]!;
          if (c.states.read === 'might-switch' && offered !== '' && d < 0.5) {
            held = (d < 0.25 ? c.detach() : (c.switchProtocols({ Upgrade: offered }), c.takeBuffered())).toString('latin1');
            // Bytes fed so far = the requests + what is held: the held bytes are the input's tail.
            assert.equal(held, input.slice(fed - held.length, fed), `iteration ${it}`);
            break;
          }
          c.respond(200, null, 'declined');
          if (c.shouldClose) break;
          handle(c.receive());
        }
      }
      if (held !== null) held += c.takeBuffered().toString('latin1');
      return { events: normalize(evs), held };
    });
    assert.deepEqual(results[1], results[0], `iteration ${it}: ${JSON.stringify(input)}`);
    if (results[0]!.held !== null) {
      switched++;
      assert.ok(input.endsWith(results[0]!.held), `iteration ${it}`);
    }
  }
  assert.ok(switched > 100, `switched ${switched} times`);
});
