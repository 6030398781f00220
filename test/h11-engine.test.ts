// h11 engine — request side: parsing, strictness (RFC 9112/9110), limits, smuggling, persistence.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { H11Connection } from '../workers/h11/engine/index.js';
import type { H11Event, RequestEvent } from '../workers/h11/engine/index.js';
import { drive, firstError, normalize, requests, splits } from './h11-engine-helpers.test.js';

const H = 'Host: example.com\r\n';

function one(input: string, opts = {}): H11Event[] {
  const c = new H11Connection(opts);
  return c.receive(Buffer.from(input, 'latin1'));
}
function req(input: string, opts = {}): RequestEvent {
  const evs = one(input, opts);
  const r = evs[0];
  assert.ok(r && r.type === 'request', `expected a request, got ${JSON.stringify(normalize(evs))}`);
  return r;
}
/** Asserts the input is rejected with `status` whatever the chunking, and nothing after it is parsed. */
function rejects(input: string, status: number, opts = {}): void {
  for (const parts of [[input], input.split('')]) {
    const r = drive(parts, opts);
    assert.equal(firstError(r), status, `${JSON.stringify(input)} -> ${JSON.stringify(r.events)}`);
    const i = r.events.findIndex((e) => e.type === 'error');
    assert.equal(i, r.events.length - 1, 'error must be the last event');
    assert.ok(r.conn.shouldClose);
    assert.deepEqual(r.conn.receive(Buffer.from('GET / HTTP/1.1\r\nHost: a\r\n\r\n')), []);
  }
}
const ok = (input: string, opts = {}): void => {
  const r = drive([input], opts);
  assert.equal(firstError(r), undefined, `${JSON.stringify(input)} -> ${JSON.stringify(r.events)}`);
  assert.ok(requests(r).length >= 1);
};

describe('request line', () => {
  test('origin-form GET', () => {
    const r = req(`GET /a/b?c=d%20e HTTP/1.1\r\n${H}\r\n`);
    assert.equal(r.method, 'GET');
    assert.equal(r.target, '/a/b?c=d%20e');
    assert.equal(r.version, '1.1');
    assert.deepEqual(r.headers, ['host', 'example.com']);
    assert.equal(r.bodyKind, 'none');
    assert.equal(r.contentLength, 0);
  });
  test('absolute-form', () => assert.equal(req(`GET http://example.com/x HTTP/1.1\r\n${H}\r\n`).target, 'http://example.com/x'));
  test('asterisk-form only for OPTIONS', () => {
    assert.equal(req(`OPTIONS * HTTP/1.1\r\n${H}\r\n`).target, '*');
    rejects(`GET * HTTP/1.1\r\n${H}\r\n`, 400);
    rejects(`OPTIONS *x HTTP/1.1\r\n${H}\r\n`, 400);
  });
  test('authority-form only for CONNECT', () => {
    assert.equal(req(`CONNECT example.com:443 HTTP/1.1\r\n${H}\r\n`).target, 'example.com:443');
    rejects(`GET example.com:443 HTTP/1.1\r\n${H}\r\n`, 400);
    rejects(`CONNECT /x HTTP/1.1\r\n${H}\r\n`, 400);
    rejects(`CONNECT example.com HTTP/1.1\r\n${H}\r\n`, 400);
  });
  test('method must be a token', () => {
    rejects(`G(T / HTTP/1.1\r\n${H}\r\n`, 400);
    rejects(`G\x00T / HTTP/1.1\r\n${H}\r\n`, 400);
    assert.equal(req(`M-SEARCH / HTTP/1.1\r\n${H}\r\n`).method, 'M-SEARCH');
  });
  test('single SP separators', () => {
    rejects(`GET  / HTTP/1.1\r\n${H}\r\n`, 400);
    rejects(`GET /  HTTP/1.1\r\n${H}\r\n`, 400);
    rejects(`GET / HTTP/1.1 \r\n${H}\r\n`, 400);
    rejects(`GET\t/ HTTP/1.1\r\n${H}\r\n`, 400);
    rejects(`GET /\tHTTP/1.1\r\n${H}\r\n`, 400);
    rejects(` GET / HTTP/1.1\r\n${H}\r\n`, 400);
  });
  test('no control characters, spaces, non-ASCII or fragments in the target', () => {
    rejects(`GET /a\x01b HTTP/1.1\r\n${H}\r\n`, 400);
    rejects(`GET /a b HTTP/1.1\r\n${H}\r\n`, 400);
    rejects(`GET /a\x7fb HTTP/1.1\r\n${H}\r\n`, 400);
    rejects(`GET /caf\xe9 HTTP/1.1\r\n${H}\r\n`, 400);
    rejects(`GET /a#frag HTTP/1.1\r\n${H}\r\n`, 400);
    rejects(`GET /a%zz HTTP/1.1\r\n${H}\r\n`, 400);
    rejects(`GET /a%4 HTTP/1.1\r\n${H}\r\n`, 400);
    rejects(`GET http:/x HTTP/1.1\r\n${H}\r\n`, 400);
  });
  test('version HTTP/1.0 and HTTP/1.1 only; well-formed others -> 505; garbage -> 400', () => {
    assert.equal(req('GET / HTTP/1.0\r\n\r\n').version, '1.0');
    rejects(`GET / HTTP/1.2\r\n${H}\r\n`, 505);
    rejects(`GET / HTTP/2.0\r\n${H}\r\n`, 505);
    rejects(`GET / HTTP/0.9\r\n${H}\r\n`, 505);
    rejects('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 505);
    rejects(`GET / HTTP/1.10\r\n${H}\r\n`, 400);
    rejects(`GET / http/1.1\r\n${H}\r\n`, 400);
    rejects(`GET / HTTP/1\r\n${H}\r\n`, 400);
    rejects(`GET / HTTP/a.b\r\n${H}\r\n`, 400);
    rejects(`GET /\r\n${H}\r\n`, 400);
    rejects(`GET / \r\n${H}\r\n`, 400);
  });
  test('CRLF line endings: bare CR and bare LF are rejected', () => {
    rejects(`GET / HTTP/1.1\r${H}\r\n`, 400);
    rejects(`GET / HTTP/1.1\n${H}\r\n`, 400);
    rejects(`GET / HTTP/1.1\r\nHost: a\n\r\n`, 400);
    rejects(`GET / HTTP/1.1\r\nHost: a\r\n\n`, 400);
    rejects(`GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n`, 400);
    rejects(`GET / HTTP/1.1\r\nHost: a\r\n\r\r\n`, 400);
    rejects(`\nGET / HTTP/1.1\r\n${H}\r\n`, 400);
    rejects(`\r GET / HTTP/1.1\r\n${H}\r\n`, 400);
  });
  test('empty lines before the request line are ignored', () => {
    const r = drive([`\r\n\r\nGET / HTTP/1.1\r\n${H}\r\n`]);
    assert.deepEqual(requests(r), ['/']);
  });
  test('common methods are interned, others preserved', () => {
    for (const m of ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'TRACE', 'PURGE', 'get']) {
      assert.equal(req(`${m} / HTTP/1.1\r\n${H}\r\n`).method, m);
    }
  });
});

describe('header fields', () => {
  test('names lowercased, values OWS-trimmed, HTAB and obs-text allowed in values', () => {
    const r = req(`GET / HTTP/1.1\r\nHOST:example.com\r\nX-Custom-Thing: \t a\tb \t\r\nAccept:  */*\r\nX-E: caf\xe9\r\nX-Empty:\r\n\r\n`);
    assert.deepEqual(r.headers, ['host', 'example.com', 'x-custom-thing', 'a\tb', 'accept', '*/*', 'x-e', 'café', 'x-empty', '']);
  });
  test('no whitespace between field name and colon', () => {
    rejects(`GET / HTTP/1.1\r\n${H}X-A : b\r\n\r\n`, 400);
    rejects(`GET / HTTP/1.1\r\n${H}X-A\t: b\r\n\r\n`, 400);
  });
  test('field name must be a token and non-empty', () => {
    rejects(`GET / HTTP/1.1\r\n${H}X(A): b\r\n\r\n`, 400);
    rejects(`GET / HTTP/1.1\r\n${H}: b\r\n\r\n`, 400);
    rejects(`GET / HTTP/1.1\r\n${H}X\xe9: b\r\n\r\n`, 400);
    rejects(`GET / HTTP/1.1\r\n${H}no-colon\r\n\r\n`, 400);
  });
  test('obs-fold (line starting with SP/HTAB) is rejected', () => {
    rejects(`GET / HTTP/1.1\r\n${H}X-A: b\r\n c\r\n\r\n`, 400);
    rejects(`GET / HTTP/1.1\r\n${H}X-A: b\r\n\tc\r\n\r\n`, 400);
    rejects(`GET / HTTP/1.1\r\n Host: a\r\n\r\n`, 400);
  });
  test('NUL, CR, LF and other CTLs (except HTAB) in values are rejected', () => {
    rejects(`GET / HTTP/1.1\r\n${H}X-A: a\x00b\r\n\r\n`, 400);
    rejects(`GET / HTTP/1.1\r\n${H}X-A: a\x01b\r\n\r\n`, 400);
    rejects(`GET / HTTP/1.1\r\n${H}X-A: a\x0bb\r\n\r\n`, 400);
    rejects(`GET / HTTP/1.1\r\n${H}X-A: a\x1fb\r\n\r\n`, 400);
    rejects(`GET / HTTP/1.1\r\n${H}X-A: a\x7fb\r\n\r\n`, 400);
    rejects(`GET / HTTP/1.1\r\n${H}X-A: a\rb\r\n\r\n`, 400);
    rejects(`GET / HTTP/1.1\r\n${H}X-A: a\nb\r\n\r\n`, 400);
  });
});

describe('message framing', () => {
  test('Content-Length body', () => {
    const r = drive([`POST /p HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nhello`]);
    assert.deepEqual(r.events.slice(1), [{ type: 'data', text: 'hello' }, { type: 'end', trailers: null }]);
    assert.equal((r.events[0] as RequestEvent).bodyKind, 'length');
    assert.equal((r.events[0] as RequestEvent).contentLength, 5);
  });
  test('Content-Length: 0 and leading zeros', () => {
    const r = req(`POST / HTTP/1.1\r\n${H}Content-Length: 0\r\n\r\n`);
    assert.equal(r.contentLength, 0);
    assert.equal(req(`POST / HTTP/1.1\r\n${H}Content-Length: 005\r\n\r\n`).contentLength, 5);
    assert.equal(req(`POST / HTTP/1.1\r\n${H}Content-Length: 9007199254740991\r\n\r\n`).contentLength, Number.MAX_SAFE_INTEGER);
  });
  test('invalid Content-Length values -> 400', () => {
    for (const v of ['5, 5', '5,5', '+5', '-5', '5 5', '0x5', '', 'abc', '5.0', '1e3', '99999999999999999', '9007199254740992']) {
      rejects(`POST / HTTP/1.1\r\n${H}Content-Length: ${v}\r\n\r\nhello`, 400);
    }
  });
  test('duplicate Content-Length (even equal) -> 400', () => {
    rejects(`POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello`, 400);
    rejects(`POST / HTTP/1.1\r\n${H}Content-Length: 5\r\ncontent-length: 6\r\n\r\nhello`, 400);
  });
  test('Transfer-Encoding together with Content-Length -> 400 (either order)', () => {
    rejects(`POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400);
    rejects(`POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n`, 400);
  });
  test('final transfer-coding must be chunked -> else 400', () => {
    for (const v of ['gzip', 'identity', 'chunked, gzip', 'chunked, identity', 'xchunked', 'chunkedx', 'chunked;q=1', '', ',', '"chunked"']) {
      rejects(`POST / HTTP/1.1\r\n${H}Transfer-Encoding: ${v}\r\n\r\n0\r\n\r\n`, 400);
    }
  });
  test('chunked twice -> 400', () => {
    rejects(`POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n`, 400);
    rejects(`POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400);
  });
  test('other (valid) codings before chunked -> 501 (server only decodes chunked)', () => {
    rejects(`POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`, 501);
    rejects(`POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 501);
    rejects(`POST / HTTP/1.1\r\n${H}Transfer-Encoding: x-custom;a="b", chunked\r\n\r\n0\r\n\r\n`, 501);
  });
  test('chunked is case-insensitive and OWS-trimmed; empty list elements ignored', () => {
    for (const v of ['chunked', 'Chunked', 'CHUNKED', ' chunked', 'chunked ', ', chunked', 'chunked,']) {
      assert.equal(req(`POST / HTTP/1.1\r\n${H}Transfer-Encoding:${v}\r\n\r\n`).bodyKind, 'chunked', v);
    }
  });
  test('Transfer-Encoding in an HTTP/1.0 request -> 400', () => {
    rejects('POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400);
  });
  test('GET with Content-Length delivers the body', () => {
    const r = drive([`GET / HTTP/1.1\r\n${H}Content-Length: 2\r\n\r\nhi`]);
    assert.deepEqual(r.events[1], { type: 'data', text: 'hi' });
  });
});

describe('chunked request body', () => {
  test('extensions and trailers', () => {
    const body = '5;name=value\r\nhello\r\n6 ; a = "q\\"x;y" ;b\r\n world\r\nA\r\n0123456789\r\n0;last\r\nX-Trailer: t1\r\nX-Other:  t2 \r\n\r\n';
    const r = drive([`POST /c HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n${body}`]);
    assert.deepEqual(r.events.slice(1), [
      { type: 'data', text: 'hello world0123456789' },
      { type: 'end', trailers: ['x-trailer', 't1', 'x-other', 't2'] },
    ]);
    assert.equal((r.events[0] as RequestEvent).contentLength, null);
  });
  test('uppercase/lowercase hex and leading zeros', () => {
    const r = drive([`POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n00000a\r\n0123456789\r\nB\r\nabcdefghijk\r\n0\r\n\r\n`]);
    assert.deepEqual(r.events[1], { type: 'data', text: '0123456789abcdefghijk' });
  });
  const pre = `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n`;
  test('chunk-size: hex digits only, at least one, no 0x, no leading/trailing whitespace', () => {
    rejects(`${pre}0x5\r\nhello\r\n0\r\n\r\n`, 400);
    rejects(`${pre} 5\r\nhello\r\n0\r\n\r\n`, 400);
    rejects(`${pre}5 \r\nhello\r\n0\r\n\r\n`, 400);
    rejects(`${pre}\t5\r\nhello\r\n0\r\n\r\n`, 400);
    rejects(`${pre}\r\nhello\r\n0\r\n\r\n`, 400);
    rejects(`${pre}g\r\nhello\r\n0\r\n\r\n`, 400);
    rejects(`${pre}-5\r\nhello\r\n0\r\n\r\n`, 400);
    rejects(`${pre}+5\r\nhello\r\n0\r\n\r\n`, 400);
  });
  test('chunk-size bounded: <= 16 hex digits and <= MAX_SAFE_INTEGER', () => {
    rejects(`${pre}00000000000000005\r\nhello\r\n0\r\n\r\n`, 400);
    rejects(`${pre}20000000000000\r\nhello\r\n0\r\n\r\n`, 400);
    rejects(`${pre}ffffffffffffffff\r\nhello\r\n0\r\n\r\n`, 400);
    const r = drive([`${pre}0000000000000005\r\nhello\r\n0\r\n\r\n`]);
    assert.deepEqual(r.events[1], { type: 'data', text: 'hello' });
  });
  test('chunk extensions: BWS before ";" allowed, malformed rejected, length bounded', () => {
    const r = drive([`${pre}5 ;ext\r\nhello\r\n0\r\n\r\n`]);
    assert.deepEqual(r.events[1], { type: 'data', text: 'hello' });
    for (const ext of [';', ';=x', ';a=', ';a="x', ';a="x"y', ';a b', ';a=b c', ';a=\x01', ';a="\x01"', ';a=b;', 'x']) {
      rejects(`${pre}5${ext}\r\nhello\r\n0\r\n\r\n`, 400);
    }
    rejects(`${pre}5;a=${'x'.repeat(200)}\r\nhello\r\n0\r\n\r\n`, 400, { limitRequestFieldSize: 100 });
  });
  test('data must be followed by exactly CRLF', () => {
    rejects(`${pre}5\r\nhelloX\r\n0\r\n\r\n`, 400);
    rejects(`${pre}5\r\nhello\n0\r\n\r\n`, 400);
    rejects(`${pre}5\r\nhello\r0\r\n\r\n`, 400);
    rejects(`${pre}5\r\nhellohello\r\n0\r\n\r\n`, 400);
  });
  test('bare LF / bare CR in chunk lines', () => {
    rejects(`${pre}5\nhello\r\n0\r\n\r\n`, 400);
    rejects(`${pre}5\rhello\r\n0\r\n\r\n`, 400);
    rejects(`${pre}5\r\nhello\r\n0\n\r\n`, 400);
    rejects(`${pre}5\r\nhello\r\n0\r\n\n`, 400);
  });
  test('trailers use the same field rules and limits', () => {
    rejects(`${pre}0\r\nX-A : b\r\n\r\n`, 400);
    rejects(`${pre}0\r\nX-A: b\x00\r\n\r\n`, 400);
    rejects(`${pre}0\r\nX-A: b\r\n folded\r\n\r\n`, 400);
    rejects(`${pre}0\r\n${'X-A: b\r\n'.repeat(4)}\r\n`, 431, { limitRequestFields: 3 });
    rejects(`${pre}0\r\nX-A: ${'b'.repeat(100)}\r\n\r\n`, 431, { limitRequestFieldSize: 50 });
  });
});

describe('Host', () => {
  test('missing in HTTP/1.1 -> 400; optional in HTTP/1.0', () => {
    rejects('GET / HTTP/1.1\r\n\r\n', 400);
    assert.equal(req('GET / HTTP/1.0\r\n\r\n').method, 'GET');
  });
  test('duplicate -> 400', () => rejects('GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n', 400));
  test('invalid characters -> 400', () => {
    for (const v of ['exa mple.com', 'a/b', 'a@b', 'a:b:c', 'a:port', ':80', '[::1', '[]', 'a?b', 'a%zz', 'a:123456']) {
      rejects(`GET / HTTP/1.1\r\nHost: ${v}\r\n\r\n`, 400);
    }
  });
  test('valid forms', () => {
    for (const v of ['example.com', 'example.com:8080', 'example.com:', '127.0.0.1', '[::1]:443', '[fe80::1%25eth0]', 'xn--bcher-kva.example', 'a_b-c~d', 'a%41b', '']) {
      assert.equal(req(`GET / HTTP/1.1\r\nHost: ${v}\r\n\r\n`).method, 'GET', v);
    }
  });
  test('values repeated from earlier requests (kept for reuse) never stand in for different bytes', () => {
    // Same lengths, different bytes, on one connection and across connections: the last value
    // of a known name is reused only for the same bytes, and a Host validated before does not
    // let an invalid one of the same length through.
    const hosts = ['a.example:80', 'b.example:80', 'a.example:80', 'a.example:8\xe9'];
    const c = new H11Connection();
    const got: string[] = [];
    for (const h of hosts.slice(0, 3)) {
      const evs = c.receive(Buffer.from(`GET / HTTP/1.1\r\nHost: ${h}\r\nUser-Agent: ua/${h}\r\n\r\n`, 'latin1'));
      const r = evs[0] as RequestEvent;
      got.push(`${r.headers[1]} ${r.headers[3]}`);
      c.respond(204, null);
    }
    assert.deepEqual(got, hosts.slice(0, 3).map((h) => `${h} ua/${h}`));
    rejects(`GET / HTTP/1.1\r\nHost: ${hosts[3]}\r\n\r\n`, 400);
    assert.equal(req(`GET / HTTP/1.1\r\nUser-Agent: x\xe9\r\n${H}\r\n`).headers[1], 'x\xe9');
  });
});

describe('limits', () => {
  test('request line: exactly the limit is accepted, one more byte -> 414', () => {
    const line = (n: number): string => `GET /${'a'.repeat(n - 14)} HTTP/1.1`;
    assert.equal(line(40).length, 40);
    ok(`${line(40)}\r\n${H}\r\n`, { limitRequestLine: 40 });
    rejects(`${line(41)}\r\n${H}\r\n`, 414, { limitRequestLine: 40 });
  });
  test('request line: 414 without waiting for the CRLF', () => {
    const c = new H11Connection({ limitRequestLine: 40 });
    assert.deepEqual(c.receive(Buffer.from('GET /' + 'a'.repeat(35))), []);
    assert.deepEqual(normalize(c.receive(Buffer.from('aa'))), [{ type: 'error', status: 414 }]);
  });
  test('default request-line limit is 4094', () => {
    ok(`GET /${'a'.repeat(4094 - 14)} HTTP/1.1\r\n${H}\r\n`);
    rejects(`GET /${'a'.repeat(4095 - 14)} HTTP/1.1\r\n${H}\r\n`, 414);
  });
  test('number of fields: limit accepted, one more -> 431', () => {
    ok(`GET / HTTP/1.1\r\n${H}${'X-A: b\r\n'.repeat(4)}\r\n`, { limitRequestFields: 5 });
    rejects(`GET / HTTP/1.1\r\n${H}${'X-A: b\r\n'.repeat(5)}\r\n`, 431, { limitRequestFields: 5 });
  });
  test('field line size: limit accepted, one more -> 431, detected before the CRLF', () => {
    const f = (n: number): string => `X-A: ${'b'.repeat(n - 5)}`;
    ok(`GET / HTTP/1.1\r\n${H}${f(50)}\r\n\r\n`, { limitRequestFieldSize: 50 });
    rejects(`GET / HTTP/1.1\r\n${H}${f(51)}\r\n\r\n`, 431, { limitRequestFieldSize: 50 });
    const c = new H11Connection({ limitRequestFieldSize: 50 });
    assert.deepEqual(c.receive(Buffer.from(`GET / HTTP/1.1\r\n${H}${f(50)}`)), []);
    assert.deepEqual(normalize(c.receive(Buffer.from('x'))), [{ type: 'error', status: 431 }]);
  });
  test('Content-Length above maxBodySize -> 413 at the head (no request event)', () => {
    const r = drive([`POST / HTTP/1.1\r\n${H}Content-Length: 11\r\n\r\nhello world`], { maxBodySize: 10 });
    assert.deepEqual(r.events, [{ type: 'error', status: 413 }]);
    ok(`POST / HTTP/1.1\r\n${H}Content-Length: 10\r\n\r\nhelloworld`, { maxBodySize: 10 });
  });
  test('chunked body above maxBodySize -> 413 when exceeded', () => {
    const r = drive([`POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n5\r\nworld\r\n1\r\n!\r\n0\r\n\r\n`], { maxBodySize: 10 });
    assert.deepEqual(r.events.map((e) => e.type), ['request', 'data', 'error']);
    assert.equal(firstError(r), 413);
    assert.equal((r.events[1] as { text: string }).text, 'helloworld');
  });
  test('head stays bounded when the peer trickles bytes', () => {
    const c = new H11Connection({ limitRequestFieldSize: 100, limitRequestFields: 10 });
    c.receive(Buffer.from(`GET / HTTP/1.1\r\n${H}X-A: `));
    let err: H11Event | undefined;
    for (let i = 0; i < 1000 && !err; i++) {
      err = c.receive(Buffer.from('a')).find((e) => e.type === 'error');
      assert.ok(c.bufferedBytes <= 102, `buffered ${c.bufferedBytes}`);
    }
    assert.equal(err?.type === 'error' && err.status, 431);
    // many short lines: bounded by the field count
    const d = new H11Connection({ limitRequestFieldSize: 100, limitRequestFields: 10 });
    d.receive(Buffer.from(`GET / HTTP/1.1\r\n${H}`));
    let st: number | undefined;
    for (let i = 0; i < 100 && st === undefined; i++) {
      for (const e of d.receive(Buffer.from('X: y\r\n'))) if (e.type === 'error') st = e.status;
    }
    assert.equal(st, 431);
  });
  test('limit options: 0 means the hard cap, negatives throw', () => {
    assert.throws(() => new H11Connection({ limitRequestLine: -1 }), RangeError);
    ok(`GET /${'a'.repeat(10000)} HTTP/1.1\r\n${H}\r\n`, { limitRequestLine: 0 });
  });
});

describe('after an error nothing more is parsed (smuggling-shaped inputs)', () => {
  const hidden = 'GET /smuggled HTTP/1.1\r\nHost: example.com\r\n\r\n';
  const cases: [string, string, number][] = [
    ['CL.TE', `POST / HTTP/1.1\r\n${H}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX${hidden}`, 400],
    ['TE.CL', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\n${hidden}\r\n0\r\n\r\n`, 400],
    ['TE.TE xchunked', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n${hidden}`, 400],
    ['TE.TE xchunked + CL', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: xchunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n${hidden}`, 400],
    ['TE: chunked, identity', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n${hidden}`, 400],
    ['TE with space before colon', `POST / HTTP/1.1\r\n${H}Transfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n${hidden}`, 400],
    ['TE with VT', `POST / HTTP/1.1\r\n${H}Transfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n${hidden}`, 400],
    ['TE obs-folded', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: identity\r\n chunked\r\n\r\n0\r\n\r\n${hidden}`, 400],
    ['TE folded header name', `POST / HTTP/1.1\r\n${H}X: y\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n${hidden}`, 400],
    ['duplicate CL', `POST / HTTP/1.1\r\n${H}Content-Length: 0\r\nContent-Length: 44\r\n\r\n${hidden}`, 400],
    ['CL list', `POST / HTTP/1.1\r\n${H}Content-Length: 0, 44\r\n\r\n${hidden}`, 400],
    ['CL +5', `POST / HTTP/1.1\r\n${H}Content-Length: +5\r\n\r\nhello${hidden}`, 400],
    ['chunk size 0x5', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n${hidden}`, 400],
    ['bare LF chunk line', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n${hidden}`, 400],
    ['bare LF after chunk data', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\n\n${hidden}`, 400],
    ['bare LF head end', `GET / HTTP/1.1\n${H}\n${hidden}`, 400],
    ['NUL in header', `GET / HTTP/1.1\r\n${H}X: a\x00\r\n\r\n${hidden}`, 400],
    ['HTTP/1.0 TE', `POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${hidden}`, 400],
    ['gzip, chunked', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n${hidden}`, 501],
    ['CL too big', `POST / HTTP/1.1\r\n${H}Content-Length: 100\r\n\r\n${hidden}`, 413],
  ];
  for (const [name, input, status] of cases) {
    test(name, () => {
      for (const parts of splits(input).filter((_, i, a) => i === 0 || i === a.length - 1 || i % 7 === 0)) {
        const opts = status === 413 ? { maxBodySize: 50 } : {};
        const r = drive(parts, opts);
        assert.equal(firstError(r), status, name);
        assert.ok(!requests(r).includes('/smuggled'), 'hidden request must never reach the app');
        assert.equal(r.events[r.events.length - 1]!.type, 'error');
        assert.match(r.out, new RegExp(`^HTTP/1.1 ${status} .*Connection: close`, 's'));
      }
    });
  }
  test('chunk size "5 ;ext" is valid BWS: framing stays exact and the next request is the real one', () => {
    const r = drive([`POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5 ;ext\r\nhello\r\n0\r\n\r\n${hidden}`]);
    assert.deepEqual(requests(r), ['/a', '/smuggled']);
    assert.equal(firstError(r), undefined);
  });
  test('after an error, receive() and receiveEOF() return nothing forever', () => {
    const c = new H11Connection();
    const evs = c.receive(Buffer.from(`GET / HTTP/1.1\r\nBad Header: x\r\n\r\n${hidden}`));
    assert.equal(evs.length, 1);
    assert.equal(c.readState, 'error');
    for (let i = 0; i < 3; i++) assert.deepEqual(c.receive(Buffer.from(hidden)), []);
    assert.deepEqual(c.receive(), []);
    assert.deepEqual(c.receiveEOF(), []);
    assert.equal(c.bufferedBytes, 0);
    assert.ok(c.shouldClose);
  });
  test('an error in a pipelined request surfaces only after the previous response, in order', () => {
    const c = new H11Connection();
    const evs = c.receive(Buffer.from(`GET /1 HTTP/1.1\r\n${H}\r\nGET /2 HTTP/1.1\r\nBad : x\r\n\r\n${hidden}`));
    assert.deepEqual(normalize(evs).map((e) => e.type), ['request', 'end']);
    c.respond(200, null, 'one');
    assert.deepEqual(normalize(c.receive()), [{ type: 'error', status: 400 }]);
    assert.deepEqual(c.receive(), []);
  });
});

describe('persistence', () => {
  const ka = (s: string): boolean => req(s).keepAlive;
  test('HTTP/1.1 is persistent unless Connection: close (comma list, case-insensitive)', () => {
    assert.equal(ka(`GET / HTTP/1.1\r\n${H}\r\n`), true);
    assert.equal(ka(`GET / HTTP/1.1\r\n${H}Connection: close\r\n\r\n`), false);
    assert.equal(ka(`GET / HTTP/1.1\r\n${H}Connection: Upgrade, CLOSE\r\n\r\n`), false);
    assert.equal(ka(`GET / HTTP/1.1\r\n${H}Connection: foo\r\nConnection: Close\r\n\r\n`), false);
    assert.equal(ka(`GET / HTTP/1.1\r\n${H}Connection: closed\r\n\r\n`), true);
  });
  test('HTTP/1.0 closes unless Connection: keep-alive', () => {
    assert.equal(ka('GET / HTTP/1.0\r\n\r\n'), false);
    assert.equal(ka('GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n'), true);
    assert.equal(ka('GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n'), false);
  });
  test('keep-alive sequence of requests on one connection', () => {
    const c = new H11Connection();
    for (let i = 0; i < 5; i++) {
      const evs = normalize(c.receive(Buffer.from(`GET /${i} HTTP/1.1\r\n${H}\r\n`)));
      assert.deepEqual(evs.map((e) => e.type), ['request', 'end']);
      assert.equal((evs[0] as RequestEvent).target, `/${i}`);
      assert.equal(c.writeState, 'ready');
      const out = c.respond(200, { 'content-type': 'text/plain' }, `r${i}`).toString();
      assert.match(out, /^HTTP\/1.1 200 OK\r\n/);
      assert.doesNotMatch(out, /Connection: close/);
      assert.equal(c.shouldClose, false);
      assert.equal(c.readState, 'head');
    }
  });
  test('Connection: close request -> response carries Connection: close and shouldClose', () => {
    const c = new H11Connection();
    c.receive(Buffer.from(`GET / HTTP/1.1\r\n${H}Connection: close\r\n\r\nGET /x HTTP/1.1\r\n${H}\r\n`));
    const out = c.respond(200, null, 'x').toString();
    assert.match(out, /\r\nConnection: close\r\n/);
    assert.equal(c.shouldClose, true);
    assert.deepEqual(c.receive(), []);
  });
});

describe('pipelining and chunking invariance', () => {
  test('8 pipelined requests in one chunk: one at a time, responses strictly in order', () => {
    const c = new H11Connection();
    let input = '';
    for (let i = 0; i < 8; i++) input += `GET /${i} HTTP/1.1\r\n${H}\r\n`;
    let evs = c.receive(Buffer.from(input));
    const out: string[] = [];
    for (let i = 0; i < 8; i++) {
      const n = normalize(evs);
      assert.deepEqual(n.map((e) => e.type), ['request', 'end'], `request ${i}`);
      assert.equal((n[0] as RequestEvent).target, `/${i}`);
      assert.equal(c.readState, 'waiting');
      // bytes after the current request are held, not parsed
      assert.deepEqual(c.receive(), []);
      out.push(c.respond(200, null, `body${i}`).toString());
      evs = c.receive();
    }
    assert.deepEqual(evs, []);
    assert.equal(c.bufferedBytes, 0);
    assert.deepEqual(out.map((o) => o.slice(o.lastIndexOf('\n') + 1)), [0, 1, 2, 3, 4, 5, 6, 7].map((i) => `body${i}`));
  });
  test('bytes arriving while a response is pending are held until it completes', () => {
    const c = new H11Connection();
    c.receive(Buffer.from(`GET /1 HTTP/1.1\r\n${H}\r\n`));
    assert.deepEqual(c.receive(Buffer.from(`GET /2 HTTP/1.1\r\n${H}\r\n`)), []);
    assert.ok(c.bufferedBytes > 0);
    c.writeHead(200, { 'content-length': '0' });
    assert.deepEqual(c.receive(), []);
    c.writeEnd();
    assert.equal((c.receive()[0] as RequestEvent).target, '/2');
  });
  const inputs: [string, string][] = [
    ['simple GET', `GET /x HTTP/1.1\r\n${H}Accept: */*\r\n\r\n`],
    ['CL body + pipelined GET', `POST /p HTTP/1.1\r\n${H}Content-Length: 11\r\n\r\nhello worldGET /g HTTP/1.1\r\n${H}\r\n`],
    ['chunked with ext and trailers', `\r\nPOST /c HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5;a="b;c"\r\nhello\r\n1 ;x\r\n!\r\n0\r\nT: v\r\n\r\nGET /n HTTP/1.0\r\n\r\n`],
    ['HTTP/1.0 keep-alive + 1.1', `GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.1\r\n${H}Connection: close\r\n\r\nGET /c HTTP/1.1\r\n${H}\r\n`],
    ['error in second request', `GET /a HTTP/1.1\r\n${H}\r\nGET /b HTTP/1.1\r\n${H}X : y\r\n\r\n`],
    ['chunked error', `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n`],
    ['505', `GET / HTTP/2.0\r\n${H}\r\n`],
  ];
  for (const [name, input] of inputs) {
    test(`every split gives the same events: ${name}`, () => {
      const ref = drive([input]);
      for (const parts of splits(input)) {
        const r = drive(parts);
        assert.deepEqual(r.events, ref.events, `split ${JSON.stringify(parts.slice(0, 2))}`);
        assert.equal(r.out, ref.out);
      }
    });
  }
  test('every split gives the same limit errors', () => {
    const opts = { limitRequestLine: 30, limitRequestFieldSize: 20, limitRequestFields: 3 };
    for (const input of [`GET /${'a'.repeat(30)} HTTP/1.1\r\n\r\n`, `GET / HTTP/1.1\r\nX: ${'a'.repeat(20)}\x00\r\n\r\n`, `GET / HTTP/1.1\r\nX: ${'a'.repeat(10)}\x00${'a'.repeat(20)}\r\n\r\n`, `GET / HTTP/1.1\r\n${'a: b\r\n'.repeat(4)}\r\n`]) {
      const ref = drive([input], opts);
      for (const parts of splits(input)) assert.deepEqual(drive(parts, opts).events, ref.events);
    }
  });
});

describe('Expect: 100-continue and EOF', () => {
  test('flagged on HTTP/1.1 requests with a body only', () => {
    assert.equal(req(`POST / HTTP/1.1\r\n${H}Expect: 100-Continue\r\nContent-Length: 5\r\n\r\n`).expectContinue, true);
    assert.equal(req(`POST / HTTP/1.1\r\n${H}Expect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n`).expectContinue, true);
    assert.equal(req(`GET / HTTP/1.1\r\n${H}Expect: 100-continue\r\n\r\n`).expectContinue, false);
    assert.equal(req('POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n').expectContinue, false);
    assert.equal(req(`POST / HTTP/1.1\r\n${H}Expect: something\r\nContent-Length: 5\r\n\r\n`).expectContinue, false);
  });
  test('driver sends 100 once, body follows, connection persists', () => {
    const c = new H11Connection();
    c.receive(Buffer.from(`POST / HTTP/1.1\r\n${H}Expect: 100-continue\r\nContent-Length: 5\r\n\r\n`));
    assert.equal(c.send100Continue().toString(), 'HTTP/1.1 100 Continue\r\n\r\n');
    assert.equal(c.send100Continue().length, 0);
    assert.deepEqual(normalize(c.receive(Buffer.from('hello'))), [{ type: 'data', text: 'hello' }, { type: 'end', trailers: null }]);
    c.respond(200, null, 'ok');
    assert.equal(c.shouldClose, false);
  });
  test('responding without reading the body closes the connection', () => {
    const c = new H11Connection();
    c.receive(Buffer.from(`POST / HTTP/1.1\r\n${H}Expect: 100-continue\r\nContent-Length: 5\r\n\r\n`));
    const out = c.respond(417, null, 'no').toString();
    assert.match(out, /^HTTP\/1.1 417 Expectation Failed\r\n/);
    assert.equal(c.shouldClose, true);
    assert.deepEqual(c.receive(Buffer.from('hello')), []);
  });
  test('EOF when idle: clean close, no events', () => {
    const c = new H11Connection();
    assert.deepEqual(c.receiveEOF(), []);
    assert.ok(c.shouldClose);
    const d = new H11Connection();
    d.receive(Buffer.from('\r\n'));
    assert.deepEqual(d.receiveEOF(), []);
    assert.ok(d.shouldClose);
  });
  test('EOF mid-head or mid-body -> 400', () => {
    assert.deepEqual(normalize(drive(['GET / HTTP/1.1\r\nHo'], {}, true).raw), [{ type: 'error', status: 400 }]);
    assert.deepEqual(normalize(drive(['GET / HTTP/1.1\r\n'], {}, true).raw), [{ type: 'error', status: 400 }]);
    const r = drive([`POST / HTTP/1.1\r\n${H}Content-Length: 10\r\n\r\nhello`], {}, true);
    assert.deepEqual(r.events.map((e) => e.type), ['request', 'data', 'error']);
  });
  test('EOF while a response is pending: buffered complete requests are still served, then close', () => {
    const c = new H11Connection();
    c.receive(Buffer.from(`GET /1 HTTP/1.1\r\n${H}\r\nGET /2 HTTP/1.1\r\n${H}\r\n`));
    assert.deepEqual(c.receiveEOF(), []);
    c.respond(200, null, '1');
    assert.equal(c.shouldClose, false);
    assert.equal((c.receive()[0] as RequestEvent).target, '/2');
    c.respond(200, null, '2');
    assert.equal(c.shouldClose, true);
  });
});
