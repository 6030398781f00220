// The README's examples run as written (issue 12). Every `arbiter …` line of its shell blocks
// (the quick start is test/package.test.ts's) is run: a server line with --check-config (it
// loads the config and the app and binds nothing), the status block for real against the
// server it starts, `enqueue` against a spool. Only synopsis lines (`[ID...]`, `a | b`) are
// not runnable, and they are the only ones left out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { ROOT, command, freePort, request, run, stop, tmpDir, waitFor, writeFiles, type Running } from './helpers.ts';
import { splitArgs } from '../src/argv.ts';
import { COMMANDS } from '../src/commands/catalog.ts';

const README = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
const outsideQuickStart = README.slice(0, README.indexOf('<!-- quickstart:begin')) + README.slice(README.indexOf('<!-- quickstart:end'));

/** The shell blocks, as lists of commands (comments dropped). */
const blocks = [...outsideQuickStart.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) =>
  m[1]!.split('\n').map((l) => l.replace(/\s+#.*$/, '').trim()).filter(Boolean),
);
/** The config-file example. */
const configExample = /```ts\n(\/\/ arbiter\.conf\.ts\n[\s\S]*?)```/.exec(outsideQuickStart)![1]!;

const isCommand = (word: string | undefined) => COMMANDS.some((c) => c.name === word);
const synopsis = (line: string) => /\[|\s\|\s/.test(line);
const arbiterArgs = (line: string) => splitArgs(line.replace(/^(npx )?arbiter\s+/, ''));

test('every server command line of the README loads its config and app (--check-config)', { timeout: 120_000 }, async () => {
  const dir = tmpDir();
  writeFiles(dir, { 'arbiter.conf.ts': configExample.replace("app: 'dist/server.js:app'", `app: ${JSON.stringify(path.join(ROOT, 'examples', 'hello.js') + ':handler')}`) });
  // `import … from 'arbiterd'` finds this checkout, as it would find the installed package.
  mkdirSync(path.join(dir, 'node_modules'));
  symlinkSync(ROOT, path.join(dir, 'node_modules', 'arbiterd'));
  let ran = 0;
  for (const block of blocks) {
    for (const line of block) {
      if (!/^(npx )?arbiter\s/.test(line) || synopsis(line)) continue;
      const args = arbiterArgs(line);
      if (isCommand(args[0])) continue;
      // The config example's app is the reader's own; here it is the hello example.
      const cwd = args.includes('arbiter.conf.ts') ? dir : ROOT;
      const out = await command([...args, '--check-config'], { cwd });
      assert.equal(out.code, 0, `${line}\n${out.stdout}${out.stderr}`);
      assert.match(out.stdout, /^config OK: /, line);
      ran++;
    }
  }
  assert.ok(ran >= 8, `ran ${ran} server lines`);
});

test('the README\'s status, scale, top and metrics block runs as written against the server it starts', { timeout: 120_000 }, async () => {
  const block = blocks.find((b) => b.some((l) => l.startsWith('arbiter status')))!;
  assert.ok(block, 'a block with arbiter status');
  const port = await freePort();
  const mport = await freePort();
  const fix = (line: string) => line.replace(/127\.0\.0\.1:9100/g, `127.0.0.1:${mport}`);
  const env = { ARBITER_BIND: `127.0.0.1:${port}` };
  let server: Running | null = null;
  try {
    for (const raw of block) {
      const line = fix(raw);
      if (line.startsWith('curl ')) {
        const url = new URL(/http\S*|127\.0\.0\.1:\d+\/\S*/.exec(line)![0].replace(/^(?!http)/, 'http://'));
        const reply = await request({ port: Number(url.port) }, { path: url.pathname });
        assert.equal(reply.status, 200, line);
        assert.match(reply.body, /^arbiter_workers\{pool="main",state="serving"\} \d+$/m);
        continue;
      }
      const args = arbiterArgs(line);
      if (!isCommand(args[0])) {
        assert.equal(server, null, 'one server in the block');
        server = run(args, { env });
        const s = server;
        await s.waitLog((l) => l.event === 'ready', 15_000, 'the server ready');
        continue;
      }
      const out = await command(args, { env, timeoutMs: 60_000 });
      assert.equal(out.code, 0, `${line}\n${out.stdout}${out.stderr}`);
      assert.notEqual(out.stdout, '', line);
    }
    assert.ok(server, 'the block started a server');
    const st = JSON.parse((await command(['status', '--json', '-n', 'hello'])).stdout);
    assert.equal(st.target, 4, 'scale 4 took effect');
  } finally {
    if (server) await stop(server);
  }
});

test('the README\'s task commands run as written (enqueue onto a spool)', { timeout: 60_000 }, async () => {
  const dir = tmpDir();
  let ran = 0;
  for (const block of blocks) {
    for (const line of block) {
      if (!/^arbiter (enqueue|dlq) /.test(line) || synopsis(line)) continue;
      const out = await command(arbiterArgs(line), { cwd: dir });
      assert.equal(out.code, 0, `${line}\n${out.stdout}${out.stderr}`);
      ran++;
    }
  }
  assert.ok(ran >= 1);
  const stats = await command(['dlq', 'stats', '--json'], { cwd: dir });
  assert.equal(JSON.parse(stats.stdout).delayed, 1, 'the README\'s delayed task is in the spool');
});

test('nothing runnable is left out: the lines not run are synopses', () => {
  for (const block of blocks) {
    for (const line of block) {
      if (!/^(npx )?arbiter\s/.test(line) || !synopsis(line)) continue;
      assert.match(line, /^arbiter dlq list \| dlq retry/, `a line the README tests skip: ${line}`);
    }
  }
});
