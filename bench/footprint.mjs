// What a server costs beside its app (SPEC §11): proportional memory (PSS, from
// /proc/PID/smaps_rollup, summed over the whole process tree) after 3 s idle, and the time
// from start to the first answered request, for arbiter -k http and -k h11, Node's cluster and
// PM2 cluster mode, each with 4 workers serving examples/hello.js. The servers take turns in
// every round (the start that goes first moves one along each round), one at a time, so that
// a start never competes with another start for the 2 cores; each figure is the median of the
// rounds. Arbiter rows also time a HUP: from the signal until every worker is a new one.
//
//   node bench/footprint.mjs [--rounds R] [--workers W]       (also part of `npm run bench`)
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { descendants } from './cpu.mjs';
import { freePort, killAllTracked, sleep } from './proc.mjs';
import { HELLO, arbiterRow, nodeRow, pm2Row } from './rows.mjs';

const IDLE_MS = 3000;

/** The servers compared, `workers` each; the first is the baseline. */
function servers(workers) {
  return [
    nodeRow(`node cluster x${workers}`, 'footprint', 'cluster.mjs', [String(workers)], [], { env: { NODE_CLUSTER_SCHED_POLICY: '' } }),
    arbiterRow(`arbiter http -w ${workers}`, 'footprint', HELLO, ['-k', 'http', '-w', String(workers)], [], { hup: true }),
    arbiterRow(`arbiter h11 -w ${workers}`, 'footprint', HELLO, ['-k', 'h11', '-w', String(workers)], [], { hup: true }),
    pm2Row(`pm2 cluster -i ${workers}`, 'footprint', [], {}, workers),
  ];
}

/** PSS in kB of one process, or null when it is gone or unreadable. */
function pss(pid) {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

function answers(port) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false, timeout: 500 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode >= 200 && res.statusCode < 300));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

/** ms until fn() is true (polling every 5 ms), or null after `ms`. */
async function timeUntil(fn, ms) {
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    if (await fn()) return performance.now() - t0;
    await sleep(5);
  }
  return null;
}

/** The root's children that serve: for PM2 the daemon's, for the others the root's own. */
function workerPids(root) {
  return descendants(root).filter((p) => {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === root;
    } catch {
      return false;
    }
  });
}

async function measure(row, workers) {
  const port = await freePort();
  const t0 = performance.now();
  const server = await row.start(port);
  try {
    // PM2's `start` returns once its daemon launched the app; the clock runs from before it.
    const first = await timeUntil(() => answers(port), 30_000);
    if (first == null) throw new Error(`${row.name}: no answer within 30 s`);
    const startMs = performance.now() - t0;
    await timeUntil(() => workerPids(server.pid).length >= workers, 15_000);
    await sleep(IDLE_MS);
    const kids = workerPids(server.pid);
    const tree = [server.pid, ...descendants(server.pid)];
    const perWorker = kids.map(pss).filter((x) => x != null);
    const out = {
      startMs,
      masterKB: pss(server.pid),
      workerKB: perWorker.length ? perWorker.reduce((a, b) => a + b, 0) / perWorker.length : null,
      totalKB: tree.map(pss).reduce((a, b) => a + (b ?? 0), 0),
      workers: kids.length,
    };
    if (row.hup) {
      const before = new Set(kids);
      process.kill(server.pid, 'SIGHUP');
      out.hupMs = await timeUntil(async () => {
        const now = workerPids(server.pid);
        return now.length === workers && now.every((p) => !before.has(p)) && (await answers(port));
      }, 30_000);
    }
    return out;
  } finally {
    await server.stop();
  }
}

function median(xs) {
  const v = xs.filter((x) => x != null && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
}

export async function benchFootprint({ rounds = 3, workers = 4, log = () => {} } = {}) {
  const rows = servers(workers);
  const samples = new Map(rows.map((r) => [r.name, []]));
  for (let round = 0; round < rounds; round++) {
    for (let j = 0; j < rows.length; j++) {
      const row = rows[(round + j) % rows.length];
      try {
        const m = await measure(row, workers);
        samples.get(row.name).push(m);
        log(`round ${round + 1}/${rounds}: ${row.name}: start ${m.startMs.toFixed(0)} ms, master ${(m.masterKB / 1024).toFixed(1)} MB, worker ${(m.workerKB / 1024).toFixed(1)} MB` + (m.hupMs != null ? `, HUP ${m.hupMs.toFixed(0)} ms` : ''));
      } catch (err) {
        log(`round ${round + 1}/${rounds}: ${row.name}: ${err.message}`);
      }
    }
  }
  const figures = Object.fromEntries(
    rows.map((r) => {
      const s = samples.get(r.name);
      const pick = (k) => median(s.map((x) => x[k]));
      return [r.name, { rounds: s.length, startMs: pick('startMs'), masterKB: pick('masterKB'), workerKB: pick('workerKB'), totalKB: pick('totalKB'), hupMs: pick('hupMs') }];
    }),
  );
  const base = figures[rows[0].name];
  const ratios = Object.fromEntries(
    rows.slice(1).map((r) => {
      const f = figures[r.name];
      const q = (a, b) => (a != null && b ? a / b : null);
      return [r.name.replace(` x${workers}`, ''), { worker: q(f.workerKB, base.workerKB), master: q(f.masterKB, base.masterKB), total: q(f.totalKB, base.totalKB), start: q(f.startMs, base.startMs) }];
    }),
  );
  return { workers, rounds, baseline: rows[0].name, figures, ratios };
}

export function printFootprint(fp) {
  const mb = (kb) => (kb == null ? '-' : (kb / 1024).toFixed(1));
  const x = (r) => (r == null ? '-' : r.toFixed(2) + 'x');
  console.log(`\n== footprint: ${fp.workers} workers serving examples/hello.js, PSS after 3 s idle and start to first 200, medians of ${fp.rounds} rounds; ratios vs ${fp.baseline}`);
  const head = ['server', 'total MB', 'x', 'master MB', 'x', 'worker MB', 'x', 'start ms', 'x', 'HUP ms'];
  const lines = Object.entries(fp.figures).map(([name, f]) => {
    const r = fp.ratios[name.replace(` x${fp.workers}`, '')] ?? {};
    return [name, mb(f.totalKB), x(r.total), mb(f.masterKB), x(r.master), mb(f.workerKB), x(r.worker), f.startMs == null ? '-' : f.startMs.toFixed(0), x(r.start), f.hupMs == null ? '-' : f.hupMs.toFixed(0)];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  for (const l of [head, ...lines]) console.log(l.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  '));
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const args = process.argv.slice(2);
  const opt = (name, d) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : d);
  process.on('SIGINT', () => {
    killAllTracked();
    process.exit(130);
  });
  benchFootprint({ rounds: opt('--rounds', 3), workers: opt('--workers', 4), log: (m) => process.stderr.write(m + '\n') }).then(
    (fp) => {
      printFootprint(fp);
      killAllTracked();
      process.exit(0);
    },
    (err) => {
      process.stderr.write(`bench/footprint.mjs: ${err.stack ?? err}\n`);
      killAllTracked();
      process.exit(1);
    },
  );
}
