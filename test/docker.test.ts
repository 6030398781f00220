// The example Dockerfile (issue 12): arbiterd is a dependency of the app, and the image's
// entrypoint and config serve. Without Docker: this test reads the Dockerfile and performs
// the app stage's steps itself (COPY, RUN, ENV, ENTRYPOINT, CMD) in a temporary /app, with
// the tarball the pack stage makes (npm pack of this checkout). An instruction it does not
// know fails the test, so the Dockerfile cannot drift away from what is tested here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { ROOT, command, freePort, request, run, stop, tmpDir, waitFor } from './helpers.ts';

const PATH_ENV = { PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH}` };

interface Step {
  op: string;
  args: string;
}

/** The instructions of each stage, continuation lines joined. */
function stages(text: string): Step[][] {
  const out: Step[][] = [];
  const lines = text.replace(/\\\n\s*/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  for (const line of lines) {
    const [, op, args] = /^(\w+)\s+(.*)$/.exec(line)!;
    if (op === 'FROM') out.push([]);
    out.at(-1)!.push({ op: op!, args: args! });
  }
  return out;
}

test('the Dockerfile\'s app stage, performed without Docker: arbiterd installed as a dependency, the entrypoint and config serve', { timeout: 300_000 }, async () => {
  const [pack, app] = stages(readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8'));
  assert.ok(pack && app, 'a pack stage and an app stage');
  assert.match(pack.map((s) => s.args).join('\n'), /npm pack/);
  // The pack stage: npm pack of this checkout (`npm test` has just built dist/).
  const packed = tmpDir('arbiter-docker-pack-');
  const p = spawnSync('npm', ['pack', '--ignore-scripts', '--pack-destination', packed, '--loglevel=error'], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, ...PATH_ENV } });
  assert.equal(p.status, 0, p.stderr);
  const tgz = path.join(packed, readdirSync(packed).find((n) => n.endsWith('.tgz'))!);

  const root = tmpDir('arbiter-docker-app-');
  let workdir = '/';
  const env: Record<string, string> = {};
  let entrypoint: string[] = [];
  let cmd: string[] = [];
  const inImage = (p: string) => path.join(root, path.resolve(workdir, p));
  for (const step of app) {
    switch (step.op) {
      case 'FROM':
      case 'EXPOSE':
      case 'STOPSIGNAL':
      case 'USER':
        break;
      case 'WORKDIR':
        workdir = path.resolve(workdir, step.args);
        break;
      case 'ENV':
        for (const m of step.args.matchAll(/(\w+)=(\S+)/g)) env[m[1]!] = m[2]!;
        break;
      case 'COPY': {
        const words = step.args.split(/\s+/);
        const from = words[0]!.startsWith('--from=') ? words.shift()!.slice(7) : null;
        const dest = inImage(words.pop()!);
        for (const src of words) {
          if (from === 'pack') {
            assert.equal(src, '/arbiterd.tgz', 'the pack stage leaves the tarball at /arbiterd.tgz');
            cpSync(tgz, path.join(dest, 'arbiterd.tgz'));
          } else {
            assert.equal(from, null, `COPY --from=${from}`);
            const source = path.join(ROOT, src);
            cpSync(source, src.endsWith('/') ? dest : path.join(dest, path.basename(src)), { recursive: true });
          }
        }
        break;
      }
      case 'RUN': {
        const words = step.args.split(/\s+/);
        assert.equal(words[0], 'npm', `RUN ${step.args}`);
        const r = spawnSync('npm', [...words.slice(1), '--prefer-offline', '--loglevel=error'], { cwd: inImage('.'), encoding: 'utf8', env: { ...process.env, ...PATH_ENV, ...env }, timeout: 180_000 });
        assert.equal(r.status, 0, `RUN ${step.args}:\n${r.stdout}\n${r.stderr}`);
        break;
      }
      case 'ENTRYPOINT':
        entrypoint = JSON.parse(step.args);
        break;
      case 'CMD':
        cmd = JSON.parse(step.args);
        break;
      default:
        assert.fail(`the test does not know how to perform ${step.op} ${step.args}`);
    }
  }
  // arbiterd is a dependency of the app, not something beside it.
  const pkg = JSON.parse(readFileSync(inImage('package.json'), 'utf8'));
  assert.ok(pkg.dependencies.arbiterd, 'the app depends on arbiterd');
  assert.ok(JSON.parse(readFileSync(inImage('node_modules/arbiterd/package.json'), 'utf8')).name === 'arbiterd');
  assert.deepEqual(cmd, ['-c', '/app/arbiter.conf.ts'], 'the documented config recipe');
  // The container's entrypoint and command, with /app where this test put it, on loopback.
  const [bin, ...rest] = [...entrypoint, ...cmd].map((a) => a.replace(/^\/app(?=\/|$)/, inImage('.')));
  const port = await freePort();
  const runEnv = { ...env, ...PATH_ENV, ARBITER_BIND: `127.0.0.1:${port}` };
  assert.equal(env.ARBITER_WORKERS, 'auto');
  const r = run(rest, { cwd: inImage('.'), env: runEnv, cmd: [process.execPath, bin!] });
  try {
    const reply = await waitFor(() => request({ port }).catch(() => null), 60_000, `the image serving; stderr:\n${r.stderr()}`);
    assert.equal(reply.status, 200);
    assert.match(reply.body, /^Hello from worker \d+\n$/);
    const st = await command(['status', '--json'], { cwd: inImage('.'), env: runEnv, cmd: [process.execPath, bin!] });
    assert.equal(st.code, 0, st.stderr);
    const [status] = JSON.parse(st.stdout);
    assert.equal(status.pid, r.pid);
    assert.equal(status.app, 'server.js');
  } finally {
    assert.deepEqual(await stop(r), { code: 0, signal: null });
  }
});
