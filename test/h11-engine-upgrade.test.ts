// h11 engine — protocol upgrades (RFC 9110 7.8, 15.2.2): the request flag, switchProtocols()
// and detach(), the bytes that follow, declining, pipelining, HTTP/1.0, CONNECT and errors.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { H11Connection, InvalidHeaderError, LocalProtocolError, toBytes, type H11Event, type Output, type RequestEvent } from '../workers/h11/engine/index.js';
import { normalize, splits } from './h11-engine-helpers.test.js';

const WS = 'GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';
/** Bytes a WebSocket client may send right behind its handshake (a masked text frame). */
const FRAME = '\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58';
const NEXT = 'GET /next HTTP/1.1\r\nHost: example.com\r\n\r\n';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const s = (o: Output): string => toBytes(o).toString('latin1');

function open(input: string): { c: H11Connection; evs: H11Event[]; req: RequestEvent } {
  const c = new H11Connection();
  const evs = c.receive(b(input));
  assert.equal(evs[0]?.type, 'request', JSON.stringify(normalize(evs)));
  return { c, evs, req: evs[0] as RequestEvent };
}

describe('the Upgrade flag on the request', () => {
  test('Upgrade + Connection: upgrade (any case, in a list) flags the request with the Upgrade value', () => {
    assert.equal(open(WS).req.upgrade, 'websocket');
    assert.equal(open('GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, UPGRADE\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n').req.upgrade, 'h2c');
    assert.equal(open('GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n').req.upgrade, 'h2c, websocket');
  });
  test('no flag without both headers, with an empty Upgrade, on HTTP/1.0 (RFC 9110 7.8: ignored) or on CONNECT', () => {
    assert.equal(open('GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n').req.upgrade, null);
    assert.equal(open('GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n').req.upgrade, null);
    assert.equal(open('GET / HTTP/1.1\r\nHost: a\r\nUpgrade:\r\nConnection: upgrade\r\n\r\n').req.upgrade, null);
    assert.equal(open('GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgraded\r\n\r\n').req.upgrade, null);
    assert.equal(open('GET / HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n').req.upgrade, null);
    assert.equal(open('CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n').req.upgrade, null);
    assert.equal(open('GET / HTTP/1.1\r\nHost: a\r\n\r\n').req.upgrade, null);
  });
  test('a complete Upgrade request waits in might-switch; a plain one in waiting', () => {
    const { c } = open(WS);
    assert.deepEqual(c.states, { read: 'might-switch', write: 'ready' });
    assert.equal(c.readState, 'waiting');
    assert.deepEqual(open(NEXT).c.states, { read: 'waiting', write: 'ready' });
  });
});

describe('switchProtocols()', () => {
  test('produces exactly the 101 head; Upgrade and Connection are added when the app leaves them out', () => {
    assert.equal(s(open(WS).c.switchProtocols()), 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    const { c } = open(WS);
    const head = c.switchProtocols({ Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Accept': 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=' });
    assert.equal(typeof head, 'string');
    assert.equal(head, 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n');
    assert.equal(s(open(WS).c.switchProtocols([['sec-websocket-accept', 'x']])),
      'HTTP/1.1 101 Switching Protocols\r\nsec-websocket-accept: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
  });
  test('both sides end in switched: nothing is parsed or written as HTTP any more', () => {
    const { c } = open(WS);
    c.switchProtocols();
    assert.deepEqual(c.states, { read: 'switched', write: 'switched' });
    assert.equal(c.readState, 'switched');
    assert.equal(c.writeState, 'switched');
    assert.equal(c.shouldClose, false, 'the socket is the new protocol\'s now');
    assert.equal(c.responseStarted, false);
    assert.deepEqual(c.receive(b(NEXT + NEXT)), [], 'HTTP-looking bytes are not parsed');
    assert.deepEqual(c.receive(), []);
    assert.deepEqual(c.receiveEOF(), []);
    for (const call of [() => c.respond(200), () => c.writeHead(200), () => c.writeBody('x'), () => c.writeEnd(),
      () => c.writeInterim(103), () => c.errorResponse(400), () => c.switchProtocols(), () => c.detach()]) {
      assert.throws(call, LocalProtocolError);
    }
    assert.equal(c.send100Continue().length, 0);
    c.startClosing();
    assert.deepEqual(c.states, { read: 'switched', write: 'switched' });
  });
  test('takeBuffered(): bytes that arrived in the same chunk as the head, then what arrives later, each once', () => {
    const { c, evs } = open(WS + FRAME + NEXT);
    assert.deepEqual(normalize(evs).map((e) => e.type), ['request', 'end'], 'the bytes behind the head are held, not parsed');
    assert.equal(c.bufferedBytes, FRAME.length + NEXT.length);
    c.switchProtocols();
    const first = c.takeBuffered();
    assert.equal(first.toString('latin1'), FRAME + NEXT);
    assert.equal(c.bufferedBytes, 0);
    assert.equal(c.takeBuffered().length, 0);
    assert.deepEqual(c.receive(b('more')), []);
    assert.equal(c.bufferedBytes, 4);
    assert.deepEqual(c.receive(b('!')), []);
    assert.equal(c.takeBuffered().toString('latin1'), 'more!');
    assert.equal(first.toString('latin1'), FRAME + NEXT, 'a buffer handed out is never reused');
  });
  test('bytes that arrive while the upgrade is being decided are held too', () => {
    const { c } = open(WS);
    assert.deepEqual(c.receive(b(FRAME)), []);
    assert.deepEqual(c.receive(), []);
    c.switchProtocols();
    assert.equal(c.takeBuffered().toString('latin1'), FRAME);
  });
  test('every split of head + trailing bytes gives the same events and the same held bytes', () => {
    const input = WS + FRAME + NEXT;
    for (const parts of splits(input)) {
      const c = new H11Connection();
      const evs: H11Event[] = [];
      for (const p of parts) evs.push(...c.receive(b(p)));
      assert.deepEqual(normalize(evs).map((e) => e.type), ['request', 'end'], JSON.stringify(parts.slice(0, 2)));
      assert.equal((evs[0] as RequestEvent).upgrade, 'websocket');
      c.switchProtocols();
      assert.equal(c.takeBuffered().toString('latin1'), FRAME + NEXT);
    }
  });
  test('refused headers throw InvalidHeaderError and change nothing', () => {
    const { c } = open(WS + FRAME);
    assert.throws(() => c.switchProtocols({ 'Content-Length': 0 }), InvalidHeaderError);
    assert.throws(() => c.switchProtocols({ 'Transfer-Encoding': 'chunked' }), InvalidHeaderError);
    assert.throws(() => c.switchProtocols({ Upgrade: 'h2c' }), InvalidHeaderError, 'not offered');
    assert.throws(() => c.switchProtocols({ Upgrade: 'websocket, h2c' }), InvalidHeaderError);
    assert.throws(() => c.switchProtocols({ Upgrade: 'websocket', Connection: 'keep-alive' }), InvalidHeaderError);
    assert.throws(() => c.switchProtocols({ 'X-Bad': 'a\r\nb' }), InvalidHeaderError);
    assert.deepEqual(c.states, { read: 'might-switch', write: 'ready' });
    assert.match(s(c.switchProtocols({ upgrade: 'WebSocket', connection: 'keep-alive, Upgrade' })), /^HTTP\/1.1 101 .*\r\nupgrade: WebSocket\r\nconnection: keep-alive, Upgrade\r\n\r\n$/s);
    assert.equal(c.takeBuffered().toString('latin1'), FRAME);
  });
  test('a client offering several protocols: the app names the one it picks', () => {
    const { c } = open('GET / HTTP/1.1\r\nHost: a\r\nUpgrade: foo/2, websocket\r\nConnection: upgrade\r\n\r\n');
    assert.throws(() => c.switchProtocols(), InvalidHeaderError);
    assert.match(s(c.switchProtocols({ Upgrade: 'websocket' })), /\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n$/);
  });
  test('interim responses before the switch; 101 only through switchProtocols()', () => {
    const { c } = open(WS);
    assert.equal(s(c.writeInterim(103, { Link: '</a.js>; rel=preload' })), 'HTTP/1.1 103 Early Hints\r\nLink: </a.js>; rel=preload\r\n\r\n');
    assert.throws(() => c.writeInterim(101), /switchProtocols/);
    assert.match(s(c.switchProtocols()), /^HTTP\/1.1 101 /);
  });
  test('nothing to switch: a plain request, a refused CONNECT, a request that failed', () => {
    const plain = open(NEXT).c;
    assert.throws(() => plain.switchProtocols(), /did not propose an Upgrade/);
    assert.throws(() => plain.detach(), LocalProtocolError);
    assert.throws(() => plain.takeBuffered(), LocalProtocolError);
    const connect = open('CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n').c;
    assert.throws(() => connect.switchProtocols(), LocalProtocolError);
    assert.throws(() => connect.respond(200), /CONNECT/);
    assert.match(s(connect.respond(501, null, '')), /^HTTP\/1.1 501 /);
    const idle = new H11Connection();
    assert.throws(() => idle.switchProtocols(), LocalProtocolError);
    assert.throws(() => idle.detach(), LocalProtocolError);
  });
});

describe('detach(): the app writes the 101 itself (Node `upgrade` listeners)', () => {
  test('returns the held bytes, produces nothing, and switches both sides', () => {
    const { c } = open(WS + FRAME);
    const head = c.detach();
    assert.ok(Buffer.isBuffer(head));
    assert.equal(head.toString('latin1'), FRAME);
    assert.deepEqual(c.states, { read: 'switched', write: 'switched' });
    assert.deepEqual(c.receive(b(NEXT)), []);
    assert.equal(c.takeBuffered().toString('latin1'), NEXT);
    assert.throws(() => c.respond(400), LocalProtocolError);
  });
  test('nothing held: an empty Buffer', () => {
    const { c } = open(WS);
    assert.equal(c.detach().length, 0);
  });
});

describe('declining an upgrade: a final response instead of 101', () => {
  test('respond(): a normal response, and the next (held) request is parsed as HTTP', () => {
    const { c } = open(WS + NEXT);
    assert.deepEqual(c.receive(), [], 'held while the upgrade is pending');
    const out = s(c.respond(426, { Upgrade: 'websocket', Connection: 'Upgrade' }, 'no'));
    assert.match(out, /^HTTP\/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 2\r\n\r\nno$/);
    assert.equal(c.shouldClose, false);
    assert.deepEqual(c.states, { read: 'head', write: 'idle' });
    const next = c.receive();
    assert.equal((next[0] as RequestEvent).target, '/next');
    assert.throws(() => c.switchProtocols(), LocalProtocolError);
  });
  test('writeHead() + writeEnd() decline too; the declined request cannot switch afterwards', () => {
    const { c } = open(WS);
    c.writeHead(200, { 'content-type': 'text/plain' });
    assert.deepEqual(c.states, { read: 'waiting', write: 'body' });
    assert.throws(() => c.switchProtocols(), LocalProtocolError);
    assert.throws(() => c.detach(), LocalProtocolError);
    c.writeBody('plain http');
    c.writeEnd();
    assert.equal(c.shouldClose, false);
    assert.equal(c.readState, 'head');
  });
  test('a declined Upgrade request that asked to close closes; errorResponse() closes', () => {
    const { c } = open('GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade, close\r\n\r\n' + NEXT);
    assert.equal(c.shouldClose, false);
    assert.match(s(c.respond(200, null, 'x')), /Connection: close/);
    assert.equal(c.shouldClose, true);
    assert.deepEqual(c.receive(), []);
    const d = open(WS + NEXT).c;
    assert.match(s(d.errorResponse(400)), /^HTTP\/1.1 400 .*Connection: close/s);
    assert.deepEqual(d.states, { read: 'closed', write: 'closed' });
    assert.deepEqual(d.receive(), []);
  });
  test('an Upgrade request on HTTP/1.0 is a plain request', () => {
    const { c, req } = open('GET / HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade, keep-alive\r\n\r\n' + NEXT);
    assert.equal(req.upgrade, null);
    assert.deepEqual(c.states, { read: 'waiting', write: 'ready' });
    assert.throws(() => c.switchProtocols(), LocalProtocolError);
    assert.match(s(c.respond(200, null, 'x')), /Connection: keep-alive/);
    assert.equal((c.receive()[0] as RequestEvent).target, '/next');
  });
  test('EOF while the upgrade is pending: declining serves it, then closes', () => {
    const { c } = open(WS);
    assert.deepEqual(c.receiveEOF(), []);
    c.respond(200, null, 'x');
    assert.equal(c.shouldClose, true);
  });
});

describe('Upgrade requests with a body (legal: RFC 9110 7.8)', () => {
  const withBody = 'POST /up HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nContent-Length: 5\r\n\r\n';
  test('the body is HTTP: read it first, then switch; bytes after the body belong to the new protocol', () => {
    const c = new H11Connection();
    const evs = c.receive(b(withBody + 'hel'));
    assert.deepEqual(normalize(evs).map((e) => e.type), ['request', 'data']);
    assert.equal((evs[0] as RequestEvent).upgrade, 'h2c');
    assert.throws(() => c.switchProtocols(), /body was not received/);
    assert.throws(() => c.detach(), LocalProtocolError);
    assert.deepEqual(c.states, { read: 'body', write: 'ready' });
    assert.deepEqual(normalize(c.receive(b('loPRI * HTTP/2.0\r\n'))), [{ type: 'data', text: 'lo' }, { type: 'end', trailers: null }]);
    assert.equal(c.states.read, 'might-switch');
    assert.match(s(c.switchProtocols()), /^HTTP\/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n/);
    assert.equal(c.takeBuffered().toString('latin1'), 'PRI * HTTP/2.0\r\n');
  });
  test('chunked body with trailers, then the switch', () => {
    const c = new H11Connection();
    const evs = c.receive(b('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nUpgrade: x/1\r\nConnection: upgrade\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n' + FRAME));
    assert.deepEqual(normalize(evs).slice(1), [{ type: 'data', text: 'abc' }, { type: 'end', trailers: ['t', '1'] }]);
    c.switchProtocols();
    assert.equal(c.takeBuffered().toString('latin1'), FRAME);
  });
  test('Expect: 100-continue: 100 first, then the body, then 101', () => {
    const c = new H11Connection();
    c.receive(b('POST / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: upgrade\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n'));
    assert.equal(s(c.send100Continue()), 'HTTP/1.1 100 Continue\r\n\r\n');
    c.receive(b('ok'));
    assert.match(s(c.switchProtocols()), /^HTTP\/1.1 101 /);
  });
  test('declined while the body is still arriving: its end does not reopen the switch', () => {
    const c = new H11Connection();
    c.receive(b(withBody + 'he'));
    c.writeHead(200, { 'content-length': 2 });
    c.receive(b('llo'));
    assert.deepEqual(c.states, { read: 'waiting', write: 'body' });
    assert.throws(() => c.switchProtocols(), LocalProtocolError);
    c.writeBody('ok');
    c.writeEnd();
    assert.deepEqual(c.states, { read: 'head', write: 'idle' });
  });
  test('a response that ends before the body closes the connection (the body is never drained)', () => {
    const c = new H11Connection();
    c.receive(b(withBody + 'he'));
    c.respond(400, null, 'no');
    assert.equal(c.shouldClose, true);
    assert.deepEqual(c.states, { read: 'closed', write: 'closed' });
  });
  test('a broken body is an error event: no switch, errorResponse() as usual', () => {
    const c = new H11Connection();
    const evs = c.receive(b('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\nzz\r\n' + FRAME));
    assert.deepEqual(normalize(evs).map((e) => e.type), ['request', 'error']);
    assert.throws(() => c.switchProtocols(), /failed/);
    assert.throws(() => c.detach(), LocalProtocolError);
    assert.match(s(c.errorResponse(400)), /^HTTP\/1.1 400 /);
    assert.ok(c.shouldClose);
  });
  test('a malformed Upgrade head is rejected like any other; what follows is never parsed', () => {
    const c = new H11Connection();
    const evs = c.receive(b('GET / HTTP/1.1\r\nHost: a\r\nUpgrade : websocket\r\nConnection: upgrade\r\n\r\n' + NEXT));
    assert.deepEqual(normalize(evs), [{ type: 'error', status: 400 }]);
    assert.deepEqual(c.receive(), []);
  });
});
