/**
 * Several pools under one master (SPEC §10, issue 14): a web pool and a task pool from one
 * config file, each its own app, class, size and listeners; status, scale and HUP per pool;
 * restart limiting that marks one pool degraded and leaves the other alone; config errors
 * that name the pool. Real arbiters, a real redis-server, real signals.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { before, test } from 'node:test';
import { BIN, FIXTURES, freePort, request, run, serve, startRedis, stop, tmpDir, waitFor, writeFiles } from './helpers.ts';
import { ask } from '../src/commands/target.ts';

const PID_APP = path.join(FIXTURES, 'apps', 'pid.js');
const INDEX = path.join(import.meta.dirname, '..', 'src', 'index.ts');

let redisUrl = '';
before(async () => {
  redisUrl = await startRedis();
});

function cli(args: string[], cwd?: string): { code: number | null; stdout: string; stderr: string } {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ARBITER_')));
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 30_000, env, cwd });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface Status {
  target: number;
  pools: { name: string; workerClass: string; target: number; serving: number; degraded: boolean; listeners: string[] }[];
  workers: { pid: number; pool: string; state: string }[];
}

function status(sock: string): Status {
  const out = cli(['status', '--json', '--control-socket', sock]);
  assert.equal(out.code, 0, out.stderr);
  return JSON.parse(out.stdout) as Status;
}

const pidsOf = (st: Status, pool: string, state = 'serving') =>
  st.workers.filter((w) => w.pool === pool && w.state === state).map((w) => w.pid).sort();

const TASKS = `export const handlers = { double: async ({ n }) => ({ n: n * 2, pid: process.pid }) };\n`;

test('a web pool (h11) and a task pool (Redis) under one master: both serve; status, scale and HUP per pool', { timeout: 90_000 }, async () => {
  const dir = tmpDir('arbiter-pools-');
  const port = await freePort();
  const sock = path.join(dir, 'ctl.sock');
  const queue = `pools-${process.pid}`;
  writeFiles(dir, {
    'tasks.mjs': TASKS,
    'arbiter.config.mjs': `export default {
      controlSocket: ${JSON.stringify(sock)},
      gracefulTimeout: 5,
      pools: {
        web: { app: ${JSON.stringify(PID_APP)}, workerClass: 'h11', workers: 2, bind: ['127.0.0.1:${port}'] },
        tasks: { app: 'tasks.mjs:handlers', workerClass: 'task', workers: 2, broker: ${JSON.stringify(redisUrl)}, queue: ${JSON.stringify(queue)}, resultTtl: 60 },
      },
    };\n`,
  });
  const r = await serve([], { cwd: dir });
  const { enqueue, closeBrokers } = await import(INDEX);
  try {
    // Both serve.
    const web = await request({ port });
    assert.equal(web.status, 200);
    const handle = await enqueue('double', { n: 21 }, { broker: redisUrl, queue });
    assert.deepEqual({ ...((await handle.result({ timeout: 10_000 })) as object), pid: 0 }, { n: 42, pid: 0 });

    // 4 workers in 2 pools, each with its own listeners.
    const st = status(sock);
    assert.equal(st.workers.length, 4);
    assert.deepEqual(st.pools.map((p) => [p.name, p.workerClass, p.target]), [['web', 'h11', 2], ['tasks', 'task', 2]]);
    assert.deepEqual(st.pools[0]!.listeners, [`127.0.0.1:${port}`]);
    assert.deepEqual(st.pools[1]!.listeners, []);
    assert.deepEqual(st.workers.map((w) => w.pid).sort(), r.workers().sort());
    const webPids = pidsOf(st, 'web');
    const taskPids = pidsOf(st, 'tasks');
    assert.equal(webPids.length, 2);
    assert.equal(taskPids.length, 2);
    // The human view names the pools too.
    const human = cli(['status', '--control-socket', sock]);
    assert.match(human.stdout, /^pool web: .*\(h11\), 2 serving of 2, listening 127\.0\.0\.1:\d+/m);
    assert.match(human.stdout, /^pool tasks: tasks\.mjs:handlers \(task\), 2 serving of 2/m);

    // Scaling one pool leaves the other alone.
    const scaled = cli(['scale', 'tasks', '3', '--control-socket', sock]);
    assert.equal(scaled.code, 0, scaled.stderr);
    assert.match(scaled.stdout, /pool tasks: workers: 2 -> 3/);
    const after = await waitFor(() => {
      const s = status(sock);
      return pidsOf(s, 'tasks').length === 3 ? s : null;
    }, 15_000, '3 task workers');
    assert.deepEqual(pidsOf(after, 'web'), webPids, 'the web pool is untouched');
    assert.equal(after.pools.find((p) => p.name === 'web')!.target, 2);
    const scaledTasks = pidsOf(after, 'tasks');
    // Naming no pool is an error when there are several.
    const ambiguous = cli(['scale', '4', '--control-socket', sock]);
    assert.equal(ambiguous.code, 1);
    assert.match(ambiguous.stderr, /runs pools web, tasks: name one/);

    // Broken task code, then HUP: the web pool reloads, the task pool keeps its old workers.
    writeFileSync(path.join(dir, 'tasks.mjs'), 'export const handlers = { double: async ( => 1 };\n');
    r.signal('SIGHUP');
    const refused = await r.waitLog((l) => l.event === 'worker_boot_failed' && l.pool === 'tasks' && l.role === 'master', 20_000, 'the task pool refusing its new code');
    assert.match(refused.msg, /^pool tasks: new worker failed to boot, keeping the running workers: app module tasks\.mjs failed while loading: SyntaxError/);
    const reloaded = await waitFor(() => {
      const s = status(sock);
      const web2 = pidsOf(s, 'web');
      return web2.length === 2 && web2.every((p) => !webPids.includes(p)) && s.workers.filter((w) => w.pool === 'web').length === 2 ? s : null;
    }, 20_000, 'two new web workers and the old ones gone');
    assert.deepEqual(pidsOf(reloaded, 'tasks'), scaledTasks, 'the task pool keeps its running workers');
    assert.equal((await request({ port })).status, 200);
    const again = await enqueue('double', { n: 2 }, { broker: redisUrl, queue });
    const value = (await again.result({ timeout: 10_000 })) as { n: number; pid: number };
    assert.equal(value.n, 4);
    assert.ok(scaledTasks.includes(value.pid), 'an old task worker ran it');

    // `arbiter reload web`: that pool only.
    const webNow = pidsOf(reloaded, 'web');
    const one = cli(['reload', 'web', '--control-socket', sock]);
    assert.equal(one.code, 0, one.stderr);
    const third = await waitFor(() => {
      const s = status(sock);
      const w = pidsOf(s, 'web');
      return w.length === 2 && w.every((p) => !webNow.includes(p)) && s.workers.filter((x) => x.pool === 'web').length === 2 ? s : null;
    }, 20_000, 'the web pool reloaded alone');
    assert.deepEqual(pidsOf(third, 'tasks'), scaledTasks);
    // TTOU for one pool through the control socket: {"cmd":"scale","pool":"web","by":-1}.
    const down = await ask(sock, { cmd: 'scale', pool: 'web', by: -1 });
    assert.deepEqual(down, { ok: true, pool: 'web', from: 2, to: 1 });
    await waitFor(() => pidsOf(status(sock), 'web').length === 1, 15_000, 'one web worker');
    assert.deepEqual((await ask(sock, { cmd: 'scale', pool: 'nope', n: 2 })).error, 'no pool "nope": this arbiter runs web, tasks');
  } finally {
    await closeBrokers();
    await stop(r);
  }
});

test('a pool whose app dies 1 s after every boot is degraded within restartWindow; the other pool is unaffected; exitOnDegraded exits 1', { timeout: 90_000 }, async () => {
  const dir = tmpDir('arbiter-degraded-');
  const port = await freePort();
  const flakyPort = await freePort();
  const metricsPort = await freePort();
  const sock = path.join(dir, 'ctl.sock');
  const config = (exit: boolean) => `export default {
    controlSocket: ${JSON.stringify(sock)},
    metricsBind: '127.0.0.1:${metricsPort}',
    gracefulTimeout: 3,
    pools: {
      web: { app: ${JSON.stringify(PID_APP)}, workers: 2, bind: ['127.0.0.1:${port}'] },
      flaky: { app: 'dies.mjs', workers: 2, bind: ['127.0.0.1:${flakyPort}'], maxRestarts: 3, restartWindow: 30, exitOnDegraded: ${exit} },
    },
  };\n`;
  writeFiles(dir, {
    'dies.mjs': `setTimeout(() => process.exit(1), 1000);\nexport default (req, res) => res.end('ok');\n`,
    'keep.config.mjs': config(false),
    'exit.config.mjs': config(true),
  });

  const r = await serve(['-c', 'keep.config.mjs'], { cwd: dir });
  try {
    const web = pidsOf(status(sock), 'web');
    const started = Date.now();
    const line = await r.waitLog((l) => l.event === 'pool_degraded', 30_000, 'the flaky pool degraded');
    assert.ok(Date.now() - started < 30_000, 'within restartWindow');
    assert.equal(line.pool, 'flaky');
    assert.equal(line.level, 'error');
    assert.match(line.msg, /^POOL DEGRADED: pool flaky: 4 workers died unexpectedly within 30 s \(maxRestarts 3\); still restarting/);
    const st = status(sock);
    assert.deepEqual(st.pools.map((p) => [p.name, p.degraded]), [['web', false], ['flaky', true]]);
    assert.deepEqual(pidsOf(st, 'web'), web, 'the web pool kept its workers');
    assert.equal((await request({ port })).status, 200);
    const metrics = (await request({ port: metricsPort }, { path: '/metrics' })).body;
    assert.match(metrics, /^arbiter_pool_degraded\{pool="flaky"\} 1$/m);
    assert.match(metrics, /^arbiter_pool_degraded\{pool="web"\} 0$/m);
    assert.match(metrics, /^arbiter_worker_restarts_total\{pool="web",reason="crash"\} 0$/m);
    // It keeps trying, at the backoff rate: workers are still being started.
    const before = r.logs().filter((l) => l.event === 'worker_booting' && l.pool === 'flaky').length;
    await r.waitLog(() => r.logs().filter((l) => l.event === 'worker_booting' && l.pool === 'flaky').length > before, 15_000, 'another flaky worker');
  } finally {
    await stop(r);
  }

  const x = run(['-c', 'exit.config.mjs'], { cwd: dir });
  let timer: NodeJS.Timeout | undefined;
  const exited = await Promise.race([x.exited, new Promise<null>((res) => (timer = setTimeout(() => res(null), 40_000)))]);
  clearTimeout(timer);
  assert.ok(exited, `exitOnDegraded did not stop the arbiter:\n${x.stderr().slice(-2000)}`);
  assert.equal(exited.code, 1, x.stderr().slice(-2000));
  assert.match(x.stderr(), /arbiter: error: pool flaky is degraded: 4 workers died unexpectedly within 30 s \(maxRestarts 3\) \(exitOnDegraded\)/);
});

test('pool settings are checked where they stand: the error names the pool', { timeout: 30_000 }, async () => {
  const dir = tmpDir('arbiter-pools-bad-');
  const cases: [string, RegExp][] = [
    [`{ web: { app: 'a.js', timeout: 'soon' } }`, /invalid value "soon" for timeout \(pools\.web in bad\.config\.mjs\): expected a number of seconds >= 0/],
    [`{ web: { app: 'a.js', timout: 5 } }`, /unknown setting "timout" in pools\.web in bad\.config\.mjs — did you mean "timeout"\?/],
    [`{ web: { app: 'a.js', pidfile: 'x.pid' } }`, /setting "pidfile" cannot be set per pool \(pools\.web in bad\.config\.mjs\): it is the master's own/],
    [`{}`, /invalid value \{\} for pools \(bad\.config\.mjs\): expected an object of pools/],
    [`{ 'we b': { app: 'a.js' } }`, /invalid pool name "we b" in bad\.config\.mjs/],
    [`{ a: { app: ${JSON.stringify(PID_APP)}, bind: ['127.0.0.1:1'] }, b: { app: ${JSON.stringify(PID_APP)}, bind: ['127.0.0.1:1'] } }`, /pools a and b both bind 127\.0\.0\.1:1/],
    [`{ a: { app: ${JSON.stringify(PID_APP)} }, b: { workers: 2 } }`, /pool b: no app given/],
  ];
  for (const [pools, expected] of cases) {
    writeFiles(dir, { 'bad.config.mjs': `export default { pools: ${pools} };\n` });
    const out = cli(['-c', 'bad.config.mjs', '--check-config'], dir);
    assert.equal(out.code, 2, `${pools}: ${out.stderr}`);
    assert.match(out.stderr, expected);
  }
  // A good one: --check-config checks every pool's app and says how each is sized.
  writeFiles(dir, {
    'tasks.mjs': TASKS,
    'good.config.mjs': `export default { workers: 'auto', pools: {
      web: { app: ${JSON.stringify(PID_APP)} },
      jobs: { app: 'tasks.mjs:handlers', workerClass: 'task', workers: (cpus) => cpus + 1 },
      one: { app: ${JSON.stringify(PID_APP)}, workers: 1, bind: ['127.0.0.1:9'] },
    } };\n`,
  });
  const ok = cli(['-c', 'good.config.mjs', '--check-config'], dir);
  assert.equal(ok.code, 0, ok.stderr);
  const lines = ok.stdout.trim().split('\n');
  assert.equal(lines.length, 3);
  assert.match(lines[0]!, /^config OK: pool web: .*pid\.js \(node[^)]*\), \d+ workers?: auto .*its share of \d+ CPUs among 2 pools/);
  assert.match(lines[1]!, /^config OK: pool jobs: tasks\.mjs:handlers \(task: 1 handler \(double\)\), \d+ workers?: workers\(\d+\)/);
  assert.match(lines[2]!, /^config OK: pool one: .* 1 worker: set in configuration$/);
  // One pool's app that cannot load stops the start with exit 3, named.
  writeFiles(dir, { 'broken.config.mjs': `export default { pools: { web: { app: ${JSON.stringify(PID_APP)} }, jobs: { app: 'missing.mjs', workerClass: 'task' } } };\n` });
  const broken = cli(['-c', 'broken.config.mjs'], dir);
  assert.equal(broken.code, 3, broken.stderr);
  assert.match(broken.stderr, /^arbiter: error: pool jobs: /m);
});

test('HUP adds the pools the config gained and retires the ones it lost; each pool has its own hooks', { timeout: 60_000 }, async () => {
  const dir = tmpDir('arbiter-pools-hup-');
  const [portA, portB] = [await freePort(), await freePort()];
  const sock = path.join(dir, 'ctl.sock');
  const marks = path.join(dir, 'marks.txt');
  const pool = (name: string, port: number, hook = '') =>
    `${name}: { app: ${JSON.stringify(PID_APP)}, workers: 1, bind: ['127.0.0.1:${port}']${hook} }`;
  const config = (pools: string) => `import { appendFileSync } from 'node:fs';
    export default {
      controlSocket: ${JSON.stringify(sock)}, gracefulTimeout: 3,
      postFork: (w) => appendFileSync(${JSON.stringify(marks)}, 'top ' + process.pid + '\\n'),
      pools: { ${pools} },
    };\n`;
  const hookB = `, postFork: (w) => appendFileSync(${JSON.stringify(marks)}, 'b ' + process.pid + '\\n')`;
  writeFiles(dir, { 'arbiter.config.mjs': config(pool('a', portA)) });
  const r = await serve([], { cwd: dir });
  try {
    assert.equal((await request({ port: portA })).status, 200);
    writeFiles(dir, { 'arbiter.config.mjs': config(`${pool('a', portA)}, ${pool('b', portB, hookB)}`) });
    r.signal('SIGHUP');
    await r.waitLog((l) => l.event === 'pool_added' && l.pool === 'b', 15_000, 'pool b added');
    await waitFor(() => pidsOf(status(sock), 'b').length === 1, 15_000, 'pool b serving');
    assert.equal((await request({ port: portB })).status, 200);
    // The workers' own hooks: pool a's are the top level's, pool b's its own.
    const st = status(sock);
    const lines = (await import('node:fs')).readFileSync(marks, 'utf8');
    assert.match(lines, new RegExp(`^b ${pidsOf(st, 'b')[0]}$`, 'm'));
    assert.match(lines, new RegExp(`^top ${pidsOf(st, 'a')[0]}$`, 'm'));
    // Drop a: its workers leave, its listener closes; b serves on.
    writeFiles(dir, { 'arbiter.config.mjs': config(pool('b', portB, hookB)) });
    r.signal('SIGHUP');
    await r.waitLog((l) => l.event === 'pool_removed' && l.pool === 'a', 15_000, 'pool a removed');
    assert.deepEqual(status(sock).pools.map((p) => p.name), ['b']);
    await assert.rejects(request({ port: portA }), /ECONNREFUSED/);
    assert.equal((await request({ port: portB })).status, 200);
  } finally {
    await stop(r);
  }
});
