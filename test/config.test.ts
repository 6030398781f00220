// Where settings come from: defaults < config file < ARBITER_CMD_ARGS < ARBITER_* < CLI,
// as --print-config reports them, with real config files (a .ts one included) on Node 20.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { EXAMPLES, ROOT, freePort, request, run, serve, stop, tmpDir, writeFiles } from './helpers.ts';

async function printConfig(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Record<string, { value: string; source: string }>> {
  const r = run([...args, '--print-config'], opts);
  const { code } = await r.exited;
  assert.equal(code, 0, r.stderr());
  const out: Record<string, { value: string; source: string }> = {};
  for (const line of r.stdout().split('\n')) {
    const m = /^(\w+)\s+= (.*)  \((default|file|env|cli)\)$/.exec(line);
    if (m) out[m[1]!] = { value: m[2]!, source: m[3]! };
  }
  return out;
}

test('precedence: default < file < ARBITER_CMD_ARGS < ARBITER_* < command line', { timeout: 20_000 }, async () => {
  const dir = tmpDir();
  writeFiles(dir, {
    'arbiter.config.json': JSON.stringify({ app: `${EXAMPLES}/hello.js`, workers: 2, timeout: 10, keepalive: 7, backlog: 100 }),
  });
  const c = await printConfig(['--backlog', '300'], {
    cwd: dir,
    env: { ARBITER_CMD_ARGS: '--keepalive 8 --timeout 11', ARBITER_TIMEOUT: '12', ARBITER_BACKLOG: '200' },
  });
  assert.deepEqual(c.gracefulTimeout, { value: '30', source: 'default' });
  assert.deepEqual(c.workers, { value: '2', source: 'file' });
  assert.deepEqual(c.keepalive, { value: '8', source: 'env' });
  assert.deepEqual(c.timeout, { value: '12', source: 'env' });
  assert.deepEqual(c.backlog, { value: '300', source: 'cli' });
});

test('a TypeScript config file with defineConfig, hooks and a workers function loads on Node 20', { timeout: 20_000 }, async () => {
  const dir = tmpDir();
  writeFiles(dir, {
    'arbiter.conf.ts': `
      import { defineConfig } from '${path.join(ROOT, 'dist', 'src', 'index.js')}';
      const port: number = ${await freePort()};
      export default defineConfig({
        app: '${EXAMPLES}/hello.js:handler',
        bind: [\`127.0.0.1:\${port}\`],
        workers: (cpus: number) => cpus + 1,
        onStarting: () => {},
      });`,
  });
  const c = await printConfig(['-c', 'arbiter.conf.ts'], { cwd: dir });
  assert.equal(c.workers!.value, '[function]');
  assert.equal(c.workers!.source, 'file');
  assert.equal(c.onStarting!.value, '[function]');
  const r = run(['-c', 'arbiter.conf.ts', '--print-config'], { cwd: dir });
  await r.exited;
  assert.match(r.stdout(), /# \d+ workers: workers\(\d+\) from /);
});

test('a config file is found without -c, and serves', { timeout: 20_000 }, async () => {
  const dir = tmpDir();
  const port = await freePort();
  writeFiles(dir, { 'arbiter.config.mjs': `export default { app: '${EXAMPLES}/hello.js:handler', bind: ['127.0.0.1:${port}'] };` });
  const r = await serve([], { cwd: dir });
  assert.equal((await request({ port })).body, 'Hello, world!\n');
  await stop(r);
});

test('PORT and WEB_CONCURRENCY are honoured when nothing else says', { timeout: 20_000 }, async () => {
  const c = await printConfig([`${EXAMPLES}/hello.js`], { env: { PORT: '9123', WEB_CONCURRENCY: '3' } });
  assert.deepEqual(c.bind, { value: '["0.0.0.0:9123"]', source: 'env' });
  assert.deepEqual(c.workers, { value: '3', source: 'env' });
  const d = await printConfig([`${EXAMPLES}/hello.js`, '-b', '127.0.0.1:1', '-w', '1'], { env: { PORT: '9123', WEB_CONCURRENCY: '3' } });
  assert.deepEqual(d.bind, { value: '["127.0.0.1:1"]', source: 'cli' });
  assert.deepEqual(d.workers, { value: '1', source: 'cli' });
});

test('a bad ARBITER_* value names the variable', { timeout: 10_000 }, async () => {
  const r = run([`${EXAMPLES}/hello.js`], { env: { ARBITER_WORKERS: 'lots' } });
  assert.equal((await r.exited).code, 2);
  assert.match(r.stderr(), /arbiter: error: invalid value "lots" for workers \(ARBITER_WORKERS\)/);
});

test('--version', { timeout: 10_000 }, async () => {
  const r = run(['--version']);
  assert.equal((await r.exited).code, 0);
  assert.match(r.stdout(), /^arbiter \d+\.\d+\.\d+/);
});
