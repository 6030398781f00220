// The package people install (issue 12): `npm pack`, then a fresh CommonJS and a fresh ES
// module project install the tarball and run the README's quick start as written; the
// `arbiter.conf.ts` that imports defineConfig from 'arbiterd' type-checks under node16 and
// nodenext. npm may use its cache or the registry (express, the dependencies).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, command, freePort, killTree, request, run, tmpDir, waitFor, writeFiles, type Running } from './helpers.ts';

const NPM_FLAGS = ['--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'];
/** npm and npx run `node` from PATH: make it this test's node (Node 24 in .ci/run's second pass). */
const PATH_ENV = { PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH}` };
let tarball = '';

function npm(args: string[], cwd: string, timeout = 180_000): string {
  const r = spawnSync('npm', args, { cwd, env: { ...process.env, ...PATH_ENV }, encoding: 'utf8', timeout });
  assert.equal(r.status, 0, `npm ${args.join(' ')} in ${cwd}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

before(() => {
  // `npm test` has just built dist/; pack what is there.
  const out = tmpDir('arbiter-pack-');
  npm(['pack', '--ignore-scripts', '--pack-destination', out, ...NPM_FLAGS], ROOT);
  const name = readdirSync(out).find((n) => /^arbiterd-.*\.tgz$/.test(n));
  assert.ok(name, 'npm pack made arbiterd-VERSION.tgz');
  tarball = path.join(out, name);
});

/** The README's quick start: files (a block whose first line is `// NAME`) and commands. */
function quickStart(): { files: Record<string, string>; commands: string[] } {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const part = readme.slice(readme.indexOf('<!-- quickstart:begin'), readme.indexOf('<!-- quickstart:end'));
  const files: Record<string, string> = {};
  const commands: string[] = [];
  for (const m of part.matchAll(/```(\w+)\n([\s\S]*?)```/g)) {
    const [lang, body] = [m[1]!, m[2]!];
    const name = /^\/\/ (\S+)\n/.exec(body);
    if (name) files[name[1]!] = body;
    else if (lang === 'sh') for (const line of body.split('\n')) if (line.trim()) commands.push(line.replace(/\s+#.*$/, '').trim());
  }
  return { files, commands };
}

test('the tarball: named arbiterd, command arbiter, LICENSE and man page, no source maps, optional parts not installed', () => {
  const list = execFileSync('tar', ['tzf', tarball], { encoding: 'utf8' }).split('\n').filter(Boolean);
  for (const f of ['package/LICENSE', 'package/man/arbiter.1', 'package/bin/arbiter', 'package/README.md', 'package/dist/src/index.js', 'package/dist/src/index.cjs', 'package/dist/src/index.d.ts', 'package/dist/src/index.d.cts'])
    assert.ok(list.includes(f), `the tarball has ${f}`);
  assert.deepEqual(list.filter((f) => f.endsWith('.map')), [], 'no source maps (their sources are not shipped)');
  assert.deepEqual(list.filter((f) => /^package\/(src|workers|test)\//.test(f)), [], 'no sources or tests');
  const pkg = JSON.parse(execFileSync('tar', ['xzf', tarball, '-O', 'package/package.json'], { encoding: 'utf8' }));
  assert.equal(pkg.name, 'arbiterd');
  assert.deepEqual(pkg.bin, { arbiter: 'bin/arbiter' });
  assert.ok([pkg.man].flat().includes('./man/arbiter.1'));
  assert.equal(pkg.license, 'MIT');
  assert.match(readFileSync(path.join(ROOT, 'LICENSE'), 'utf8'), /^MIT License/);
  for (const optional of ['ioredis', 'pino-pretty']) assert.equal(pkg.dependencies[optional], undefined, `${optional} is not installed for everyone`);
  assert.equal(pkg.peerDependenciesMeta?.ioredis?.optional, true);
});

for (const kind of ['commonjs', 'module'] as const) {
  test(`a fresh ${kind} project: npm install the tarball and express, then the README's quick start serves`, { timeout: 300_000 }, async () => {
    const dir = tmpDir(`arbiter-app-${kind}-`);
    const { files, commands } = quickStart();
    assert.deepEqual(Object.keys(files).sort(), ['app.js', 'arbiter.conf.ts']);
    assert.match(files['arbiter.conf.ts']!, /import \{ defineConfig \} from 'arbiterd';/);
    const port = await freePort();
    // The commands as written, except that `arbiterd` is this tarball, and the port is free.
    const env = { ...PATH_ENV, ARBITER_BIND: `127.0.0.1:${port}` };
    let server: Running | null = null;
    try {
      for (const line of commands) {
        const words = line.split(/\s+/);
        if (words[0] === 'npm') {
          npm(words.slice(1).map((w) => (w === 'arbiterd' ? tarball : w)).concat(words[1] === 'install' ? NPM_FLAGS : []), dir);
          if (words[1] === 'init') {
            // The project kind under test; then the README's files.
            const pkgFile = path.join(dir, 'package.json');
            writeFileSync(pkgFile, JSON.stringify({ ...JSON.parse(readFileSync(pkgFile, 'utf8')), type: kind }, null, 2));
          }
          continue;
        }
        if (!Object.keys(files).every((f) => existsSync(path.join(dir, f)))) {
          writeFiles(dir, files);
          // An ES module project writes the same app as a module.
          if (kind === 'module') writeFiles(dir, { 'app.js': files['app.js']!.replace("const express = require('express');", "import express from 'express';").replace('module.exports = app;', 'export default app;') });
        }
        assert.equal(words[0], 'npx');
        const args = words.slice(2);
        if (args[0] === '-c') {
          server = run(args, { cwd: dir, env, cmd: ['npx', 'arbiter'] });
          const started = server;
          const reply = await waitFor(() => {
            if (started.proc.exitCode !== null) throw new Error(`npx arbiter ${args.join(' ')} exited with ${started.proc.exitCode}:\n${started.stderr()}`);
            return request({ port }).catch(() => null);
          }, 60_000, `the quick start serving on ${port}`);
          assert.equal(reply.status, 200);
          assert.equal(reply.body, 'Hello from arbiter\n');
          continue;
        }
        const out = await command(args, { cwd: dir, env, cmd: ['npx', 'arbiter'], timeoutMs: 90_000 });
        assert.equal(out.code, 0, `npx arbiter ${args.join(' ')}:\n${out.stdout}\n${out.stderr}`);
        if (args[0] === 'status') assert.match(out.stdout, /^NAME\s+PID[\s\S]*^app\s+\d+/m);
        if (args[0] === 'scale') assert.match(out.stdout, /workers: 2 -> 3/);
        if (args[0] === 'reload') assert.match(out.stdout, /reloaded: workers/);
        if (args[0] === 'stop') {
          const stopped: Running = server!;
          const res = await stopped.exited;
          assert.equal(res.code, 0, stopped.stderr());
          server = null;
        }
      }
      assert.equal(server, null, 'the quick start ends with the server stopped');
      // The config file type-checks against the installed package, as both module kinds of TypeScript see it.
      for (const mod of ['nodenext', 'node16']) {
        writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({
          compilerOptions: { module: mod, moduleResolution: mod, strict: true, noEmit: true, skipLibCheck: false, types: ['node'], typeRoots: [path.join(ROOT, 'node_modules', '@types')] },
          files: ['arbiter.conf.ts'],
        }));
        const tsc = spawnSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: dir, encoding: 'utf8' });
        assert.equal(tsc.status, 0, `tsc with module ${mod} (${kind}):\n${tsc.stdout}${tsc.stderr}`);
      }
      // A mistake in the typed config is caught by the same check.
      writeFileSync(path.join(dir, 'bad.conf.ts'), "import { defineConfig } from 'arbiterd';\nexport default defineConfig({ workers: 'many' });\n");
      writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { module: 'nodenext', strict: true, noEmit: true, types: ['node'], typeRoots: [path.join(ROOT, 'node_modules', '@types')] }, files: ['bad.conf.ts'] }));
      const bad = spawnSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: dir, encoding: 'utf8' });
      assert.notEqual(bad.status, 0);
      assert.match(bad.stdout, /TS2322.*WorkersSpec/);
      // Without ioredis installed, the Redis broker says what to install, in one line.
      const redis = await command(['enqueue', 'x', '--broker', 'redis://127.0.0.1:1/0'], { cwd: dir, env, cmd: ['npx', 'arbiter'] });
      assert.equal(redis.code, 1);
      assert.match(redis.stderr, /^arbiter: error: the Redis broker needs the ioredis package, which is not installed: npm install ioredis\n$/);
    } finally {
      if (server) killTree(server.pid);
    }
  });
}
