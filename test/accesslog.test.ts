// The access log's format: Gunicorn's atoms and JSON lines. No processes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileFormat, type AccessEntry } from '../workers/accesslog.ts';

test("access log: Gunicorn's atoms and JSON", () => {
  const e: AccessEntry = {
    peer: '127.0.0.1',
    method: 'GET',
    url: '/a?b=1',
    version: '1.1',
    status: 200,
    bytes: 14,
    startedAt: Date.UTC(2026, 0, 2, 3, 4, 5),
    durationMicros: 1500,
    reqHeader: (n) => ({ 'user-agent': 'curl/8', 'x-forwarded-for': '203.0.113.9, 10.0.0.1', 'x-request-id': 'abc' })[n],
    resHeader: (n) => ({ 'content-type': 'text/plain' })[n],
  };
  const gunicorn = compileFormat('%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"', ['127.0.0.1']);
  assert.match(gunicorn(e), /^203\.0\.113\.9 - - \[02\/Jan\/2026:\d\d:04:05 [+-]\d{4}\] "GET \/a\?b=1 HTTP\/1\.1" 200 14 "-" "curl\/8"$/);
  const untrusted = compileFormat('%(h)s %(D)s %(M)s %(U)s %(q)s %({x-request-id}i)s %({content-type}o)s', []);
  assert.equal(untrusted(e), '127.0.0.1 1500 2 /a b=1 abc text/plain');
  const json = JSON.parse(compileFormat('json', [])(e));
  assert.equal(json.status, 200);
  assert.equal(json.duration_us, 1500);
  assert.throws(() => compileFormat('%(Z)s', []), /unknown access log atom %\(Z\)s/);
});
