// h11 engine — header names as the client spelled them (`rawHeaders`) next to the lowercased
// `headers`, and what the node interface makes of them (`req.rawHeaders`, `req.headers`).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Socket } from 'node:net';
import { H11Connection, type RequestEvent } from '../workers/h11/engine/index.js';
import { NodeEx } from '../workers/h11/node.js';
import type { Conn } from '../workers/h11/conn.js';
import { drive, normalize, splits } from './h11-engine-helpers.test.js';

function req(input: string): RequestEvent {
  const evs = new H11Connection().receive(Buffer.from(input, 'latin1'));
  assert.equal(evs[0]?.type, 'request', JSON.stringify(normalize(evs)));
  return evs[0] as RequestEvent;
}

describe('rawHeaders', () => {
  test('a client that sends lowercase names: rawHeaders is the very same array as headers', () => {
    const r = req('GET / HTTP/1.1\r\nhost: a\r\nx-custom: 1\r\naccept: */*\r\n\r\n');
    assert.deepEqual(r.headers, ['host', 'a', 'x-custom', '1', 'accept', '*/*']);
    assert.equal(r.rawHeaders, r.headers);
  });
  test('canonical, unusual and unknown spellings are kept; headers stay lowercased; values are the same', () => {
    const r = req('GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: wrk\r\nHOST2: b\r\nCONTENT-type: t\r\nX-Custom-Thing: c\r\nx-lower: d\r\nDNT: 1\r\nSec-WebSocket-Key: k\r\nsec-websocket-key: k2\r\nAccept: */*\r\n\r\n');
    assert.deepEqual(r.headers, ['host', 'a', 'user-agent', 'wrk', 'host2', 'b', 'content-type', 't', 'x-custom-thing', 'c',
      'x-lower', 'd', 'dnt', '1', 'sec-websocket-key', 'k', 'sec-websocket-key', 'k2', 'accept', '*/*']);
    assert.deepEqual(r.rawHeaders, ['Host', 'a', 'User-Agent', 'wrk', 'HOST2', 'b', 'CONTENT-type', 't', 'X-Custom-Thing', 'c',
      'x-lower', 'd', 'DNT', '1', 'Sec-WebSocket-Key', 'k', 'sec-websocket-key', 'k2', 'Accept', '*/*']);
    assert.notEqual(r.rawHeaders, r.headers);
    assert.equal(r.rawHeaders, r.rawHeaders, 'built once');
  });
  test('the first unusual spelling after canonical ones, and canonical ones after it', () => {
    const r = req('GET / HTTP/1.1\r\nHost: a\r\nAccept: b\r\naCCEPT: c\r\nAccept: d\r\naccept: e\r\n\r\n');
    assert.deepEqual(r.rawHeaders, ['Host', 'a', 'Accept', 'b', 'aCCEPT', 'c', 'Accept', 'd', 'accept', 'e']);
  });
  test('more fields than the spelling mask holds', () => {
    const names = Array.from({ length: 40 }, (_, i) => (i % 3 === 0 ? 'Accept' : i % 3 === 1 ? 'accept' : `X-N${i}`));
    const r = req(`GET / HTTP/1.1\r\nHost: a\r\n${names.map((n, i) => `${n}: ${i}\r\n`).join('')}\r\n`);
    assert.deepEqual(r.rawHeaders, ['Host', 'a', ...names.flatMap((n, i) => [n, String(i)])]);
    assert.deepEqual(r.headers, ['host', 'a', ...names.flatMap((n, i) => [n.toLowerCase(), String(i)])]);
  });
  test('every split of the head gives the same rawHeaders', () => {
    const input = 'POST /x HTTP/1.1\r\nHost: a\r\nCONTENT-LENGTH: 2\r\nX-A: 1\r\nx-b: 2\r\nTransfer-encoding2: 3\r\n\r\nhi';
    const ref = drive([input]).events;
    assert.deepEqual((ref[0] as { rawHeaders: string[] }).rawHeaders, ['Host', 'a', 'CONTENT-LENGTH', '2', 'X-A', '1', 'x-b', '2', 'Transfer-encoding2', '3']);
    for (const parts of splits(input)) assert.deepEqual(drive(parts).events, ref);
  });
  test('the next request starts afresh', () => {
    const c = new H11Connection();
    const a = c.receive(Buffer.from('GET /a HTTP/1.1\r\nHost: a\r\nX-Y: 1\r\n\r\n'))[0] as RequestEvent;
    c.respond(200, null, '');
    const b = c.receive(Buffer.from('GET /b HTTP/1.1\r\nhost: a\r\n\r\n'))[0] as RequestEvent;
    assert.deepEqual(a.rawHeaders, ['Host', 'a', 'X-Y', '1']);
    assert.equal(b.rawHeaders, b.headers);
  });
  test('trailers keep lowercased names', () => {
    const r = drive(['POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Trailer: 1\r\n\r\n']);
    assert.deepEqual(r.events[1], { type: 'end', trailers: ['x-trailer', '1'] });
  });
});

describe('node interface: req.rawHeaders and req.headers', () => {
  function nodeReq(input: string) {
    const c = new H11Connection();
    const ev = c.receive(Buffer.from(input, 'latin1'))[0] as RequestEvent;
    const sock = new Socket();
    const conn = { sock, h: c } as unknown as Conn;
    return new NodeEx(conn, ev).req;
  }
  test('rawHeaders keeps the client\'s spelling; headers is lowercased by Node\'s own getter', () => {
    const r = nodeReq('POST /p HTTP/1.1\r\nHost: example.com\r\nContent-Type: text/plain\r\nX-Trace-ID: 7\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nContent-Length: 0\r\n\r\n');
    assert.deepEqual(r.rawHeaders, ['Host', 'example.com', 'Content-Type', 'text/plain', 'X-Trace-ID', '7', 'Set-Cookie', 'a=1', 'set-cookie', 'b=2', 'Content-Length', '0']);
    assert.equal(r.headers['content-type'], 'text/plain');
    assert.equal(r.headers.host, 'example.com');
    assert.equal(r.headers['x-trace-id'], '7');
    assert.deepEqual(r.headers['set-cookie'], ['a=1', 'b=2']);
    assert.equal(r.headers['Content-Type'], undefined);
    assert.deepEqual(r.headersDistinct['content-type'], ['text/plain']);
  });
  test('a lowercase client: the same list serves both', () => {
    const r = nodeReq('GET / HTTP/1.1\r\nhost: a\r\ncontent-type: x\r\n\r\n');
    assert.deepEqual(r.rawHeaders, ['host', 'a', 'content-type', 'x']);
    assert.equal(r.headers['content-type'], 'x');
  });
});
