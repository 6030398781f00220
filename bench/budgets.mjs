// The budgets `npm run bench` checks (SPEC §11 and issue 13): each is a ratio read from this
// run's results, against the limit it must stay within. Printed last, one line each, as
// PASS / MISS, or n/a when the run did not measure it (BENCH_ONLY, a row that failed).
// A budget is added here, next to the row that measures it. `info` lines have no limit (h11
// as a fraction of the fixed-bytes servers: on net.Socket's streams, and on the raw handle).

/** req/CPU-s of `name` / the group's baseline, for one load. */
function perCpu(results, groups, group, name, load, base = groups[group]?.baseline) {
  const of = (n) => results.find((r) => r.group === group && r.name === n)?.loads.find((l) => l.load === load && !l.error)?.reqPerCpuSecond;
  const a = of(name);
  const b = of(base);
  return a && b ? a / b : null;
}

const CEILING = 'raw handle (ceiling)';
const RAW_NET = 'raw net';

export const BUDGETS = [
  { what: 'worker PSS / cluster worker (-w 4, after 3 s idle)', max: 1.15, read: (run) => run.footprint?.ratios?.['arbiter http -w 4']?.worker },
  { what: 'master PSS / cluster primary', max: 1.3, read: (run) => run.footprint?.ratios?.['arbiter http -w 4']?.master },
  { what: 'start to first 200 / cluster (-w 4)', max: 1.3, read: (run) => run.footprint?.ratios?.['arbiter http -w 4']?.start },
  { what: 'h11 keep-alive / bare node:http (req per CPU-s)', min: 1.8, read: (run) => perCpu(run.results, run.groups, 'plain', 'arbiter h11 -w 1', 'keep-alive') },
  { what: 'h11 keep-alive, body read via data/end / bare', min: 1.8, read: (run) => perCpu(run.results, run.groups, 'body', 'arbiter h11 -w 1', 'keep-alive') },
  { what: 'h11 new connection per request / bare', min: 1.1, read: (run) => perCpu(run.results, run.groups, 'plain', 'arbiter h11 -w 1', 'new conn') },
  { what: 'h11 8-deep pipelining / bare', min: 6, read: (run) => perCpu(run.results, run.groups, 'plain', 'arbiter h11 -w 1', 'pipeline 8') },
  { what: 'info: h11 keep-alive / raw net', info: true, read: (run) => perCpu(run.results, run.groups, 'plain', 'arbiter h11 -w 1', 'keep-alive', RAW_NET) },
  { what: 'info: h11 keep-alive / raw handle (ceiling)', info: true, read: (run) => perCpu(run.results, run.groups, 'plain', 'arbiter h11 -w 1', 'keep-alive', CEILING) },
  { what: 'info: h11 pipeline 8 / raw handle (ceiling)', info: true, read: (run) => perCpu(run.results, run.groups, 'plain', 'arbiter h11 -w 1', 'pipeline 8', CEILING) },
  { what: 'Hono on h11 / @hono/node-server', min: 1.8, read: (run) => perCpu(run.results, run.groups, 'hono', 'arbiter h11 -w 1', 'keep-alive') },
  { what: 'Express on h11 / Express on node:http', min: 1.5, read: (run) => perCpu(run.results, run.groups, 'express', 'arbiter h11 -w 1', 'keep-alive') },
  { what: 'WebSocket echo on -k http / ws on node:http', min: 0.95, read: (run) => perCpu(run.results, run.groups, 'ws', 'arbiter http -w 1', 'ws echo') },
  { what: 'WebSocket echo on -k h11 / ws on node:http', min: 1.0, read: (run) => perCpu(run.results, run.groups, 'ws', 'arbiter h11 -w 1', 'ws echo') },
  { what: 'tasks: arbiter on Redis / BullMQ, equal concurrency (2 workers)', min: 4, read: (run) => run.tasks?.ratios?.find((r) => r.workers === 2)?.ratio },
  { what: 'tasks: spool with 2 workers / 1 worker', min: 1.5, read: (run) => spoolScaling(run.tasks) },
];

function spoolScaling(tasks) {
  const at = (w) => tasks?.rows?.find((r) => r.name === 'arbiter spool' && r.workers === w)?.perSecond;
  return at(1) && at(2) ? at(2) / at(1) : null;
}

/** [{ what, limit, value, verdict }] for this run. */
export function checkBudgets(run) {
  return BUDGETS.map((b) => {
    let value = null;
    try {
      value = b.read(run) ?? null;
    } catch {
      value = null;
    }
    const verdict = value == null ? 'n/a' : b.info ? 'info' : (b.max != null ? value <= b.max : value >= b.min) ? 'PASS' : 'MISS';
    return { what: b.what, limit: b.info ? 'no limit' : b.max != null ? `<= ${b.max}x` : `>= ${b.min}x`, value, verdict };
  });
}

export function printBudgets(checked) {
  console.log('\n== budgets (issue 13, SPEC §11): this run against each limit');
  const width = Math.max(...checked.map((c) => c.what.length));
  for (const c of checked) console.log(`${c.verdict.padEnd(4)}  ${c.what.padEnd(width)}  ${(c.value == null ? '-' : c.value.toFixed(2) + 'x').padStart(7)}  (${c.limit})`);
}
