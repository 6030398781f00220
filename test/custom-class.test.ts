// A custom worker class by module path (SPEC §6): the same master, listeners and signals.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { FIXTURES, freePort, serve, stop } from './helpers.ts';

function ask(port: number, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => sock.write(line + '\n'));
    let out = '';
    sock.setEncoding('utf8');
    sock.on('data', (d) => (out += d));
    sock.on('end', () => resolve(out));
    sock.on('error', reject);
  });
}

test('-k ./module.js runs a custom worker class on the inherited listeners', { timeout: 30_000 }, async () => {
  const port = await freePort();
  const r = await serve([path.join(FIXTURES, 'apps', 'shout.js'), '-k', './custom-class.js', '-w', '2', '-b', `127.0.0.1:${port}`], { cwd: FIXTURES });
  try {
    const reply = await ask(port, 'hello');
    assert.match(reply, /^HELLO from (\d+)\n$/);
    assert.ok(r.workers().includes(Number(/from (\d+)/.exec(reply)![1])));
    assert.match(r.logs().find((l) => l.event === 'starting')!.msg, /echo: a line handler/);
  } finally {
    assert.equal((await stop(r)).code, 0);
  }
});

test('a custom class that is not one is refused with one line', { timeout: 30_000 }, async () => {
  const { run } = await import('./helpers.ts');
  const r = run([path.join(FIXTURES, 'apps', 'shout.js'), '-k', './apps/shout.js'], { cwd: FIXTURES });
  assert.equal((await r.exited).code, 2);
  assert.match(r.stderr(), /arbiter: error: worker class \.\/apps\/shout\.js must export default \{ name, adapt\(\), create\(\) \}/);
});
