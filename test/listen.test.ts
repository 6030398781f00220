// Script mode's listen() capture (src/core/listen.ts): how a listen() call's arguments read,
// what bind serves them, and the capture itself, in process (nothing is bound).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { ListenCapture, askedOf, bindFor, describeAsked, pretendListening } from '../src/core/listen.ts';

test("listen()'s arguments, read as Node reads them", () => {
  assert.deepEqual(askedOf([3000]), { port: 3000, host: null });
  assert.deepEqual(askedOf(['3000']), { port: 3000, host: null });
  assert.deepEqual(askedOf([8080, '127.0.0.1', 511]), { port: 8080, host: '127.0.0.1' });
  assert.deepEqual(askedOf([]), { port: 0, host: null });
  // listen(process.env.PORT) with PORT unset: any port, as Node does.
  assert.deepEqual(askedOf([undefined]), { port: 0, host: null });
  assert.deepEqual(askedOf([{ port: 3000, host: '::1' }]), { port: 3000, host: '::1' });
  assert.deepEqual(askedOf([{ port: '81' }]), { port: 81, host: null });
  assert.deepEqual(askedOf(['/tmp/app.sock']), { path: '/tmp/app.sock' });
  assert.deepEqual(askedOf([{ path: 'app.sock' }]), { path: 'app.sock' });
  assert.deepEqual(askedOf([{ fd: 7 }]), { handle: true });
  assert.throws(() => askedOf([70000]), { code: 'ERR_SOCKET_BAD_PORT' });
  assert.throws(() => askedOf([{ port: -1 }]), { code: 'ERR_SOCKET_BAD_PORT' });
});

test('the bind that serves a listen() call, and how it is named', () => {
  assert.equal(bindFor({ port: 3000, host: null }, true), '[::]:3000');
  assert.equal(bindFor({ port: 3000, host: null }, false), '0.0.0.0:3000');
  assert.equal(bindFor({ port: 3000, host: 'localhost' }, true), 'localhost:3000');
  assert.equal(bindFor({ port: 3000, host: '::1' }, true), '[::1]:3000');
  assert.equal(bindFor({ path: '/tmp/a.sock' }, true), 'unix:/tmp/a.sock');
  assert.equal(bindFor({ handle: true }, true), null);
  assert.equal(describeAsked({ port: 3000, host: null }), 'port 3000');
  assert.equal(describeAsked({ port: 3000, host: '127.0.0.1' }), '127.0.0.1:3000');
  assert.equal(describeAsked({ path: '/x' }), 'unix:/x');
});

test('the capture ranks servers by their first listen(), binds nothing, and gives listen() back', async () => {
  const real = net.Server.prototype.listen;
  const capture = new ListenCapture();
  capture.install();
  try {
    assert.notEqual(net.Server.prototype.listen, real);
    const a = http.createServer();
    const b = net.createServer();
    let called = 0;
    assert.equal(a.listen(3000, () => called++), a);
    b.listen({ port: 0, host: '127.0.0.1' });
    a.listen(3001); // again: keeps its rank
    assert.deepEqual(capture.calls.map((c) => [c.index, c.asked]), [
      [0, { port: 3000, host: null }],
      [1, { port: 0, host: '127.0.0.1' }],
      [0, { port: 3001, host: null }],
    ]);
    assert.deepEqual(capture.servers, [a, b]);
    assert.equal(a.listening, false, 'nothing bound');
    // The check's stand-in: callbacks run and address() answers what was asked.
    capture.serve(pretendListening);
    await new Promise((r) => setImmediate(r));
    assert.equal(called, 1);
    assert.deepEqual(a.address(), { address: '::', family: 'IPv6', port: 3001 });
    assert.equal(await capture.settle({ want: 2, firstMs: 1000 }), 2);
  } finally {
    capture.uninstall();
  }
  assert.equal(net.Server.prototype.listen, real);
});

test('settle: with nothing pending and no listen() call, it gives up at once; with a call, after the quiet time', async () => {
  const capture = new ListenCapture();
  const t0 = Date.now();
  assert.equal(await capture.settle({ want: Infinity, firstMs: 5000, idle: () => true }), 0);
  assert.ok(Date.now() - t0 < 1000);
  capture.install();
  try {
    http.createServer().listen(0);
    assert.equal(await capture.settle({ want: Infinity, firstMs: 5000 }), 1);
  } finally {
    capture.uninstall();
  }
});
