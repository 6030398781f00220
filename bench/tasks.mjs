#!/usr/bin/env node
// No-op task throughput: `arbiter -k task` on the spool and on Redis with 1 and N workers, and
// BullMQ workers on the same Redis at the same total concurrency, in one run. Every row runs
// `repeat` times, the rows taking turns, and reports its best run (and the median): on a
// shared machine the best run is the one least disturbed by others.
//
//   node bench/tasks.mjs [--tasks 20000] [--concurrency 16] [--workers 1,2] [--repeat 3] [--only spool] [--json]
//
// --only NAME,...: just the rows whose consumer name contains one of these (spool, redis, bullmq).
//
// Method, the same for every row: start the consumers on an empty queue and wait until they
// are all up; SIGSTOP them; pre-fill K no-op tasks; SIGCONT them and time until the queue is
// empty (waiting, delayed and in flight all 0; polled after half the time the rest should
// take at the rate so far, or half the time so far if less, at least 20 ms apart: see
// drain()). Boot time and enqueue time are not measured. BullMQ jobs are added
// with removeOnComplete, as arbiter deletes acknowledged entries. BullMQ runs as N processes
// of `concurrency` each, like arbiter's N workers.
//
// Round trip (--round-trip): one task at a time, the time from enqueue() to its result in
// the producer: arbiter's `enqueue()` + `handle.result()` (workers with resultTtl) against
// BullMQ's `queue.add()` + `job.waitUntilFinished(queueEvents)`, the same worker count and
// concurrency, on the same Redis, alternating in blocks; p50 / p99 / mean over `samples`
// round trips per consumer after a warm-up.
//
// Starts its own redis-server on a free loopback port (no persistence); every process it
// starts is killed by pid at the end, on Ctrl-C and on a crash. Needs a built dist/ (tsc).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(ROOT, 'bin', 'arbiter');
const HANDLERS = path.join(ROOT, 'examples', 'tasks.js') + ':handlers';
const BULL_WORKER = path.join(ROOT, 'bench', 'tasks-bullmq-worker.mjs');
const RUN_LIMIT_MS = 120_000;

// ------------------------------------------------------------------ processes, by pid

const started = new Set();
function track(child) {
  started.add(child.pid);
  child.once('exit', () => started.delete(child.pid));
  return child;
}
function childrenOf(pid) {
  const out = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(f[1]) === pid && f[0] !== 'Z') out.push(Number(name));
    } catch {}
  }
  return out;
}
function killTree(pid) {
  for (const c of childrenOf(pid)) killTree(c);
  try {
    process.kill(pid, 'SIGKILL');
  } catch {}
}
function killAll() {
  for (const pid of [...started]) killTree(pid);
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));
function signalAll(pids, sig) {
  for (const p of pids) {
    try {
      process.kill(p, sig);
    } catch {}
  }
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function exited(child) {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', r));
}
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}
/** Resolves when `test(output so far)` holds; rejects on exit or after ms. */
function waitOutput(child, stream, test, ms, what) {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => done(new Error(`${what}: nothing after ${ms} ms\n${text.slice(-2000)}`)), ms);
    const onData = (d) => {
      text += d;
      if (test(text)) done();
    };
    const onExit = (code) => done(new Error(`${what}: exited with ${code}\n${text.slice(-2000)}`));
    function done(err) {
      clearTimeout(timer);
      child[stream].off('data', onData);
      child.off('exit', onExit);
      if (err) reject(err);
      else resolve();
    }
    child[stream].on('data', onData);
    child.once('exit', onExit);
  });
}

async function startRedis() {
  if (spawnSync('redis-server', ['--version']).error) throw new Error('redis-server is not on PATH (Debian: apt-get install redis-server)');
  const port = await freePort();
  const child = track(
    spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', os.tmpdir()], {
      stdio: ['ignore', 'pipe', 'inherit'],
    }),
  );
  await waitOutput(child, 'stdout', (t) => t.includes('Ready to accept connections'), 10_000, 'redis-server');
  child.stdout.resume();
  return { url: `redis://127.0.0.1:${port}/0`, child };
}

/**
 * Polls `depth()` until it is 0; returns the elapsed ms from `t0`. Not at a fixed rate: a
 * poll is work on the machine being measured (the spool's stats() lists every shard
 * directory, ~15 ms of CPU at 20000 tasks, and holds their locks meanwhile), so once the rate
 * is known the next poll comes after half the time the rest should take (or half the time
 * so far, if less), and never sooner than `everyMs` (the resolution at the end). A run makes
 * about ten polls, for every consumer alike. None at the start, when nothing can have been
 * done yet: the consumers are all starting then, and a spool poll would hold the directories
 * they begin by listing.
 */
async function drain(depth, t0, everyMs, what, total) {
  await sleep(everyMs);
  for (;;) {
    const left = await depth();
    const elapsed = performance.now() - t0;
    if (left === 0) return elapsed;
    if (elapsed > RUN_LIMIT_MS) throw new Error(`${what}: queue not drained after ${RUN_LIMIT_MS} ms`);
    const done = total - left;
    const eta = done > 0 ? (left * elapsed) / done : 0;
    // (and at most half the time so far: a rate measured on a cold start is too low, and an
    // ETA made of it would sleep past the end)
    await sleep(Math.min(Math.max(everyMs, Math.min(eta, elapsed) / 2), 1000));
  }
}

// ------------------------------------------------------------------ arbiter

let seq = 0;
async function runArbiter({ brokerUrl, kind, workers, concurrency, tasks }) {
  const { openBroker } = await import(pathToFileURL(path.join(ROOT, 'dist/src/core/brokers/open.js')).href);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'arbiter-bench-tasks-'));
  const broker = kind === 'spool' ? `spool:${path.join(dir, 'spool')}` : brokerUrl;
  const queue = `bench-${process.pid}-${seq++}`;
  const child = track(
    spawn(
      process.execPath,
      [BIN, HANDLERS, '-k', 'task', '-w', String(workers), '--concurrency', String(concurrency), '--broker', broker, '--queue', queue, '--timeout', '0'],
      { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ARBITER_CMD_ARGS: '' } },
    ),
  );
  const producer = await openBroker(broker, { queue, cwd: dir, consumer: `bench:${process.pid}` });
  try {
    await waitOutput(child, 'stderr', (t) => t.includes('"event":"ready"'), 30_000, `arbiter ${kind}`);
    child.stderr.resume();
    const pids = childrenOf(child.pid);
    if (pids.length !== workers) throw new Error(`expected ${workers} workers, found ${pids.length}`);
    // Let each worker settle into its idle fetch before it is frozen.
    await sleep(300);
    signalAll(pids, 'SIGSTOP');
    for (let i = 0; i < tasks; i += 1000) {
      await Promise.all(Array.from({ length: Math.min(1000, tasks - i) }, () => producer.enqueue('noop', null)));
    }
    const t0 = performance.now();
    signalAll(pids, 'SIGCONT');
    const ms = await drain(
      async () => {
        const s = await producer.stats();
        return s.ready + s.delayed + s.inFlight;
      },
      t0,
      20,
      `arbiter ${kind}`,
      tasks,
    );
    const dead = (await producer.stats()).dead;
    if (dead) throw new Error(`arbiter ${kind}: ${dead} tasks dead-lettered`);
    return ms;
  } finally {
    await producer.close();
    child.kill('SIGTERM');
    await Promise.race([exited(child), sleep(10_000)]);
    killTree(child.pid);
    rmSync(dir, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------ BullMQ

async function runBull({ brokerUrl, workers, concurrency, tasks }) {
  const { Queue } = await import('bullmq');
  const { Redis } = await import('ioredis');
  const name = `bench-bull-${process.pid}-${seq++}`;
  const connection = new Redis(brokerUrl, { maxRetriesPerRequest: null });
  const queue = new Queue(name, { connection });
  const children = [];
  try {
    for (let i = 0; i < workers; i++) {
      children.push(track(spawn(process.execPath, [BULL_WORKER, brokerUrl, name, String(concurrency)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] })));
    }
    await Promise.all(children.map((c) => waitOutput(c, 'stdout', (t) => t.includes('ready'), 30_000, 'bullmq worker')));
    await sleep(300);
    const pids = children.map((c) => c.pid);
    signalAll(pids, 'SIGSTOP');
    for (let i = 0; i < tasks; i += 1000) {
      const n = Math.min(1000, tasks - i);
      await queue.addBulk(Array.from({ length: n }, () => ({ name: 'noop', data: null, opts: { removeOnComplete: true, removeOnFail: true } })));
    }
    const t0 = performance.now();
    signalAll(pids, 'SIGCONT');
    return await drain(
      async () => {
        const c = await queue.getJobCounts('wait', 'active', 'delayed', 'prioritized', 'paused');
        return c.wait + c.active + c.delayed + c.prioritized + c.paused;
      },
      t0,
      20,
      'bullmq',
      tasks,
    );
  } finally {
    for (const c of children) killTree(c.pid);
    await Promise.race([queue.obliterate({ force: true }).catch(() => {}), sleep(3000)]);
    await Promise.race([queue.close().catch(() => {}), sleep(2000)]);
    connection.disconnect();
  }
}

// ------------------------------------------------------------------ round trip

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function summary(ms) {
  const sorted = [...ms].sort((a, b) => a - b);
  return { samples: sorted.length, p50: percentile(sorted, 50), p99: percentile(sorted, 99), mean: sorted.reduce((a, b) => a + b, 0) / sorted.length };
}

/** An arbiter task pool with resultTtl on `brokerUrl`; `trip()` is one enqueue → result. */
async function arbiterTripper({ brokerUrl, workers, concurrency }) {
  const api = await import(pathToFileURL(path.join(ROOT, 'dist/src/index.js')).href);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'arbiter-bench-rt-'));
  const queue = `bench-rt-${process.pid}-${seq++}`;
  const child = track(
    spawn(
      process.execPath,
      [BIN, HANDLERS, '-k', 'task', '-w', String(workers), '--concurrency', String(concurrency), '--broker', brokerUrl, '--queue', queue, '--timeout', '0', '--result-ttl', '60'],
      { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ARBITER_CMD_ARGS: '' } },
    ),
  );
  await waitOutput(child, 'stderr', (t) => t.includes('"event":"ready"'), 30_000, 'arbiter round trip');
  child.stderr.resume();
  const where = { broker: brokerUrl, queue };
  return {
    async trip() {
      const t0 = performance.now();
      const h = await api.enqueue('noop', null, where);
      await h.result({ timeout: 10_000 });
      return performance.now() - t0;
    },
    async close() {
      await api.closeBrokers();
      child.kill('SIGTERM');
      await Promise.race([exited(child), sleep(10_000)]);
      killTree(child.pid);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function bullTripper({ brokerUrl, workers, concurrency }) {
  const { Queue, QueueEvents } = await import('bullmq');
  const { Redis } = await import('ioredis');
  const name = `bench-bull-rt-${process.pid}-${seq++}`;
  const connection = new Redis(brokerUrl, { maxRetriesPerRequest: null });
  const queue = new Queue(name, { connection });
  // BullMQ leaves a connection it was given open: both are disconnected in close().
  const eventsConnection = new Redis(brokerUrl, { maxRetriesPerRequest: null });
  const events = new QueueEvents(name, { connection: eventsConnection });
  await events.waitUntilReady();
  const children = [];
  for (let i = 0; i < workers; i++)
    children.push(track(spawn(process.execPath, [BULL_WORKER, brokerUrl, name, String(concurrency)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] })));
  await Promise.all(children.map((c) => waitOutput(c, 'stdout', (t) => t.includes('ready'), 30_000, 'bullmq worker')));
  return {
    async trip() {
      const t0 = performance.now();
      const job = await queue.add('noop', null, { removeOnComplete: { age: 60 }, removeOnFail: { age: 60 } });
      await job.waitUntilFinished(events, 10_000);
      return performance.now() - t0;
    },
    async close() {
      for (const c of children) killTree(c.pid);
      await Promise.race([queue.obliterate({ force: true }).catch(() => {}), sleep(3000)]);
      await Promise.race([events.close().catch(() => {}), sleep(2000)]);
      await Promise.race([queue.close().catch(() => {}), sleep(2000)]);
      connection.disconnect();
      eventsConnection.disconnect();
    },
  };
}

/**
 * enqueue → result latency, one task at a time: arbiter (resultTtl) and BullMQ
 * (waitUntilFinished) on one Redis, in alternating blocks of 50 so both see the same minutes.
 */
export async function benchRoundTrip({ samples = 1000, warmup = 100, workers = 2, concurrency = 16, log = () => {} } = {}) {
  const redis = await startRedis();
  const made = [];
  try {
    const consumers = [
      ['arbiter redis (result)', await arbiterTripper({ brokerUrl: redis.url, workers, concurrency })],
      ['bullmq (waitUntilFinished)', await bullTripper({ brokerUrl: redis.url, workers, concurrency })],
    ];
    made.push(...consumers.map(([, c]) => c));
    for (const [, c] of consumers) for (let i = 0; i < warmup; i++) await c.trip();
    const times = new Map(consumers.map(([name]) => [name, []]));
    for (let done = 0; done < samples; done += 50) {
      for (const [name, c] of consumers) for (let i = 0; i < Math.min(50, samples - done); i++) times.get(name).push(await c.trip());
    }
    const rows = consumers.map(([name]) => ({ name, workers, concurrency, ...summary(times.get(name)) }));
    for (const r of rows) log(`${r.name}: p50 ${r.p50.toFixed(3)} ms, p99 ${r.p99.toFixed(3)} ms over ${r.samples}`);
    return { rows, ratio: { p50: rows[0].p50 / rows[1].p50, p99: rows[0].p99 / rows[1].p99 } };
  } finally {
    for (const c of made) await c.close().catch(() => {});
    killTree(redis.child.pid);
  }
}

/** The round-trip table, also printed by `npm run bench`. */
export function printRoundTripTable({ rows, ratio }) {
  const table = [
    ['producer → result', 'workers', 'concurrency', 'round trips', 'p50 ms', 'p99 ms', 'mean ms'],
    ...rows.map((r) => [r.name, String(r.workers), String(r.concurrency), String(r.samples), r.p50.toFixed(3), r.p99.toFixed(3), r.mean.toFixed(3)]),
  ];
  const widths = table[0].map((_, i) => Math.max(...table.map((r) => r[i].length)));
  process.stdout.write(`\nenqueue → result round trip, one at a time (${os.availableParallelism()} CPUs, node ${process.version})\n\n`);
  for (const r of table) process.stdout.write(r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ') + '\n');
  process.stdout.write(`\narbiter / BullMQ latency: p50 ${ratio.p50.toFixed(2)}×, p99 ${ratio.p99.toFixed(2)}× (below 1 is faster)\n`);
}

// ------------------------------------------------------------------ the run

/**
 * Runs every row; returns [{ name, broker, workers, concurrency, tasks, seconds, perSecond }]
 * and the arbiter-redis / BullMQ ratios at equal worker count and concurrency.
 */
export async function benchTasks({ tasks = 20_000, concurrency = 16, workerCounts = [1, 2], repeat = 3, only = null, log = () => {} } = {}) {
  const rows = [];
  const runners = [
    ['arbiter spool', (o) => runArbiter({ ...o, kind: 'spool' })],
    ['arbiter redis', (o) => runArbiter({ ...o, kind: 'redis' })],
    ['bullmq', (o) => runBull(o)],
  ].filter(([name]) => !only || only.some((o) => name.includes(o)));
  const redis = runners.some(([name]) => name !== 'arbiter spool') ? await startRedis() : { url: null, child: null };
  try {
    // Interleaved: each round runs every row once, so the rows a ratio compares (Redis and
    // BullMQ at one worker count, the spool with 1 and 2 workers) ran within the same minute;
    // this VM's speed drifts by ±20% from one minute to the next.
    const times = new Map();
    for (let i = 0; i < repeat; i++) {
      for (const workers of workerCounts) {
        for (const [name, run] of runners) {
          const ms = await run({ brokerUrl: redis.url, workers, concurrency, tasks });
          const key = `${name}/${workers}`;
          times.set(key, [...(times.get(key) ?? []), ms]);
          log(`${name}, ${workers} worker${workers === 1 ? '' : 's'} × ${concurrency}, run ${i + 1}/${repeat}: ${tasks} tasks in ${(ms / 1000).toFixed(2)} s`);
        }
      }
    }
    for (const workers of workerCounts) {
      for (const [name] of runners) {
        const sorted = [...times.get(`${name}/${workers}`)].sort((a, b) => a - b);
        const best = sorted[0];
        const median = sorted[Math.floor((sorted.length - 1) / 2)];
        rows.push({ name, workers, concurrency, tasks, runs: sorted.length, seconds: best / 1000, perSecond: tasks / (best / 1000), medianPerSecond: tasks / (median / 1000) });
      }
    }
  } finally {
    if (redis.child) killTree(redis.child.pid);
  }
  const ratios = workerCounts.flatMap((workers) => {
    const a = rows.find((r) => r.name === 'arbiter redis' && r.workers === workers);
    const b = rows.find((r) => r.name === 'bullmq' && r.workers === workers);
    return a && b ? [{ workers, concurrency, ratio: a.perSecond / b.perSecond, medianRatio: a.medianPerSecond / b.medianPerSecond }] : [];
  });
  return { rows, ratios };
}

function parseArgs(argv) {
  const o = { tasks: 20_000, concurrency: 16, workerCounts: [1, 2], repeat: 3, only: null, json: false, roundTrip: false, samples: 1000 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--tasks') o.tasks = Number(argv[++i]);
    else if (a === '--concurrency') o.concurrency = Number(argv[++i]);
    else if (a === '--workers') o.workerCounts = argv[++i].split(',').map(Number);
    else if (a === '--repeat') o.repeat = Math.max(1, Number(argv[++i]));
    else if (a === '--only') o.only = argv[++i].split(',');
    else if (a === '--json') o.json = true;
    else if (a === '--round-trip') o.roundTrip = true;
    else if (a === '--samples') o.samples = Math.max(50, Number(argv[++i]));
    else throw new Error(`unknown argument ${a}: node bench/tasks.mjs [--tasks K] [--concurrency C] [--workers 1,2] [--repeat N] [--only spool,redis,bullmq] [--round-trip [--samples K]] [--json]`);
  }
  return o;
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  if (o.roundTrip) {
    const rt = await benchRoundTrip({ samples: o.samples, workers: o.workerCounts.at(-1), concurrency: o.concurrency, log: (m) => process.stderr.write(m + '\n') });
    if (o.json) process.stdout.write(JSON.stringify({ cpus: os.availableParallelism(), ...rt }, null, 2) + '\n');
    else printRoundTripTable(rt);
    return;
  }
  const { rows, ratios } = await benchTasks({ ...o, log: (m) => process.stderr.write(m + '\n') });
  if (o.json) {
    process.stdout.write(JSON.stringify({ cpus: os.availableParallelism(), rows, ratios }, null, 2) + '\n');
    return;
  }
  printTaskTable(rows, ratios, o.repeat);
}

/** The task-throughput table, also printed by `npm run bench` (bench/run.mjs). */
export function printTaskTable(rows, ratios, repeat) {
  const table = [
    ['consumer', 'workers', 'concurrency', 'tasks', 'best s', 'tasks/s (best)', 'tasks/s (median)'],
    ...rows.map((r) => [
      r.name,
      String(r.workers),
      String(r.concurrency),
      String(r.tasks),
      r.seconds.toFixed(2),
      Math.round(r.perSecond).toLocaleString('en-US'),
      Math.round(r.medianPerSecond).toLocaleString('en-US'),
    ]),
  ];
  const widths = table[0].map((_, i) => Math.max(...table.map((r) => r[i].length)));
  process.stdout.write(`\nno-op task throughput, best of ${repeat} (${os.availableParallelism()} CPUs, node ${process.version}, load ${os.loadavg()[0].toFixed(1)})\n\n`);
  for (const r of table) process.stdout.write(r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ') + '\n');
  process.stdout.write('\n');
  for (const r of ratios)
    process.stdout.write(`arbiter-redis / BullMQ at ${r.workers} × ${r.concurrency}: ${r.ratio.toFixed(2)}× (best), ${r.medianRatio.toFixed(2)}× (median)\n`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  main().then(
    () => process.exit(0),
    (err) => {
      process.stderr.write(`bench/tasks.mjs: ${err.stack ?? err}\n`);
      process.exit(1);
    },
  );
}
