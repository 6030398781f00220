// The lifecycle exports beside the app (SPEC §3): startup() before a worker serves, a throw
// is a boot failure (exit 3 at first boot, old workers kept on a reload), shutdown() on a
// graceful stop; in every worker class (the HTTP ones are in websockets.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { openBroker } from '../src/core/brokers/open.ts';
import { freePort, request, run, serve, stop, tmpDir, waitFor } from './helpers.ts';
import { markers } from './services.ts';

test('-k http: a startup() that throws is a boot failure (exit 3, one line); on a reload the old workers keep serving', { timeout: 60_000 }, async () => {
  const dir = tmpDir('arbiter-startup-fail-');
  const port = await freePort();
  const app = path.join(dir, 'app.mjs');
  const write = (fail: boolean) =>
    writeFileSync(app, `export default (req, res) => res.end('v1\\n');\nexport async function startup() { ${fail ? "throw new Error('no database')" : ''} }\n`);
  write(true);
  const first = run([app, '-b', `127.0.0.1:${port}`]);
  assert.equal((await first.exited).code, 3);
  assert.match(first.stderr(), /arbiter: error: startup\(\) failed: Error: no database/);
  write(false);
  const r = await serve([app, '-b', `127.0.0.1:${port}`]);
  try {
    write(true);
    r.signal('SIGHUP');
    await r.waitLog((l) => /new worker failed to boot, keeping the running workers: startup\(\) failed: Error: no database/.test(l.msg), 10_000, 'the reload refused');
    assert.equal((await request({ port })).body, 'v1\n');
  } finally {
    await stop(r);
  }
});

test('-k task: startup() opens what the handlers use before the worker consumes, shutdown() runs on TERM; neither is taken for a task handler', { timeout: 60_000 }, async () => {
  const dir = tmpDir('arbiter-task-lifecycle-');
  const broker = `spool:${path.join(dir, 'spool')}`;
  const done = path.join(dir, 'done.txt');
  writeFiles(dir);
  const r = await serve([path.join(dir, 'tasks.cjs'), '-k', 'task', '-w', '2', '--broker', broker, '--queue', 'life'], { env: { MARKERS: dir, DONE: done } });
  try {
    assert.match(r.logs().find((l) => l.event === 'starting')!.msg, /task: 1 handler \(work\)/);
    assert.equal(markers(dir, 'startup').length, 2);
    const b = await openBroker(broker, { queue: 'life', cwd: dir, consumer: 'test' });
    try {
      for (let i = 0; i < 4; i++) await b.enqueue('work', { i });
    } finally {
      await b.close();
    }
    await waitFor(() => existsSync(done) && readFileSync(done, 'utf8').trim().split('\n').length === 4, 15_000, 'four tasks done');
    assert.doesNotMatch(readFileSync(done, 'utf8'), /no pool/);
    const last = r.workers();
    assert.equal((await stop(r)).code, 0);
    for (const pid of last) assert.ok(markers(dir, 'shutdown').includes(String(pid)), `shutdown ran in ${pid}`);
  } finally {
    if (r.proc.exitCode === null) await stop(r);
  }

  function writeFiles(d: string): void {
    writeFileSync(
      path.join(d, 'tasks.cjs'),
      `const { appendFileSync, writeFileSync } = require('node:fs');
let pool = null;
module.exports = {
  async work(payload) {
    appendFileSync(process.env.DONE, (pool ? pool.name : 'no pool') + ' ' + payload.i + '\\n');
  },
  async startup() {
    await new Promise((r) => setTimeout(r, 50));
    pool = { name: 'pool-' + process.pid };
    writeFileSync(process.env.MARKERS + '/startup-' + process.pid, '');
  },
  async shutdown() {
    pool = null;
    writeFileSync(process.env.MARKERS + '/shutdown-' + process.pid, '');
  },
};
`,
    );
  }
});
