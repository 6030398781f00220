// Frameworks' own lifecycles (SPEC §3, issue 11): Fastify (ready() before serving, close()
// on stop, so onClose hooks run; @fastify/websocket through its own server) and NestJS
// (init() / close(); in script mode its own listen()), each under HUPs and a graceful stop.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { freePort, request, serve, stop, tmpDir } from './helpers.ts';
import { SERVICES, assertNoErrors, hupsUnderLoad, markers, wsEcho } from './services.ts';

const CLASSES = ['http', 'h11'] as const;

/** Pids of every worker the master booted. */
function booted(r: Awaited<ReturnType<typeof serve>>): string[] {
  return r.logs().filter((l) => l.event === 'worker_booting').map((l) => String(l.worker));
}

for (const cls of CLASSES) {
  test(`-k ${cls}: Fastify with @fastify/websocket: ready() before serving, its onClose hook runs in every worker on HUP and TERM`, { timeout: 90_000 }, async () => {
    const dir = tmpDir('arbiter-fastify-');
    const port = await freePort();
    const r = await serve([path.join(SERVICES, 'fastify-ws-app.mjs'), '-k', cls, '-w', '2', '-b', `127.0.0.1:${port}`], { env: { MARKERS: dir } });
    try {
      assert.match(r.logs().find((l) => l.event === 'starting')!.msg, /node: Fastify app/);
      assert.ok(JSON.parse((await request({ port })).body).pid > 0);
      assert.equal((await wsEcho(port, 'hi', '/ws')).reply, 'fastify hi');
      assertNoErrors(await hupsUnderLoad(r, port, { times: 2, workers: 2 }));
      assert.equal((await wsEcho(port, 'again', '/ws')).reply, 'fastify again');
      assert.equal((await stop(r)).code, 0);
      const all = booted(r);
      assert.equal(all.length, 6);
      assert.deepEqual(markers(dir, 'onclose').sort(), all.sort(), 'the onClose hook ran in every worker');
    } finally {
      if (r.proc.exitCode === null) await stop(r);
    }
  });

  test(`-k ${cls}: an exported NestJS app: init() before serving, close() (onApplicationShutdown) on HUP and TERM`, { timeout: 90_000 }, async () => {
    const dir = tmpDir('arbiter-nest-');
    const port = await freePort();
    const r = await serve([path.join(SERVICES, 'nest-app.cjs'), '-k', cls, '-w', '2', '-b', `127.0.0.1:${port}`], { env: { MARKERS: dir } });
    try {
      assert.match(r.logs().find((l) => l.event === 'starting')!.msg, /node: NestJS app/);
      assert.equal(JSON.parse((await request({ port })).body).from, 'nest');
      assert.deepEqual(JSON.parse((await request({ port }, { path: '/users/7' })).body), { id: '7' });
      assertNoErrors(await hupsUnderLoad(r, port, { times: 2, workers: 2 }));
      assert.equal((await stop(r)).code, 0);
      assert.deepEqual(markers(dir, 'nest-shutdown').sort(), booted(r).sort(), 'close() ran in every worker');
    } finally {
      if (r.proc.exitCode === null) await stop(r);
    }
  });
}

test('-k http: NestJS in script mode (bootstrap() awaits app.listen(PORT)): no bind needed, HUPs under load, TERM', { timeout: 90_000 }, async () => {
  const port = await freePort();
  const r = await serve([path.join(SERVICES, 'nest-script.cjs'), '-w', '2'], { env: { NEST_PORT: String(port) } });
  try {
    assert.match(r.logs().find((l) => l.event === 'starting')!.msg, new RegExp(`listen: the module called listen\\(\\) while loading \\(port ${port}\\)`));
    assert.equal(JSON.parse((await request({ port })).body).from, 'nest');
    assertNoErrors(await hupsUnderLoad(r, port, { times: 2, workers: 2 }));
    assert.equal((await stop(r)).code, 0);
  } finally {
    if (r.proc.exitCode === null) await stop(r);
  }
});
