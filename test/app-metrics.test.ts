// The app's own prom-client metrics on the master's /metrics (issue 12): collected from every
// worker, merged as prom-client's cluster aggregation merges them, with no code in the app.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import client from 'prom-client';
import { ROOT, freePort, request, serve, sleep, stop, tmpDir, waitFor, writeFiles } from './helpers.ts';
import { aggregate, renderAppMetrics } from '../src/app-metrics.ts';
import type { AppMetric } from '../src/core/protocol.ts';

/** Two registries as two workers would have them. */
async function twoWorkers(): Promise<AppMetric[][]> {
  const out: AppMetric[][] = [];
  for (const k of [1, 2]) {
    const r = new client.Registry();
    const c = new client.Counter({ name: 'jobs_total', help: 'Jobs.\nDone.', labelNames: ['kind'], registers: [r] });
    c.inc({ kind: 'a' }, 10 * k);
    c.inc({ kind: 'b "q"' }, k);
    new client.Gauge({ name: 'queue_sum', help: 'summed', registers: [r] }).set(k * 3);
    new client.Gauge({ name: 'queue_max', help: 'max', aggregator: 'max', registers: [r] }).set(k * 5);
    new client.Gauge({ name: 'queue_min', help: 'min', aggregator: 'min', registers: [r] }).set(k * 5);
    new client.Gauge({ name: 'queue_first', help: 'first', aggregator: 'first', registers: [r] }).set(k * 7);
    new client.Gauge({ name: 'queue_avg', help: 'average', aggregator: 'average', registers: [r] }).set(k * 2);
    new client.Gauge({ name: 'queue_omit', help: 'omitted', aggregator: 'omit', registers: [r] }).set(1);
    const h = new client.Histogram({ name: 'latency_seconds', help: 'Latency.', buckets: [0.1, 1], labelNames: ['route'], registers: [r] });
    h.observe({ route: '/' }, 0.05 * k);
    h.observe({ route: '/' }, 2);
    client.collectDefaultMetrics({ register: r });
    out.push((await r.getMetricsAsJSON()) as unknown as AppMetric[]);
  }
  return out;
}

test('the merge is prom-client\'s own: same text as AggregatorRegistry.aggregate for every aggregator', async () => {
  const workers = await twoWorkers();
  const theirs = await client.AggregatorRegistry.aggregate(workers as never).metrics();
  const ours = renderAppMetrics(aggregate(workers));
  // prom-client writes NaN as "Nan"; Prometheus reads both.
  const norm = (text: string) => text.replace(/ Nan$/gm, ' NaN').split('\n').filter(Boolean).sort();
  assert.deepEqual(norm(ours), norm(theirs));
  const merged = new Map(aggregate(workers).map((m) => [m.name, m]));
  assert.deepEqual(merged.get('jobs_total')!.values.map((v) => v.value), [30, 3]);
  assert.equal(merged.get('queue_max')!.values[0]!.value, 10);
  assert.equal(merged.get('queue_min')!.values[0]!.value, 5);
  assert.equal(merged.get('queue_first')!.values[0]!.value, 7);
  assert.equal(merged.get('queue_avg')!.values[0]!.value, 3);
  assert.equal(merged.has('queue_omit'), false);
  assert.match(ours, /^latency_seconds_bucket\{le="\+Inf",route="\/"\} 4$/m);
  assert.match(ours, /^jobs_total\{kind="b \\"q\\""\} 3$/m);
  assert.match(ours, /^# HELP jobs_total Jobs\.\\nDone\.$/m);
});

const APP = `
import client from 'prom-client';
const hits = new client.Counter({ name: 'app_hits_total', help: 'Requests the app saw.', labelNames: ['route'] });
const busy = new client.Gauge({ name: 'app_busy_max', help: 'Busiest worker.', aggregator: 'max' });
const seconds = new client.Histogram({ name: 'app_work_seconds', help: 'Work.', buckets: [0.5, 1] });
export default (req, res) => {
  hits.inc({ route: req.url });
  busy.set(process.pid % 1000);
  seconds.observe(0.25);
  res.writeHead(200, { 'x-pid': String(process.pid) });
  res.end('ok');
};
`;

function metricValue(text: string, series: string): number | null {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line ? Number(line.slice(series.length + 1)) : null;
}

test('100 requests over 2 workers: the app\'s prom-client counter is 100 on the master; workers that leave keep their counts', { timeout: 60_000 }, async () => {
  // The app's own prom-client, resolved from its directory (a directory outside ours).
  const dir = tmpDir();
  writeFiles(dir, { 'app.mjs': APP, 'package.json': '{"type":"module"}' });
  mkdirSync(path.join(dir, 'node_modules'));
  symlinkSync(path.join(ROOT, 'node_modules', 'prom-client'), path.join(dir, 'node_modules', 'prom-client'));
  const port = await freePort();
  const mport = await freePort();
  const r = await serve(['app.mjs', '-w', '2', '-b', `127.0.0.1:${port}`, '--metrics-bind', `127.0.0.1:${mport}`], { cwd: dir });
  const scrape = async () => (await request({ port: mport }, { path: '/metrics' })).body;
  try {
    const pids = new Set<string>();
    for (let i = 0; i < 100; i++) pids.add(String((await request({ port }, { path: '/' })).headers['x-pid']));
    assert.equal(pids.size, 2, 'both workers served');
    const text = await scrape();
    assert.equal(metricValue(text, 'app_hits_total{route="/"}'), 100);
    assert.equal(metricValue(text, 'app_work_seconds_count'), 100);
    assert.equal(metricValue(text, 'app_work_seconds_bucket{le="0.5"}'), 100);
    assert.equal(metricValue(text, 'app_busy_max'), Math.max(...[...pids].map((p) => Number(p) % 1000)));
    assert.match(text, /^# TYPE app_hits_total counter$/m);
    assert.match(text, /^arbiter_workers\{pool="main",state="serving"\} 2$/m, "arbiter's own series are there too");

    // A reload replaces both workers: their counts stay; the new workers add to them.
    r.signal('SIGHUP');
    await r.waitLog((l) => l.event === 'reload', 10_000, 'the reload');
    await waitFor(() => r.workers().every((p) => !pids.has(String(p))) && r.workers().length === 2, 20_000, 'both workers replaced');
    for (let i = 0; i < 10; i++) await request({ port }, { path: '/' });
    const after = await waitFor(async () => {
      const t = await scrape();
      return metricValue(t, 'app_hits_total{route="/"}') === 110 ? t : null;
    }, 10_000, 'the counter at 110 after the reload');
    assert.equal(metricValue(after, 'app_work_seconds_count'), 110);
    // A gauge is the live workers' only.
    assert.ok(!pids.has(String(metricValue(after, 'app_busy_max'))));

    // A worker killed outright keeps what it had reported by the last scrape.
    const victim = r.workers()[0]!;
    process.kill(victim, 'SIGKILL');
    await waitFor(() => r.workers().length === 2 && !r.workers().includes(victim), 10_000, 'the killed worker replaced');
    await sleep(1500);
    assert.equal(metricValue(await scrape(), 'app_hits_total{route="/"}'), 110);
  } finally {
    await stop(r);
  }
});
