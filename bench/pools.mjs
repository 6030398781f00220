#!/usr/bin/env node
// One arbiter with two pools (web + tasks) against the same two run as separate arbiters:
// does the shared master cost anything? Both setups run the same work at once: wrk on the
// web pool (examples/hello.js, `-k http`) and a drain of K no-op tasks on the task pool
// (examples/tasks.js on Redis), each pool `-w 1`.
//
//   node bench/pools.mjs [--duration 5] [--tasks 20000] [--repeat 2] [--json]
//
// Method, per run: start the setup and wait until it serves; SIGSTOP the task worker;
// pre-fill K tasks; SIGCONT it and start wrk (keep-alive, -c 50) at once; the window is
// wrk's. Measured: web req/s; the time the tasks took to drain (and tasks/s); CPU seconds of
// every process of the setup over the window (/proc: utime+stime of the trees); and after
// the window, the PSS of the master(s) and of all processes (smaps_rollup). The two setups
// take turns `repeat` times; each reports its best req/s run and the median of the others.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { cpuSeconds, descendants, sampleTree } from './cpu.mjs';
import { freePort, sleep, stopTree, track, waitUntilAnswers, killAllTracked } from './proc.mjs';
import { ensureWrk, runWrk } from './wrk.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(ROOT, 'bin', 'arbiter');
const HELLO = path.join(ROOT, 'examples', 'hello.js') + ':handler';
const TASKS = path.join(ROOT, 'examples', 'tasks.js') + ':handlers';

process.on('exit', killAllTracked);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

function pss(pid) {
  try {
    return Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))[1]) * 1024;
  } catch {
    return 0;
  }
}

function spawnArbiter(args, dir) {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ARBITER_CMD_ARGS: '' }, detached: true });
  track(child.pid, 'arbiter');
  let err = '';
  child.stderr.on('data', (d) => (err = (err + d).slice(-20_000)));
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return { pid: child.pid, child, exited, ready: () => err.includes('"event":"ready"'), tail: () => err.slice(-2000), log: () => err };
}

async function ready(proc, what) {
  for (let i = 0; i < 300; i++) {
    if (proc.ready()) return;
    await sleep(50);
  }
  throw new Error(`${what}: not ready after 15 s\n${proc.tail()}`);
}

/** The task workers: from the masters' own log lines (`worker_ready`, with the pool). */
function taskWorkers(procs, pool) {
  const out = [];
  for (const p of procs)
    for (const line of p.log().split('\n')) {
      if (!line.includes('"event":"worker_ready"')) continue;
      const l = JSON.parse(line);
      if (pool === null || l.pool === pool) out.push(l.worker);
    }
  return out;
}

let seq = 0;
async function setup(kind, redisUrl) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'arbiter-bench-pools-'));
  const port = await freePort();
  const queue = `bench-pools-${process.pid}-${seq++}`;
  const common = ['--timeout', '0', '--graceful-timeout', '5'];
  let masters;
  if (kind === 'one arbiter, two pools') {
    writeFileSync(
      path.join(dir, 'arbiter.config.mjs'),
      `export default { timeout: 0, gracefulTimeout: 5, pools: {
        web: { app: ${JSON.stringify(HELLO)}, workerClass: 'http', workers: 1, bind: ['127.0.0.1:${port}'] },
        tasks: { app: ${JSON.stringify(TASKS)}, workerClass: 'task', workers: 1, concurrency: 16, broker: ${JSON.stringify(redisUrl)}, queue: ${JSON.stringify(queue)} },
      } };\n`,
    );
    masters = [spawnArbiter(['-c', 'arbiter.config.mjs'], dir)];
  } else {
    masters = [
      spawnArbiter([HELLO, '-k', 'http', '-w', '1', '-b', `127.0.0.1:${port}`, ...common], dir),
      spawnArbiter([TASKS, '-k', 'task', '-w', '1', '--concurrency', '16', '--broker', redisUrl, '--queue', queue, ...common], dir),
    ];
  }
  for (const m of masters) await ready(m, kind);
  await waitUntilAnswers(masters[0], port);
  const one = kind === 'one arbiter, two pools';
  return {
    port,
    queue,
    masters: masters.map((m) => m.pid),
    taskWorkers: () => (one ? taskWorkers(masters, 'tasks') : taskWorkers([masters[1]], null)),
    async stop() {
      for (const m of masters) await stopTree(m.pid, { graceMs: 10_000 });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function runOnce(kind, { redisUrl, duration, tasks, openBroker }) {
  const s = await setup(kind, redisUrl);
  const producer = await openBroker(redisUrl, { queue: s.queue, consumer: `bench:${process.pid}` });
  try {
    await sleep(300);
    const workers = s.taskWorkers();
    if (workers.length !== 1) throw new Error(`${kind}: expected 1 task worker, found ${workers.length}`);
    for (const p of workers) process.kill(p, 'SIGSTOP');
    for (let i = 0; i < tasks; i += 1000) await Promise.all(Array.from({ length: Math.min(1000, tasks - i) }, () => producer.enqueue('noop', null)));
    const before = s.masters.map(sampleTree);
    const t0 = performance.now();
    for (const p of workers) process.kill(p, 'SIGCONT');
    let drainedMs = null;
    const watch = (async () => {
      while (performance.now() - t0 < duration * 1000 + 5000) {
        const st = await producer.stats();
        if (st.ready + st.inFlight + st.delayed === 0) return (drainedMs = performance.now() - t0);
        await sleep(20);
      }
    })();
    const wrk = await runWrk(`http://127.0.0.1:${s.port}/`, { duration, connections: 50 });
    const after = s.masters.map(sampleTree);
    await watch;
    const cpu = before.reduce((sum, b, i) => sum + cpuSeconds(b, after[i]), 0);
    const all = s.masters.flatMap((m) => [m, ...descendants(m)]);
    return {
      rps: wrk.requests / duration,
      errors: wrk.socketErrors + (wrk.non2xx3xx ?? 0),
      drainedMs,
      tasksPerSecond: drainedMs ? tasks / (drainedMs / 1000) : null,
      cpuSeconds: cpu,
      mastersPss: s.masters.reduce((sum, m) => sum + pss(m), 0),
      totalPss: all.reduce((sum, p) => sum + pss(p), 0),
      processes: all.length,
    };
  } finally {
    await producer.close();
    await s.stop();
  }
}

async function startRedis() {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', os.tmpdir()], { stdio: 'ignore', detached: true });
  track(child.pid, 'redis-server');
  for (let i = 0; i < 100; i++) {
    if (spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' }).stdout?.trim() === 'PONG') return { url: `redis://127.0.0.1:${port}/0`, pid: child.pid };
    await sleep(50);
  }
  throw new Error('redis-server did not start');
}

const KINDS = ['one arbiter, two pools', 'two arbiters'];

/** Runs both setups `repeat` times, taking turns; returns a row per setup and the ratios. */
export async function benchPools({ duration = 5, tasks = 20_000, repeat = 2, log = () => {} } = {}) {
  ensureWrk(log);
  const { openBroker } = await import(pathToFileURL(path.join(ROOT, 'dist/src/core/brokers/open.js')).href);
  const redis = await startRedis();
  const runs = new Map(KINDS.map((k) => [k, []]));
  try {
    for (let i = 0; i < repeat; i++) {
      for (const kind of i % 2 ? [...KINDS].reverse() : KINDS) {
        const r = await runOnce(kind, { redisUrl: redis.url, duration, tasks, openBroker });
        runs.get(kind).push(r);
        log(`${kind}, run ${i + 1}/${repeat}: ${Math.round(r.rps)} req/s, ${tasks} tasks in ${r.drainedMs ? (r.drainedMs / 1000).toFixed(2) : '-'} s, CPU ${r.cpuSeconds.toFixed(2)} s`);
      }
    }
  } finally {
    await stopTree(redis.pid, { graceMs: 2000 });
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
  const rows = KINDS.map((kind) => {
    const rs = runs.get(kind);
    const pick = (f) => median(rs.map(f).filter((x) => x != null));
    return {
      name: kind,
      runs: rs.length,
      rps: pick((r) => r.rps),
      tasksPerSecond: pick((r) => r.tasksPerSecond),
      cpuSeconds: pick((r) => r.cpuSeconds),
      workPerCpuSecond: pick((r) => (r.rps * duration + tasks) / r.cpuSeconds),
      mastersPss: pick((r) => r.mastersPss),
      totalPss: pick((r) => r.totalPss),
      errors: rs.reduce((s, r) => s + r.errors, 0),
    };
  });
  const [one, two] = rows;
  return { duration, tasks, rows, ratios: { rps: one.rps / two.rps, tasksPerSecond: one.tasksPerSecond / two.tasksPerSecond, workPerCpuSecond: one.workPerCpuSecond / two.workPerCpuSecond, totalPss: one.totalPss / two.totalPss } };
}

export function printPoolsTable({ duration, tasks, rows, ratios }) {
  const mb = (n) => `${(n / 1024 / 1024).toFixed(1)} MB`;
  const table = [
    ['setup', 'web req/s', 'tasks/s', 'CPU-s', '(req+tasks)/CPU-s', 'masters PSS', 'total PSS', 'errors'],
    ...rows.map((r) => [r.name, Math.round(r.rps).toLocaleString('en-US'), r.tasksPerSecond ? Math.round(r.tasksPerSecond).toLocaleString('en-US') : '-', r.cpuSeconds.toFixed(2), Math.round(r.workPerCpuSecond).toLocaleString('en-US'), mb(r.mastersPss), mb(r.totalPss), String(r.errors)]),
  ];
  const widths = table[0].map((_, i) => Math.max(...table.map((r) => r[i].length)));
  process.stdout.write(`\nweb (http -w 1, wrk ${duration} s) + tasks (task -w 1, ${tasks} no-op tasks on Redis) at once, medians (${os.availableParallelism()} CPUs)\n\n`);
  for (const r of table) process.stdout.write(r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ') + '\n');
  process.stdout.write(
    `\none arbiter / two arbiters: req/s ${ratios.rps.toFixed(2)}×, tasks/s ${ratios.tasksPerSecond.toFixed(2)}×, work per CPU-s ${ratios.workPerCpuSecond.toFixed(2)}×, total PSS ${ratios.totalPss.toFixed(2)}×\n`,
  );
}

function parseArgs(argv) {
  const o = { duration: 5, tasks: 20_000, repeat: 2, json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--duration') o.duration = Math.max(1, Number(argv[++i]));
    else if (a === '--tasks') o.tasks = Math.max(1000, Number(argv[++i]));
    else if (a === '--repeat') o.repeat = Math.max(1, Number(argv[++i]));
    else if (a === '--json') o.json = true;
    else throw new Error(`unknown argument ${a}: node bench/pools.mjs [--duration S] [--tasks K] [--repeat N] [--json]`);
  }
  return o;
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const o = parseArgs(process.argv.slice(2));
  benchPools({ ...o, log: (m) => process.stderr.write(m + '\n') }).then(
    (r) => {
      if (o.json) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
      else printPoolsTable(r);
      process.exit(0);
    },
    (err) => {
      process.stderr.write(`bench/pools.mjs: ${err.stack ?? err}\n`);
      process.exit(1);
    },
  );
}
