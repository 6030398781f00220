#!/usr/bin/env node
// `npm run bench`: start the servers of a group on free 127.0.0.1 ports, load them with wrk in
// interleaved one-second slices, and report requests/s and requests per server CPU-second (CPU
// summed over the server's whole process tree), each as a ratio to its group's baseline.
// See bench/README.md.
//
// Env: BENCH_DURATION (seconds per measured load, default 5), BENCH_WORKERS (N, default 2),
//      BENCH_ONLY (substring, or several separated by commas: run only rows whose
//      "group: name" contains one, e.g. BENCH_ONLY=hono or BENCH_ONLY='plain: bare,plain: arbiter'),
//      BENCH_CONNECTIONS (default 50), BENCH_THREADS (wrk threads, default 1),
//      BENCH_ROUNDS (default 1: repeat the whole list and report medians),
//      BENCH_TASK_REPEAT (default 3: runs of each task row; its best and median are reported).
import { mkdirSync, writeFileSync, readFileSync, statSync, readdirSync, existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { ensureWrk, runWrk } from './wrk.mjs';
import { runWsLoad } from './ws-load.mjs';
import { sampleTree, perProcessSeconds, cpuSeconds, selfChildrenTicks, machineBusyTicks, CLK_TCK, isAlive } from './cpu.mjs';
import { freePort, waitUntilAnswers, refreshTracked, killAllTracked, tail } from './proc.mjs';
import { ROWS, GROUPS, N, ROOT } from './rows.mjs';

const DURATION = Math.max(1, Math.min(120, Number(process.env.BENCH_DURATION) || 5));
const WARMUP = 1;
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS) || 50;
// One wrk thread by default. The machine has 2 cores shared by wrk and the server: a single
// wrk thread (one epoll loop) already drives far more hello-world requests than one Node
// process can answer, and a second thread would only take CPU away from the server under
// test (and add scheduling noise). Requests per server CPU-second is the fair metric here
// because the load generator and the server compete for the same cores.
const THREADS = Number(process.env.BENCH_THREADS) || 1;
const ONLY = (process.env.BENCH_ONLY ?? '')
  .toLowerCase()
  .split(',')
  .map((x) => x.trim())
  .filter(Boolean);
const RESULTS = path.join(ROOT, 'bench', 'results');
// Rounds: run the whole row list this many times and report the median of each number (the
// error counts are summed). Helps on a machine where other jobs come and go.
const ROUNDS = Math.max(1, Math.min(10, Number(process.env.BENCH_ROUNDS) || 1));

let currentWrk = null;
function bail(signal) {
  process.stderr.write(`\nbench: ${signal}: stopping every server we started ...\n`);
  killAllTracked();
  const code = signal === 'SIGINT' ? 130 : 143;
  const w = currentWrk;
  if (!w || w.exitCode !== null || w.signalCode !== null) process.exit(code);
  // Reap wrk before leaving so it does not linger as a zombie.
  w.once('exit', () => process.exit(code));
  w.kill('SIGKILL');
  setTimeout(() => process.exit(code), 1000).unref();
}
process.on('SIGINT', () => bail('SIGINT'));
process.on('SIGTERM', () => bail('SIGTERM'));
process.on('SIGHUP', () => bail('SIGHUP'));
process.on('exit', () => killAllTracked());
process.on('uncaughtException', (err) => {
  process.stderr.write(`bench: ${err.stack ?? err}\n`);
  killAllTracked();
  process.exit(1);
});

/** Newest mtime (ms) of files under dir with one of the extensions. */
function newest(dir, exts) {
  let best = 0;
  if (!existsSync(dir)) return 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) best = Math.max(best, newest(p, exts));
    else if (exts.some((x) => e.name.endsWith(x))) best = Math.max(best, statSync(p).mtimeMs);
  }
  return best;
}

function checkBuild() {
  const cli = path.join(ROOT, 'dist', 'src', 'cli.js');
  if (!existsSync(cli)) return 'dist/ is missing: run `npm run build` first (arbiter rows will fail)';
  const src = Math.max(newest(path.join(ROOT, 'src'), ['.ts']), newest(path.join(ROOT, 'workers'), ['.ts']));
  const dist = newest(path.join(ROOT, 'dist'), ['.js']);
  if (src > dist) return 'dist/ is older than src/ or workers/: arbiter rows run the last build (`npm run build` to refresh)';
  return null;
}

const available = new Map();
/** Is this arbiter worker class built in? (`--check-config` loads config and app, binds nothing.) */
function workerClassAvailable(cls) {
  if (!available.has(cls)) {
    const r = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'arbiter'), 'examples/hello.js:handler', '-k', cls, '--check-config'], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 20000,
    });
    const why = (r.stderr || r.stdout || '').trim().split('\n').pop().replace(/^arbiter: error: /, '').replace(/: expected .*/, '');
    available.set(cls, r.status === 0 ? null : why || `exit ${r.status}`);
  }
  return available.get(cls);
}

function wrkVersion() {
  const r = spawnSync('wrk', ['--version'], { encoding: 'utf8' });
  const m = /wrk\s+(\S+)/.exec((r.stdout || '') + (r.stderr || ''));
  return m ? `wrk ${m[1]}` : 'wrk';
}

const windowMs = (a, b) => Number(b.at - a.at) / 1e6;
const round = (x, d = 0) => (x == null || !Number.isFinite(x) ? null : Number(x.toFixed(d)));

/** Machine-wide counters sampled around one wrk run (noise gauge and wrk's own CPU). */
function gauges() {
  return { machine: machineBusyTicks(), self: selfChildrenTicks() };
}

/** Loads one server for `secs` with wrk and samples its process tree around the window. */
async function measureSlice(server, url, load, secs) {
  const opts = { connections: CONNECTIONS, threads: THREADS, headers: load.headers, script: load.script, scriptArgs: load.scriptArgs, onChild: (c) => (currentWrk = c) };
  refreshTracked();
  const g0 = gauges();
  const before = sampleTree(server.pid);
  const during = load.during ? load.during(server, secs).catch((e) => [{ error: String(e) }]) : null;
  const w = await (load.ws ? runWsLoad : runWrk)(url, { ...opts, duration: secs });
  const after = sampleTree(server.pid);
  const g1 = gauges();
  currentWrk = null;
  const events = during ? await during : undefined;
  for (const e of events ?? []) if (e.atMs != null && e.atMs + e.tookMs > windowMs(before, after)) e.late = true;
  const cpu = cpuSeconds(before, after);
  const benchChildren = (g1.self - g0.self) / CLK_TCK;
  return {
    w,
    before,
    after,
    cpu,
    windowS: Number(after.at - before.at) / 1e9,
    benchChildren,
    // CPU the rest of the machine used meanwhile (other jobs, kernel threads): a noise gauge.
    other: (g1.machine - g0.machine) / CLK_TCK - cpu - benchChildren,
    events,
  };
}

async function warmUp(url, load) {
  await (load.ws ? runWsLoad : runWrk)(url, { connections: CONNECTIONS, threads: THREADS, headers: load.headers, script: load.script, scriptArgs: load.scriptArgs, duration: WARMUP, onChild: (c) => (currentWrk = c) });
  currentWrk = null;
}

/** One load's numbers from one or more slices of the same server. */
function loadResult(load, slices) {
  const sum = (f) => slices.reduce((a, x) => a + f(x), 0);
  const requests = sum((x) => x.w.requests);
  const wrkSeconds = sum((x) => x.w.seconds);
  // A hand-over (USR2) takes the measured master out of the tree mid-window: no CPU figure then.
  const cpuKnown = slices.every((x) => x.cpu >= 0);
  const cpu = cpuKnown ? sum((x) => x.cpu) : null;
  const windowS = sum((x) => x.windowS);
  const errors = Object.fromEntries(Object.keys(slices[0].w.errors).map((k) => [k, sum((x) => x.w.errors[k])]));
  const last = slices.at(-1);
  return {
    load: load.name,
    rps: round(requests / (wrkSeconds || windowS), 1),
    seconds: round(wrkSeconds, 2),
    slices: slices.length,
    requests,
    wrkSeconds,
    windowSeconds: round(windowS, 3),
    serverCpuSeconds: cpuKnown ? round(cpu, 2) : null,
    serverCpuShare: cpuKnown ? round(cpu / windowS, 2) : null, // cores busy on average
    reqPerCpuSecond: cpu > 0 ? round(requests / cpu, 0) : null,
    socketErrors: sum((x) => x.w.socketErrors),
    errors,
    non2xx3xx: sum((x) => x.w.non2xx3xx),
    // each figure (avg, p50, p99 …) is the median of the slices' own
    latencyMs: Object.fromEntries(Object.keys(slices[0].w.latencyMs).map((k) => [k, round(median(slices.map((x) => x.w.latencyMs[k])), 3)])),
    benchChildrenCpuSeconds: round(sum((x) => x.benchChildren), 2), // wrk (+ pm2 CLI calls)
    otherCpuShare: cpuKnown ? round(sum((x) => x.other) / windowS, 2) : null, // cores used by everything else on the machine
    processesBefore: slices[0].before.pids.length,
    processesAfter: last.after.pids.length,
    perProcess: perProcessSeconds(slices[0].before, last.after),
    events: slices.flatMap((x) => x.events ?? []),
  };
}

/** Starts a row's server; returns { result, server } with result.error/skipped set on failure. */
async function startRow(row) {
  const result = { name: row.name, group: row.group, loads: [] };
  if (row.requires) {
    const why = workerClassAvailable(row.requires);
    if (why) {
      result.skipped = `-k ${row.requires} not available in this build (${why})`;
      return { result, server: null };
    }
  }
  const port = await freePort();
  result.port = port;
  let server;
  const t0 = Date.now();
  try {
    server = await row.start(port);
    result.pid = server.pid;
    await waitUntilAnswers(server, port);
    result.startMs = Date.now() - t0;
  } catch (err) {
    result.error = `failed to start: ${err.message}`;
    if (server?.logFile) result.logTail = tail(server.logFile);
    if (server?.stop) result.stop = await server.stop();
    return { result, server: null };
  }
  refreshTracked();
  return { result, server, url: `http://127.0.0.1:${port}/` };
}

/** False (and the row marked) when the server died; a USR2 row's first master leaves on purpose. */
function stillServing(row, { result, server }) {
  if (row.rootMayExit || isAlive(server.pid)) return true;
  result.error = 'server exited during the run';
  result.logTail = tail(server.logFile);
  return false;
}

async function stopRow({ result, server }) {
  const s0 = Date.now();
  const stop = await server.stop();
  result.stop = { ...stop, ms: Date.now() - s0 };
  if (server.exited) {
    const e = await Promise.race([server.exited, new Promise((r) => setTimeout(() => r(null), 100))]);
    if (e) result.stop.exit = e.signal ?? e.code;
  }
}

/** A row on its own: each load is one window of BENCH_DURATION (or the load's minimum). */
async function runRow(row) {
  const run = await startRow(row);
  if (!run.server) return run.result;
  for (const load of row.loads) {
    process.stderr.write(`bench: ${row.group}: ${row.name} [${load.name}] ...\n`);
    try {
      await warmUp(run.url, load);
      const secs = Math.max(DURATION, load.minDuration ?? 0);
      run.result.loads.push(loadResult(load, [await measureSlice(run.server, run.url, load, secs)]));
    } catch (err) {
      run.result.loads.push({ load: load.name, error: err.message });
    }
    if (!stillServing(row, run)) break;
  }
  await stopRow(run);
  return run.result;
}

/**
 * A group of rows to compare, measured side by side: every server of the group is started,
 * then each load's window is cut into BENCH_DURATION one-second slices that go round the
 * servers in turn (starting one further each time), so slow minutes on a shared machine hit
 * the baseline and the others alike. Each row's numbers sum its slices.
 */
async function runInterleaved(rows) {
  const runs = [];
  for (const row of rows) runs.push({ row, ...(await startRow(row)), slices: new Map() });
  const live = () => runs.filter((r) => r.server && !r.dead);
  const loadNames = [];
  for (const row of rows) for (const l of row.loads) if (!loadNames.includes(l.name)) loadNames.push(l.name);
  for (const name of loadNames) {
    const takers = live().filter((r) => r.row.loads.some((l) => l.name === name));
    const loadOf = (r) => r.row.loads.find((l) => l.name === name);
    process.stderr.write(`bench: ${rows[0].group} [${name}]: ${takers.map((r) => r.row.name).join(', ')} ...\n`);
    for (const r of takers) {
      try {
        await warmUp(r.url, loadOf(r));
      } catch (err) {
        r.result.loads.push({ load: name, error: err.message });
        r.failed = name;
      }
    }
    for (let i = 0; i < DURATION; i++) {
      for (let j = 0; j < takers.length; j++) {
        const r = takers[(i + j) % takers.length];
        if (r.dead || r.failed === name) continue;
        try {
          const slice = await measureSlice(r.server, r.url, loadOf(r), 1);
          if (!r.slices.has(name)) r.slices.set(name, []);
          r.slices.get(name).push(slice);
        } catch (err) {
          r.result.loads.push({ load: name, error: err.message });
          r.failed = name;
        }
        if (!stillServing(r.row, r)) r.dead = true;
      }
    }
    for (const r of takers) if (r.failed !== name && r.slices.has(name)) r.result.loads.push(loadResult(loadOf(r), r.slices.get(name)));
  }
  for (const r of runs) if (r.server) await stopRow(r);
  return runs.map((r) => r.result);
}

function median(xs) {
  const v = xs.filter((x) => x != null && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
}

/** One result from the same row's results in several rounds: medians, summed errors. */
function combineRounds(rs) {
  const first = rs[0];
  const out = { ...first, rounds: rs, loads: [] };
  out.error = rs.map((r) => r.error).find(Boolean);
  out.skipped = rs.map((r) => r.skipped).find(Boolean);
  const stops = rs.map((r) => r.stop).filter(Boolean);
  out.stop = stops.find((s) => !s.graceful) ?? stops[0];
  const names = [...new Set(rs.flatMap((r) => r.loads.map((l) => l.load)))];
  for (const name of names) {
    const ls = rs.map((r) => r.loads.find((l) => l.load === name)).filter((l) => l && !l.error);
    if (!ls.length) {
      out.loads.push(rs.map((r) => r.loads.find((l) => l.load === name)).find(Boolean));
      continue;
    }
    const sum = (f) => ls.reduce((a, l) => a + f(l), 0);
    out.loads.push({
      load: name,
      rounds: ls.length,
      rps: median(ls.map((l) => l.rps)),
      reqPerCpuSecond: median(ls.map((l) => l.reqPerCpuSecond)),
      serverCpuSeconds: median(ls.map((l) => l.serverCpuSeconds)),
      socketErrors: sum((l) => l.socketErrors),
      errors: Object.fromEntries(Object.keys(ls[0].errors).map((k) => [k, sum((l) => l.errors[k])])),
      non2xx3xx: sum((l) => l.non2xx3xx),
      otherCpuShare: median(ls.map((l) => l.otherCpuShare)),
      events: ls.flatMap((l) => l.events ?? []),
    });
  }
  return out;
}

// ---------------------------------------------------------------- output

function ratio(x, base) {
  return x != null && base ? x / base : null;
}

function fmtNum(x) {
  return x == null ? '-' : Math.round(x).toLocaleString('en-US');
}
function fmtRatio(x) {
  return x == null ? '-' : x.toFixed(2) + 'x';
}
function fmtErrors(l) {
  if (!l.socketErrors) return '0';
  const e = Object.entries(l.errors)
    .filter(([, v]) => v)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  return `${l.socketErrors} (${e})`;
}

function table(headers, rows, rightAlign) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells) =>
    cells
      .map((c, i) => (rightAlign[i] ? (c ?? '').padStart(widths[i]) : (c ?? '').padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

function printGroup(group, results) {
  const g = GROUPS[group];
  const base = g.baseline ? results.find((r) => r.name === g.baseline) : null;
  console.log(`\n== ${group}: ${g.title}` + (g.baseline ? `; ratios vs ${g.baseline}` : ''));
  const headers = ['server', 'load', 'req/s', 'x base', 'req/CPU-s', 'x base', 'CPU-s', 'socket errors', 'non-2xx/3xx', 'note'];
  const right = [false, false, true, true, true, true, true, true, true, false];
  const lines = [];
  // Load-major, so the rows to compare sit next to each other.
  const loadOrder = [];
  for (const r of results) for (const l of r.loads) if (!loadOrder.includes(l.load)) loadOrder.push(l.load);
  for (const r of results) {
    if (r.skipped) lines.push([r.name, '', '', '', '', '', '', '', '', `skipped: ${r.skipped}`]);
    else if (r.error && r.loads.length === 0) lines.push([r.name, '', '', '', '', '', '', '', '', `ERROR: ${r.error}`]);
  }
  for (const loadName of loadOrder) {
    const b = base?.loads.find((l) => l.load === loadName && !l.error);
    for (const r of results) {
      const l = r.loads.find((x) => x.load === loadName);
      if (!l) continue;
      if (l.error) {
        lines.push([r.name, loadName, '', '', '', '', '', '', '', `ERROR: ${l.error}`]);
        continue;
      }
      const notes = [];
      if (l.events?.length) notes.push(l.events.map((e) => (e.error ? `error: ${e.error}` : `${e.action} ${e.ok ? 'ok' : 'FAILED'} @${(e.atMs / 1000).toFixed(1)}s (${e.tookMs} ms${e.late ? ', ended after the window' : ''})`)).join('; '));
      if (l.otherCpuShare > 0.15) notes.push(`noisy: others used ${l.otherCpuShare.toFixed(2)} cores`);
      if (l.serverCpuSeconds == null) notes.push('no CPU figure: the measured master handed over to a new one');
      if (r.error && r.loads.at(-1) === l) notes.push(`ERROR: ${r.error}`);
      if (r.stop && !r.stop.graceful && r.loads[0] === l) notes.push(`needed SIGKILL: ${r.stop.leftovers.join(' ')}`);
      if (r.stop?.exit != null && r.stop.exit !== 0 && r.loads[0] === l) notes.push(`exit ${r.stop.exit} on SIGTERM`);
      lines.push([
        r.name,
        loadName,
        fmtNum(l.rps),
        fmtRatio(ratio(l.rps, b?.rps)),
        fmtNum(l.reqPerCpuSecond),
        fmtRatio(ratio(l.reqPerCpuSecond, b?.reqPerCpuSecond)),
        l.serverCpuSeconds?.toFixed(2) ?? '-',
        fmtErrors(l),
        String(l.non2xx3xx),
        notes.join('; '),
      ]);
    }
  }
  console.log(table(headers, lines, right));
  for (const r of results) if (r.logTail) console.log(`  ${r.name} (${r.group}) log tail:\n    ${r.logTail.split('\n').join('\n    ')}`);
}

// ---------------------------------------------------------------- main

async function main() {
  ensureWrk((m) => console.log(m));
  const warn = checkBuild();
  if (warn) console.log(`bench: warning: ${warn}`);
  const rows = ROWS.filter((r) => !ONLY.length || ONLY.some((o) => `${r.group}: ${r.name}`.toLowerCase().includes(o)));
  if (!rows.length && !ONLY.some((o) => ['task', 'round', 'pool', 'footprint', 'memory', 'start'].some((k) => o.includes(k)))) {
    console.log(`bench: no row matches BENCH_ONLY=${process.env.BENCH_ONLY}`);
    return 2;
  }
  console.log(
    `bench: ${rows.length} rows${ROUNDS > 1 ? ` x ${ROUNDS} rounds (medians)` : ''}, ${DURATION}s per load after ${WARMUP}s warm-up, wrk -t${THREADS} -c${CONNECTIONS}, N=${N}, ` +
      `${os.cpus().length} CPUs, node ${process.version}, ${wrkVersion()}`,
  );
  const load1 = Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
  if (load1 > 0.7) console.log(`bench: warning: load average is ${load1} before we start: other work on this machine will skew the numbers (see "noisy" notes)`);
  const started = Date.now();
  const perRound = [];
  for (let round = 1; round <= ROUNDS; round++) {
    if (ROUNDS > 1) process.stderr.write(`bench: round ${round} of ${ROUNDS}\n`);
    perRound.push([]);
    // Groups whose loads only measure are interleaved; those that act during the window
    // (reloads) run one row at a time.
    for (const group of Object.keys(GROUPS)) {
      const rs = rows.filter((r) => r.group === group);
      if (!rs.length) continue;
      if (rs.some((r) => r.loads.some((l) => l.during))) for (const row of rs) perRound.at(-1).push(await runRow(row));
      else perRound.at(-1).push(...(await runInterleaved(rs)));
    }
  }
  const key = (r) => `${r.group}: ${r.name}`;
  const results = ROUNDS === 1 ? perRound[0] : perRound[0].map((r0) => combineRounds(perRound.map((rs) => rs.find((r) => key(r) === key(r0)))));

  for (const group of Object.keys(GROUPS)) {
    const rs = results.filter((r) => r.group === group);
    if (rs.length) printGroup(group, rs);
  }
  // The task class: no-op throughput on the spool and on Redis, beside BullMQ on the same Redis.
  let tasks = null;
  if (!ONLY.length || ONLY.some((o) => 'tasks'.includes(o) || o.includes('task'))) {
    const { benchTasks, printTaskTable } = await import('./tasks.mjs');
    const repeat = Math.max(1, Number(process.env.BENCH_TASK_REPEAT) || 3);
    process.stderr.write('bench: tasks: no-op throughput (spool, redis, bullmq) ...\n');
    try {
      tasks = await benchTasks({ tasks: Number(process.env.BENCH_TASKS) || 20_000, repeat, log: (m) => process.stderr.write(`bench: tasks: ${m}\n`) });
      console.log('\n== tasks: no-op task throughput; ratio is arbiter on Redis / BullMQ at equal total concurrency');
      printTaskTable(tasks.rows, tasks.ratios, repeat);
    } catch (err) {
      console.log(`\n== tasks: ERROR: ${err.message}`);
    }
  }
  // Tasks with results: enqueue → result round trip, beside BullMQ's waitUntilFinished.
  let roundTrip = null;
  if (!ONLY.length || ONLY.some((o) => o.includes('task') || o.includes('round'))) {
    const { benchRoundTrip, printRoundTripTable } = await import('./tasks.mjs');
    process.stderr.write('bench: round trip: enqueue → result (arbiter, bullmq) ...\n');
    try {
      roundTrip = await benchRoundTrip({ samples: Number(process.env.BENCH_ROUND_TRIPS) || 1000, workers: N, log: (m) => process.stderr.write(`bench: round trip: ${m}\n`) });
      console.log('\n== tasks: enqueue → result round trip, one at a time; ratio is arbiter / BullMQ (below 1 is faster)');
      printRoundTripTable(roundTrip);
    } catch (err) {
      console.log(`\n== round trip: ERROR: ${err.message}`);
    }
  }
  // Pools: one arbiter running a web and a task pool, against the same two as separate arbiters.
  let pools = null;
  if (!ONLY.length || ONLY.some((o) => o.includes('pool'))) {
    const { benchPools, printPoolsTable } = await import('./pools.mjs');
    process.stderr.write('bench: pools: one arbiter with two pools, two arbiters ...\n');
    try {
      pools = await benchPools({ duration: DURATION, repeat: Math.max(2, ROUNDS), log: (m) => process.stderr.write(`bench: pools: ${m}\n`) });
      console.log('\n== pools: web + tasks under one master, against two masters; ratio is one / two');
      printPoolsTable(pools);
    } catch (err) {
      console.log(`\n== pools: ERROR: ${err.message}`);
    }
  }
  // Memory and start-up beside Node's cluster and PM2 at -w 4 (bench/footprint.mjs).
  let footprint = null;
  if (!ONLY.length || ONLY.some((o) => o.includes('footprint') || o.includes('memory') || o.includes('start'))) {
    const { benchFootprint, printFootprint } = await import('./footprint.mjs');
    process.stderr.write('bench: footprint: memory (PSS) and start-up at -w 4 ...\n');
    try {
      footprint = await benchFootprint({ rounds: Math.max(3, ROUNDS), log: (m) => process.stderr.write(`bench: footprint: ${m}\n`) });
      printFootprint(footprint);
    } catch (err) {
      console.log(`\n== footprint: ERROR: ${err.message}`);
    }
  }
  const { checkBudgets, printBudgets } = await import('./budgets.mjs');
  const budgets = checkBudgets({ results, groups: GROUPS, tasks, footprint });
  printBudgets(budgets);
  const seconds = (Date.now() - started) / 1000;
  console.log(`\nbench: done in ${seconds.toFixed(0)}s. req/CPU-s = requests / CPU seconds of the server's whole process tree during the measured window.`);

  mkdirSync(RESULTS, { recursive: true });
  const out = {
    startedAt: new Date(started).toISOString(),
    seconds,
    settings: { rounds: ROUNDS, duration: DURATION, warmup: WARMUP, connections: CONNECTIONS, threads: THREADS, workers: N, only: ONLY.length ? ONLY : null },
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, node: process.version, wrk: wrkVersion(), clkTck: CLK_TCK, platform: `${os.platform()} ${os.release()}` },
    groups: GROUPS,
    results,
    tasks,
    roundTrip,
    pools,
    footprint,
    budgets,
  };
  writeFileSync(path.join(RESULTS, 'latest.json'), JSON.stringify(out, null, 2) + '\n');
  console.log(`bench: raw results in bench/results/latest.json`);
  return 0;
}

main().then(
  (code) => {
    killAllTracked();
    process.exit(code);
  },
  (err) => {
    process.stderr.write(`bench: ${err.stack ?? err}\n`);
    killAllTracked();
    process.exit(1);
  },
);
