// Bad input of every kind named by the core issue: one line naming the culprit, the
// documented exit code, and no process left behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { FIXTURES, EXAMPLES, descendants, freePort, run, tmpDir, writeFiles, type Running } from './helpers.ts';

const APPS = path.join(FIXTURES, 'apps');

async function fails(r: Running, code: number, mustName: RegExp[]): Promise<string> {
  const { code: got } = await r.exited;
  const err = r.stderr();
  const first = err.split('\n').find((l) => l.startsWith('arbiter: error:'));
  assert.ok(first, `expected an "arbiter: error:" line, got:\n${err}`);
  for (const re of mustName) assert.match(first!, re);
  assert.equal(got, code, `exit code; stderr:\n${err}`);
  assert.deepEqual(descendants(r.pid), [], 'no process left behind');
  return first!;
}

test('unknown option on the command line suggests the right one', { timeout: 10_000 }, async () => {
  const r = run([`${EXAMPLES}/hello.js`, '--worker', '2']);
  await fails(r, 2, [/unknown option --worker/, /did you mean --workers\?/]);
});

test('unknown setting in a config file names the key and the closest setting', { timeout: 10_000 }, async () => {
  const dir = tmpDir();
  writeFiles(dir, { 'arbiter.config.json': JSON.stringify({ app: `${EXAMPLES}/hello.js`, worker: 2 }) });
  const r = run([], { cwd: dir });
  await fails(r, 2, [/unknown setting "worker"/, /did you mean "workers"\?/]);
});

test('wrong type names the setting, the value and what was expected', { timeout: 10_000 }, async () => {
  const r = run([`${EXAMPLES}/hello.js`, '-w', 'many']);
  await fails(r, 2, [/workers/, /"many"/, /expected a whole number/]);
  const dir = tmpDir();
  writeFiles(dir, { 'arbiter.config.json': JSON.stringify({ app: `${EXAMPLES}/hello.js`, timeout: 'soon' }) });
  await fails(run([], { cwd: dir }), 2, [/timeout/, /"soon"/, /arbiter\.config\.json/]);
});

test('an unparsable config file is named', { timeout: 15_000 }, async () => {
  const dir = tmpDir();
  writeFiles(dir, { 'arbiter.conf.ts': 'export default { workers: 2,, }\n' });
  await fails(run(['-c', 'arbiter.conf.ts', `${EXAMPLES}/hello.js`], { cwd: dir }), 2, [/cannot load config file .*arbiter\.conf\.ts/]);
  writeFiles(dir, { 'bad.json': '{ "workers": 2, ' });
  await fails(run(['-c', 'bad.json', `${EXAMPLES}/hello.js`], { cwd: dir }), 2, [/cannot load config file .*bad\.json/]);
});

test('port already in use', { timeout: 10_000 }, async () => {
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  const port = (blocker.address() as net.AddressInfo).port;
  try {
    const r = run([`${EXAMPLES}/hello.js`, '-b', `127.0.0.1:${port}`]);
    await fails(r, 1, [new RegExp(`127\\.0\\.0\\.1:${port}`), /address already in use/]);
  } finally {
    blocker.close();
  }
});

test('bind permission denied (privileged port as an unprivileged user)', { timeout: 10_000 }, async () => {
  // As root every port binds; run arbiter as nobody to see the refusal.
  const cmd = process.getuid?.() === 0
    ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, path.join(FIXTURES, '..', '..', 'bin', 'arbiter')]
    : undefined;
  const r = run([`${EXAMPLES}/hello.js`, '-b', '127.0.0.1:81'], { cmd, cwd: '/tmp' });
  await fails(r, 1, [/127\.0\.0\.1:81/, /permission denied/]);
});

test('missing module', { timeout: 10_000 }, async () => {
  await fails(run(['nowhere/app.js:handler']), 3, [/cannot find app module "nowhere\/app\.js"/]);
});

test('missing export, with a suggestion', { timeout: 10_000 }, async () => {
  const line = await fails(run([`${EXAMPLES}/hello.js:handlr`]), 3, [/has no export "handlr"/, /did you mean "handler"\?/]);
  assert.match(line, /it exports: .*handler/);
});

test('export of the wrong shape', { timeout: 10_000 }, async () => {
  await fails(run([`${APPS}/shape.js:config`]), 3, [/export .*shape\.js:config is an object with keys port/, /not a/]);
  await fails(run([`${APPS}/shape.js:answer`]), 3, [/shape\.js:answer is number 42/]);
});

test('an app that throws while loading shows its own error, not ours', { timeout: 10_000 }, async () => {
  const r = run([`${APPS}/throws.js`]);
  await fails(r, 3, [/throws\.js failed while loading/, /database unreachable/]);
  const err = r.stderr();
  assert.match(err, /at connectToDatabase \(.*throws\.js:3/);
  assert.doesNotMatch(err, /node:internal|dist\/src/);
});

test('--check-config exits 0 for a good setup and 2 with the reason for a bad one', { timeout: 15_000 }, async () => {
  const port = await freePort();
  const ok = run([`${EXAMPLES}/hello.js:handler`, '--check-config', '-b', `127.0.0.1:${port}`]);
  assert.equal((await ok.exited).code, 0, ok.stderr());
  assert.match(ok.stdout(), /config OK/);
  assert.deepEqual(descendants(ok.pid), []);
  await fails(run([`${EXAMPLES}/hello.js:nope`, '--check-config']), 2, [/no export "nope"/]);
});

test('no app at all', { timeout: 10_000 }, async () => {
  await fails(run([], { cwd: tmpDir() }), 2, [/no app given/]);
});
