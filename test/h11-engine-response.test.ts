// h11 engine — response side: framing, HEAD/204/304, HTTP/1.0, chunked + trailers, validation, states.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { H11Connection, InvalidHeaderError, LocalProtocolError, createDateCache, toBytes, type Output } from '../workers/h11/engine/index.js';

const H = 'Host: example.com\r\n';

function conn(request = `GET / HTTP/1.1\r\n${H}\r\n`, opts = {}): H11Connection {
  const c = new H11Connection(opts);
  const evs = c.receive(Buffer.from(request, 'latin1'));
  assert.equal(evs[0]?.type, 'request');
  return c;
}
const s = (o: Output): string => toBytes(o).toString('latin1');

describe('framing', () => {
  test('respond(): Content-Length from the body, one buffer', () => {
    const c = conn();
    assert.equal(s(c.respond(200, { 'Content-Type': 'text/plain' }, 'héllo')),
      'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nh\xc3\xa9llo');
  });
  test('output is a latin1 string for heads and ASCII bodies, a Buffer (UTF-8) otherwise', () => {
    const ascii = conn().respond(200, null, 'hi');
    assert.equal(typeof ascii, 'string');
    assert.equal(ascii, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi');
    const utf8 = conn().respond(200, null, 'h\u00e9\u{1f600}');
    assert.ok(Buffer.isBuffer(utf8));
    assert.deepEqual(utf8.subarray(utf8.length - 7), Buffer.from('h\u00e9\u{1f600}'));
    assert.equal(typeof conn().writeHead(200), 'string');
    assert.ok(Buffer.isBuffer(conn().respond(200, null, Buffer.from('b'))));
  });
  test('respond() with null body -> Content-Length: 0; Buffer body; custom reason', () => {
    assert.equal(s(conn().respond(404, null, null)), 'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
    assert.equal(s(conn().respond(200, [['X-A', 'b']], Buffer.from('xy'), 'Fine')), 'HTTP/1.1 200 Fine\r\nX-A: b\r\nContent-Length: 2\r\n\r\nxy');
    assert.equal(s(conn().respond(299, ['x', '1', 'y', '2'], '')), 'HTTP/1.1 299 \r\nx: 1\r\ny: 2\r\nContent-Length: 0\r\n\r\n');
  });
  test('header shapes: tuples, flat list, record with arrays and numbers', () => {
    const out = s(conn().respond(200, { 'Set-Cookie': ['a=1', 'b=2'], 'X-N': 5, 'X-U': undefined }, ''));
    assert.match(out, /Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-N: 5\r\n/);
    assert.doesNotMatch(out, /X-U/);
  });
  test('streaming HTTP/1.1 without Content-Length -> chunked; empty chunks are skipped', () => {
    const c = conn();
    assert.equal(s(c.writeHead(200, { 'Content-Type': 'text/plain' })), 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n');
    assert.equal(s(c.writeBody('hello')), '5\r\nhello\r\n');
    assert.equal(s(c.writeBody(Buffer.alloc(0))), '');
    assert.equal(s(c.writeBody(Buffer.from('x'.repeat(300)))), `12c\r\n${'x'.repeat(300)}\r\n`);
    assert.equal(s(c.writeEnd()), '0\r\n\r\n');
    assert.equal(c.shouldClose, false);
    assert.equal(c.writeState, 'idle');
  });
  test('chunked response with trailers', () => {
    const c = conn();
    c.writeHead(200, { Trailer: 'X-Checksum' });
    c.writeBody('abc');
    assert.equal(s(c.writeEnd([['X-Checksum', 'deadbeef'], ['X-Other', '1']])), '0\r\nX-Checksum: deadbeef\r\nX-Other: 1\r\n\r\n');
    assert.throws(() => {
      const d = conn();
      d.writeHead(200);
      d.writeEnd({ 'X-Bad': 'a\r\nb' });
    }, InvalidHeaderError);
    assert.throws(() => {
      const d = conn();
      d.writeHead(200);
      d.writeEnd({ 'Content-Length': '5' });
    }, InvalidHeaderError);
  });
  test('app Content-Length: streamed body enforced, overflow throws, short body forces close', () => {
    const c = conn();
    assert.equal(s(c.writeHead(200, { 'content-length': 5 })), 'HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n');
    assert.equal(s(c.writeBody('hel')), 'hel');
    assert.throws(() => c.writeBody('lo!'), LocalProtocolError);
    assert.equal(s(c.writeBody('lo')), 'lo');
    assert.equal(c.writeEnd().length, 0);
    assert.equal(c.shouldClose, false);
    const d = conn();
    d.writeHead(200, { 'content-length': 5 });
    d.writeBody('hel');
    d.writeEnd();
    assert.equal(d.shouldClose, true);
  });
  test('app Transfer-Encoding: chunked is honoured; other final codings refused', () => {
    const c = conn();
    assert.equal(s(c.writeHead(200, { 'Transfer-Encoding': 'gzip, chunked' })), 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n');
    assert.equal(s(c.writeBody('a')), '1\r\na\r\n');
    assert.throws(() => conn().writeHead(200, { 'Transfer-Encoding': 'gzip' }), InvalidHeaderError);
  });
  test('Content-Length together with Transfer-Encoding is refused (throws, nothing written, state kept)', () => {
    const c = conn();
    assert.throws(() => c.writeHead(200, { 'Content-Length': '5', 'Transfer-Encoding': 'chunked' }), InvalidHeaderError);
    assert.throws(() => c.respond(200, { 'Transfer-Encoding': 'chunked' }, 'x'), InvalidHeaderError);
    assert.equal(c.writeState, 'ready');
    assert.match(s(c.respond(200, null, 'ok')), /^HTTP\/1.1 200 OK/);
  });
  test('respond() with a mismatching Content-Length throws', () => {
    assert.throws(() => conn().respond(200, { 'Content-Length': '3' }, 'hello'), InvalidHeaderError);
    assert.throws(() => conn().respond(200, { 'Content-Length': '5', 'content-length': '5' }, 'hello'), InvalidHeaderError);
    assert.throws(() => conn().respond(200, { 'Content-Length': '+5' }, 'hello'), InvalidHeaderError);
  });
});

describe('bodiless responses', () => {
  const head = `HEAD / HTTP/1.1\r\n${H}\r\n`;
  test('HEAD: headers as for GET (Content-Length kept/computed) but no body bytes', () => {
    assert.equal(s(conn(head).respond(200, { 'Content-Type': 'text/plain' }, 'hello')), 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n');
    assert.equal(s(conn(head).respond(200, { 'Content-Length': '1234' }, null)), 'HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n');
    const c = conn(head);
    assert.equal(s(c.writeHead(200, { 'Content-Length': '1234' })), 'HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n');
    assert.equal(c.writeBody('ignored').length, 0);
    assert.equal(c.writeEnd().length, 0);
    assert.equal(c.shouldClose, false);
    const d = conn(head);
    assert.equal(s(d.writeHead(200)), 'HTTP/1.1 200 OK\r\n\r\n');
    d.writeEnd();
    assert.equal(d.shouldClose, false);
  });
  test('204: no body, no Content-Length / Transfer-Encoding (even if the app sets them)', () => {
    assert.equal(s(conn().respond(204, { 'Content-Length': '5', 'X-A': 'b' }, 'hello')), 'HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n');
    const c = conn();
    assert.equal(s(c.writeHead(204, { 'Transfer-Encoding': 'chunked' })), 'HTTP/1.1 204 No Content\r\n\r\n');
    assert.equal(c.writeBody('x').length, 0);
    assert.equal(c.writeEnd().length, 0);
    assert.equal(c.shouldClose, false);
  });
  test('304: no body; nothing added; app Content-Length kept', () => {
    assert.equal(s(conn().respond(304, { ETag: '"x"' }, null)), 'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n');
    assert.equal(s(conn().respond(304, { 'Content-Length': '10' }, null)), 'HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n');
    const c = conn();
    assert.equal(s(c.writeHead(304)), 'HTTP/1.1 304 Not Modified\r\n\r\n');
    assert.equal(c.writeBody('x').length, 0);
    c.writeEnd();
    assert.equal(c.shouldClose, false);
  });
});

describe('HTTP/1.0 and persistence', () => {
  test('HTTP/1.0 streaming without Content-Length -> close-delimited, Connection: close', () => {
    const c = conn('GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
    assert.equal(s(c.writeHead(200, { 'Transfer-Encoding': 'chunked' })), 'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n');
    assert.equal(s(c.writeBody('raw')), 'raw');
    assert.equal(c.writeEnd().length, 0);
    assert.equal(c.shouldClose, true);
  });
  test('HTTP/1.0 keep-alive with a length -> Connection: keep-alive and persists', () => {
    const c = conn('GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
    assert.equal(s(c.respond(200, null, 'x')), 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\nx');
    assert.equal(c.shouldClose, false);
  });
  test('HTTP/1.0 without keep-alive -> Connection: close', () => {
    const c = conn('GET / HTTP/1.0\r\n\r\n');
    assert.match(s(c.respond(200, null, 'x')), /\r\nConnection: close\r\n/);
    assert.equal(c.shouldClose, true);
  });
  test('app Connection: close is honoured (not duplicated)', () => {
    const c = conn();
    assert.equal(s(c.respond(200, { Connection: 'close' }, '')), 'HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    assert.equal(c.shouldClose, true);
  });
  test('startClosing(): idle -> close now; pending -> Connection: close then close', () => {
    const a = new H11Connection();
    a.startClosing();
    assert.equal(a.shouldClose, true);
    assert.deepEqual(a.receive(Buffer.from(`GET / HTTP/1.1\r\n${H}\r\n`)), []);
    const b = conn();
    b.startClosing();
    assert.match(s(b.respond(200, null, '')), /\r\nConnection: close\r\n/);
    assert.equal(b.shouldClose, true);
    const c = conn();
    c.writeHead(200, { 'content-length': '0' });
    c.startClosing();
    c.writeEnd();
    assert.equal(c.shouldClose, true);
  });
});

describe('interim responses', () => {
  test('writeInterim(100/103) before the final head; 101 refused; nothing for HTTP/1.0', () => {
    const c = conn(`POST / HTTP/1.1\r\n${H}Expect: 100-continue\r\nContent-Length: 1\r\n\r\n`);
    assert.equal(s(c.writeInterim(103, { Link: '</s.css>; rel=preload' })), 'HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n');
    assert.equal(s(c.writeInterim(100)), 'HTTP/1.1 100 Continue\r\n\r\n');
    assert.equal(c.send100Continue().length, 0, '100 already sent');
    assert.throws(() => c.writeInterim(101), LocalProtocolError);
    assert.throws(() => c.writeInterim(200), LocalProtocolError);
    c.writeHead(200, { 'content-length': 0 });
    assert.throws(() => c.writeInterim(100), LocalProtocolError);
    const d = conn('POST / HTTP/1.0\r\nContent-Length: 1\r\n\r\n');
    assert.equal(d.writeInterim(100).length, 0);
    assert.equal(d.send100Continue().length, 0);
  });
  test('a 1xx is not refused because an earlier response (any connection) set Transfer-Encoding', () => {
    const a = conn();
    a.writeHead(200, { 'Transfer-Encoding': 'chunked' });
    assert.equal(s(conn().writeInterim(103, { Link: '</a.css>' })), 'HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n');
  });
    test('send100Continue() is empty when the request did not ask', () => {
    assert.equal(conn().send100Continue().length, 0);
  });
});

describe('validation of application output', () => {
  test('header names must be tokens', () => {
    for (const name of ['Bad Name', 'x:y', '', 'é', 'a\r\nb', 'a\x00']) {
      assert.throws(() => conn().writeHead(200, [[name, 'v']]), InvalidHeaderError, JSON.stringify(name));
    }
  });
  test('header values: no CR, LF, NUL, other CTLs or chars > 0xFF', () => {
    for (const v of ['a\rb', 'a\nb', 'a\r\nSet-Cookie: x', 'a\x00b', 'a\x01b', 'a\x7fb', 'a\u0100b', '😀']) {
      const c = conn();
      assert.throws(() => c.respond(200, { 'X-A': v }, 'x'), (e: unknown) => e instanceof InvalidHeaderError && e.headerName === 'X-A', JSON.stringify(v));
      assert.equal(c.writeState, 'ready', 'nothing written, still ready');
    }
    assert.match(s(conn().respond(200, { 'X-A': 'tab\there caf\xe9' }, '')), /X-A: tab\there caf\xe9\r\n/);
  });
  test('status and reason validation', () => {
    assert.throws(() => conn().writeHead(99), LocalProtocolError);
    assert.throws(() => conn().writeHead(600), LocalProtocolError);
    assert.throws(() => conn().writeHead(200.5), LocalProtocolError);
    assert.throws(() => conn().writeHead(100), LocalProtocolError);
    assert.throws(() => conn().writeHead(200, null, 'OK\r\nX: y'), InvalidHeaderError);
  });
  test('state misuse throws LocalProtocolError', () => {
    const idle = new H11Connection();
    assert.throws(() => idle.writeHead(200), LocalProtocolError);
    assert.throws(() => idle.writeBody('x'), LocalProtocolError);
    assert.throws(() => idle.writeEnd(), LocalProtocolError);
    const c = conn();
    c.writeHead(200);
    assert.throws(() => c.writeHead(200), LocalProtocolError);
    assert.throws(() => c.respond(200), LocalProtocolError);
    assert.throws(() => c.errorResponse(500), LocalProtocolError);
    c.writeEnd();
    assert.throws(() => c.writeEnd(), LocalProtocolError);
  });
  test('CONNECT tunnels are not supported (2xx refused), errors are fine', () => {
    const c = conn(`CONNECT example.com:443 HTTP/1.1\r\n${H}\r\n`);
    assert.throws(() => c.respond(200), LocalProtocolError);
    assert.match(s(c.respond(405, null, '')), /^HTTP\/1.1 405 /);
  });
});

describe('errorResponse, Date, states', () => {
  test('errorResponse(): minimal complete response with Connection: close', () => {
    const c = new H11Connection();
    const ev = c.receive(Buffer.from('GET / HTTP/1.1\r\n\r\n'))[0];
    assert.ok(ev?.type === 'error');
    assert.equal(s(c.errorResponse(ev.status)),
      'HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 12\r\nConnection: close\r\n\r\nBad Request\n');
    assert.equal(c.shouldClose, true);
    assert.equal(c.writeState, 'closed');
  });
  test('error after the request was delivered (chunked 413): errorResponse when no response started', () => {
    const c = new H11Connection({ maxBodySize: 3 });
    const evs = c.receive(Buffer.from(`POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n`));
    assert.deepEqual(evs.map((e) => e.type), ['request', 'error']);
    assert.equal(c.shouldClose, true);
    assert.throws(() => c.respond(200), LocalProtocolError);
    assert.match(s(c.errorResponse(413)), /^HTTP\/1.1 413 Content Too Large\r\n/);
  });
  test('Date header from the injected provider; app Date wins; cache recomputes once per second', () => {
    const c = conn(`GET / HTTP/1.1\r\n${H}\r\n`, { date: () => 'Thu, 01 Jan 1970 00:00:00 GMT' });
    assert.match(s(c.respond(200, null, '')), /\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n$/);
    const d = conn(`GET / HTTP/1.1\r\n${H}\r\n`, { date: () => 'X' });
    assert.doesNotMatch(s(d.respond(200, { date: 'Y' }, '')), /Date: X/);
    let now = 1000;
    let calls = 0;
    const cache = createDateCache(() => (calls++, now));
    const a = cache();
    now = 1999;
    assert.equal(cache(), a);
    now = 2000;
    assert.notEqual(cache(), a);
    assert.equal(cache(), 'Thu, 01 Jan 1970 00:00:02 GMT');
    assert.equal(calls, 4);
  });
  test('readState / writeState / responseStarted progression', () => {
    const c = new H11Connection();
    assert.equal(c.readState, 'head');
    assert.equal(c.writeState, 'idle');
    c.receive(Buffer.from(`POST / HTTP/1.1\r\n${H}Content-Length: 4\r\n\r\nab`));
    assert.equal(c.readState, 'body');
    assert.equal(c.writeState, 'ready');
    assert.equal(c.responseStarted, false);
    c.writeHead(200, { 'content-length': 1 });
    assert.equal(c.responseStarted, true);
    c.receive(Buffer.from('cd'));
    assert.equal(c.readState, 'waiting');
    c.writeBody('x');
    c.writeEnd();
    assert.equal(c.readState, 'head');
    assert.equal(c.writeState, 'idle');
  });
});
