// What the one log costs (issue 12): an app that writes a lot with console.log, served by
// arbiter (every line through a pipe to the master, tagged, written as a JSON line) and by
// Node's cluster with the workers' stdout inherited (lines written straight to the file,
// untagged, unordered). Both write to a file on the same disk. Loopback only, bounded.
//
//   node bench/logs.mjs            (npm run build first; wrk is installed when missing)
//
// flood: one worker prints LINES lines in a loop; time until the last one is in the file,
//        and the CPU seconds of the whole process tree meanwhile.
// per request: wrk keep-alive (50 connections, 1 thread) on an app that logs one line per
//        request, in alternating 1 s slices; req/s and requests per CPU-second of the tree.
import { readFileSync, statSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuSeconds, sampleTree } from './cpu.mjs';
import { freePort, killAllTracked, sleep, startProcess, stopTree, waitUntilAnswers } from './proc.mjs';
import { ensureWrk, runWrk } from './wrk.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const OUT = path.join(ROOT, 'bench', 'results', 'logs');
const LINES = Number(process.env.BENCH_LOG_LINES) || 200_000;
const SLICES = Number(process.env.BENCH_DURATION) || 5;
const WORKERS = Number(process.env.BENCH_WORKERS) || 1;

const SERVERS = [
  {
    name: `arbiter -w ${WORKERS} (tagged, via the master)`,
    start: (port, file) => startProcess('arbiter', process.execPath, [path.join(ROOT, 'bin', 'arbiter'), 'bench/servers/log-app.mjs', '-w', String(WORKERS), '-b', `127.0.0.1:${port}`, '--error-log', file, '-n', `bench-logs-${port}`], { cwd: ROOT, logFile: `${file}.stderr` }),
  },
  {
    name: `node cluster -w ${WORKERS} (stdout inherited)`,
    start: (port, file) => startProcess('cluster', process.execPath, [path.join(ROOT, 'bench', 'servers', 'log-cluster.mjs'), String(port), String(WORKERS)], { cwd: ROOT, logFile: file }),
  },
];

const get = (port, p) => new Promise((resolve, reject) => http.get({ host: '127.0.0.1', port, path: p, agent: false }, (res) => { res.resume(); res.on('end', resolve); }).on('error', reject));
const countFlood = (file) => { try { return (readFileSync(file, 'utf8').match(/flood \d+ /g) ?? []).length; } catch { return 0; } };

async function flood(s, port, file) {
  const before = sampleTree(s.proc.pid);
  const t0 = process.hrtime.bigint();
  await get(port, `/flood?n=${LINES}`);
  const deadline = Date.now() + 120_000;
  while (countFlood(file) < LINES && Date.now() < deadline) await sleep(20);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = cpuSeconds(before, sampleTree(s.proc.pid));
  return { lines: countFlood(file), seconds, cpu, bytes: statSync(file).size };
}

async function main() {
  ensureWrk();
  const servers = [];
  for (const def of SERVERS) {
    const port = await freePort();
    const file = path.join(OUT, `${def.name.split(' ')[0]}-${port}.log`);
    const proc = def.start(port, file);
    await waitUntilAnswers(proc, port);
    servers.push({ ...def, port, file, proc, slices: { requests: 0, cpu: 0 } });
  }
  try {
    console.log(`flood: ${LINES} lines of ~75 characters from one worker, written to a file`);
    for (const s of servers) {
      const r = await flood(s, s.port, s.file);
      console.log(`  ${s.name.padEnd(44)} ${(r.lines / r.seconds).toFixed(0).padStart(8)} lines/s  ${(r.cpu / r.lines * 1e6).toFixed(2).padStart(6)} CPU-µs/line  (${r.lines} lines, ${r.seconds.toFixed(2)} s, ${r.cpu.toFixed(2)} CPU-s)`);
    }
    console.log(`per request: one console.log per request, wrk keep-alive -c 50, ${SLICES} slices of 1 s each`);
    for (const s of servers) await runWrk(`http://127.0.0.1:${s.port}/`, { duration: 1 });
    for (let i = 0; i < SLICES; i++) {
      for (const s of (i % 2 ? [...servers].reverse() : servers)) {
        const before = sampleTree(s.proc.pid);
        const w = await runWrk(`http://127.0.0.1:${s.port}/`, { duration: 1 });
        s.slices.cpu += cpuSeconds(before, sampleTree(s.proc.pid));
        s.slices.requests += w.requests;
      }
    }
    const base = servers[1].slices.requests / servers[1].slices.cpu;
    for (const s of servers) {
      const perCpu = s.slices.requests / s.slices.cpu;
      console.log(`  ${s.name.padEnd(44)} ${(s.slices.requests / SLICES).toFixed(0).padStart(8)} req/s  ${perCpu.toFixed(0).padStart(6)} req/CPU-s  ${(perCpu / base).toFixed(2)}x`);
    }
  } finally {
    for (const s of servers) await stopTree(s.proc.pid);
    killAllTracked();
  }
}

main().catch((err) => {
  console.error(`bench/logs: ${err.stack ?? err}`);
  killAllTracked();
  process.exit(1);
});
