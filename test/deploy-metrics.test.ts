// Prometheus metrics from the master on --metrics-bind (issue 6, part 5).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { FIXTURES, freePort, request, safeKill, serve, stop, waitFor, tmpDir, writeFiles } from './helpers.ts';

const PID_APP = path.join(FIXTURES, 'apps', 'pid.js');

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}
interface Family {
  name: string;
  type: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
  help: string | null;
  samples: Sample[];
}

/**
 * A strict parser for the Prometheus text exposition format 0.0.4: every line is a HELP, a
 * TYPE or a sample; names and label names are valid; label values are quoted with only the
 * three escapes; values are floats; a family's TYPE comes before its samples, once; a
 * family's samples are contiguous; histograms have cumulative buckets ending in +Inf equal
 * to _count, and a _sum. Throws on the first violation, naming the line.
 */
function parseProm(text: string): Map<string, Family> {
  const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
  const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
  if (!text.endsWith('\n')) throw new Error('the exposition must end with a newline');
  const families = new Map<string, Family>();
  const closed = new Set<string>();
  let current: string | null = null;
  const familyOf = (sample: string): string => {
    for (const suffix of ['_bucket', '_sum', '_count']) {
      const base = sample.slice(0, -suffix.length);
      if (sample.endsWith(suffix) && families.get(base)?.type === 'histogram') return base;
    }
    return sample;
  };
  const enter = (name: string, lineNo: number) => {
    if (current !== name) {
      if (closed.has(name)) throw new Error(`line ${lineNo}: samples of ${name} are not contiguous`);
      if (current) closed.add(current);
      current = name;
    }
  };
  const parseValue = (v: string, lineNo: number): number => {
    if (v === '+Inf') return Infinity;
    if (v === '-Inf') return -Infinity;
    if (v === 'NaN') return NaN;
    if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(v)) throw new Error(`line ${lineNo}: bad value "${v}"`);
    return Number(v);
  };
  text.slice(0, -1).split('\n').forEach((line, i) => {
    const lineNo = i + 1;
    if (line === '') throw new Error(`line ${lineNo}: empty line`);
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!m) {
        if (/^# (HELP|TYPE)/.test(line)) throw new Error(`line ${lineNo}: malformed ${line}`);
        return; // a comment
      }
      const [, kind, name, rest] = m as unknown as [string, string, string, string];
      if (!NAME.test(name)) throw new Error(`line ${lineNo}: bad metric name ${name}`);
      let fam = families.get(name);
      if (!fam) families.set(name, (fam = { name, type: 'untyped', help: null, samples: [] }));
      if (fam.samples.length) throw new Error(`line ${lineNo}: ${kind} for ${name} after its samples`);
      enter(name, lineNo);
      if (kind === 'TYPE') {
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(rest)) throw new Error(`line ${lineNo}: bad type ${rest}`);
        if (fam.type !== 'untyped') throw new Error(`line ${lineNo}: second TYPE for ${name}`);
        fam.type = rest as Family['type'];
      } else {
        if (fam.help !== null) throw new Error(`line ${lineNo}: second HELP for ${name}`);
        if (/\\[^\\n]/.test(rest.replace(/\\\\/g, ''))) throw new Error(`line ${lineNo}: bad escape in HELP`);
        fam.help = rest;
      }
      return;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( -?\d+)?$/.exec(line);
    if (!m) throw new Error(`line ${lineNo}: not a sample: ${line}`);
    const [, name, , labelText, value] = m as unknown as [string, string, string | undefined, string | undefined, string];
    const labels: Record<string, string> = {};
    if (labelText !== undefined && labelText !== '') {
      let rest = labelText;
      while (rest.length) {
        const lm = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,?)/.exec(rest);
        if (!lm || !LABEL.test(lm[1]!)) throw new Error(`line ${lineNo}: bad labels {${labelText}}`);
        if (lm[1]! in labels) throw new Error(`line ${lineNo}: label ${lm[1]} twice`);
        labels[lm[1]!] = lm[2]!.replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
        rest = rest.slice(lm[0].length);
        if (!lm[3] && rest.length) throw new Error(`line ${lineNo}: missing comma in labels`);
      }
    }
    const famName = familyOf(name);
    let fam = families.get(famName);
    if (!fam) families.set(famName, (fam = { name: famName, type: 'untyped', help: null, samples: [] }));
    enter(famName, lineNo);
    fam.samples.push({ name, labels, value: parseValue(value, lineNo) });
  });
  for (const fam of families.values()) {
    if (fam.type === 'counter' || fam.type === 'gauge') {
      for (const s of fam.samples) if (s.name !== fam.name) throw new Error(`${fam.name}: sample ${s.name} does not belong`);
    }
    if (fam.type === 'counter') for (const s of fam.samples) if (!(s.value >= 0)) throw new Error(`${fam.name}: negative counter`);
    if (fam.type === 'histogram') {
      const buckets = fam.samples.filter((s) => s.name === `${fam.name}_bucket`);
      const count = fam.samples.find((s) => s.name === `${fam.name}_count`);
      const sum = fam.samples.find((s) => s.name === `${fam.name}_sum`);
      if (!count || !sum) throw new Error(`${fam.name}: histogram without _count or _sum`);
      let prevLe = -Infinity;
      let prev = 0;
      for (const b of buckets) {
        if (!('le' in b.labels)) throw new Error(`${fam.name}: bucket without le`);
        const le = b.labels.le === '+Inf' ? Infinity : Number(b.labels.le);
        if (!(le > prevLe)) throw new Error(`${fam.name}: buckets not in increasing le order`);
        if (b.value < prev) throw new Error(`${fam.name}: buckets not cumulative`);
        prevLe = le;
        prev = b.value;
      }
      if (prevLe !== Infinity) throw new Error(`${fam.name}: no +Inf bucket`);
      if (prev !== count.value) throw new Error(`${fam.name}: +Inf bucket ${prev} != _count ${count.value}`);
    }
  }
  return families;
}

function value(f: Map<string, Family>, family: string, labels: Record<string, string> = {}, sample = family): number {
  const fam = f.get(family);
  assert.ok(fam, `no family ${family}`);
  const s = fam.samples.find((x) => x.name === sample && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  assert.ok(s, `no sample ${sample}${JSON.stringify(labels)}`);
  return s.value;
}

async function scrape(port: number): Promise<Map<string, Family>> {
  const r = await request({ port }, { path: '/metrics' });
  assert.equal(r.status, 200);
  assert.match(String(r.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  return parseProm(r.body);
}

test('the strict parser rejects what Prometheus would', () => {
  assert.throws(() => parseProm('a 1'), /newline/);
  assert.throws(() => parseProm('a{b="c} 1\n'), /labels/);
  assert.throws(() => parseProm('# TYPE a counter\na 1\nb 2\na 3\n'), /contiguous/);
  assert.throws(() => parseProm('# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n'), /cumulative/);
  assert.throws(() => parseProm('# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 1\n'), /_count/);
  assert.throws(() => parseProm('a one\n'), /bad value/);
  assert.ok(parseProm('# HELP a x\n# TYPE a counter\na{l="q\\"uote"} 1e3\n').get('a'));
});

test('/metrics parses as Prometheus text; request counters and the histogram rise; restarts rise when a worker is killed', { timeout: 60_000 }, async () => {
  const port = await freePort();
  const mport = await freePort();
  const r = await serve([PID_APP, '-w', '2', '-b', `127.0.0.1:${port}`, '--metrics-bind', `127.0.0.1:${mport}`, '--heartbeat-interval', '0.2']);
  try {
    await r.waitLog((l) => l.event === 'metrics_listening', 5000, 'metrics listening');
    let m = await scrape(mport);
    for (const f of ['arbiter_workers', 'arbiter_worker_restarts_total', 'arbiter_requests_total', 'arbiter_request_duration_seconds', 'arbiter_master_uptime_seconds', 'arbiter_target_workers'])
      assert.ok(m.has(f), `missing ${f}`);
    assert.equal(m.get('arbiter_workers')!.type, 'gauge');
    assert.equal(m.get('arbiter_worker_restarts_total')!.type, 'counter');
    assert.equal(m.get('arbiter_request_duration_seconds')!.type, 'histogram');
    assert.equal(value(m, 'arbiter_workers', { state: 'serving' }), 2);
    assert.equal(value(m, 'arbiter_target_workers'), 2);
    for (const reason of ['timeout', 'memory', 'max-requests', 'crash', 'reload']) assert.equal(value(m, 'arbiter_worker_restarts_total', { reason }), 0);
    assert.ok(value(m, 'arbiter_master_uptime_seconds') > 0);

    // The pid app answers 200; /slow?ms=300 takes its time.
    for (let i = 0; i < 20; i++) assert.equal((await request({ port })).status, 200);
    await request({ port }, { path: '/slow?ms=300' });
    m = await waitFor(async () => {
      const x = await scrape(mport);
      return value(x, 'arbiter_requests_total', { status_class: '2xx' }) >= 21 ? x : null;
    }, 5000, '21 requests counted');
    const ok = value(m, 'arbiter_requests_total', { status_class: '2xx' });
    assert.equal(ok, 21);
    assert.equal(value(m, 'arbiter_requests_total', { status_class: '5xx' }), 0);
    const count = value(m, 'arbiter_request_duration_seconds', {}, 'arbiter_request_duration_seconds_count');
    assert.equal(count, 21);
    // The slow request is over 0.25 s, the others well under it.
    assert.equal(value(m, 'arbiter_request_duration_seconds', { le: '0.25' }, 'arbiter_request_duration_seconds_bucket'), 20);
    assert.equal(value(m, 'arbiter_request_duration_seconds', { le: '0.5' }, 'arbiter_request_duration_seconds_bucket'), 21);
    assert.ok(value(m, 'arbiter_request_duration_seconds', {}, 'arbiter_request_duration_seconds_sum') >= 0.3);

    // Kill a worker: the crash counter rises, and the request total does not go backwards.
    const victim = r.workers()[0]!;
    safeKill(victim, 'SIGKILL');
    m = await waitFor(async () => {
      const x = await scrape(mport);
      return value(x, 'arbiter_worker_restarts_total', { reason: 'crash' }) === 1 && value(x, 'arbiter_workers', { state: 'serving' }) === 2 ? x : null;
    }, 10_000, 'crash counted and worker replaced');
    assert.equal(value(m, 'arbiter_requests_total', { status_class: '2xx' }), ok, 'the dead worker\'s requests still count');
    assert.equal(value(m, 'arbiter_request_duration_seconds', {}, 'arbiter_request_duration_seconds_count'), count);

    for (let i = 0; i < 5; i++) await request({ port });
    await waitFor(async () => value(await scrape(mport), 'arbiter_requests_total', { status_class: '2xx' }) === ok + 5, 5000, '5 more requests');

    // A reload replaces both workers: two reload restarts, and still no step back.
    r.signal('SIGHUP');
    m = await waitFor(async () => {
      const x = await scrape(mport);
      return value(x, 'arbiter_worker_restarts_total', { reason: 'reload' }) === 2 ? x : null;
    }, 15_000, 'two reload restarts');
    assert.equal(value(m, 'arbiter_requests_total', { status_class: '2xx' }), ok + 5);
    assert.equal(value(m, 'arbiter_worker_restarts_total', { reason: 'crash' }), 1);

    // Other paths and methods.
    assert.equal((await request({ port: mport }, { path: '/' })).status, 404);
    assert.equal((await request({ port: mport }, { path: '/metrics', method: 'POST' })).status, 405);
  } finally {
    await stop(r);
  }
});

test('-k h11 counts statuses and the latency histogram as -k http does', { timeout: 60_000 }, async () => {
  const port = await freePort();
  const mport = await freePort();
  const r = await serve([PID_APP, '-k', 'h11', '-w', '2', '-b', `127.0.0.1:${port}`, '--metrics-bind', `127.0.0.1:${mport}`, '--heartbeat-interval', '0.2']);
  try {
    for (let i = 0; i < 49; i++) assert.equal((await request({ port })).status, 200);
    await request({ port }, { path: '/slow?ms=300' });
    const m = await waitFor(async () => {
      const x = await scrape(mport);
      return value(x, 'arbiter_request_duration_seconds', {}, 'arbiter_request_duration_seconds_count') >= 50 ? x : null;
    }, 5000, '50 requests in the histogram');
    assert.equal(value(m, 'arbiter_request_duration_seconds', {}, 'arbiter_request_duration_seconds_count'), 50);
    assert.equal(value(m, 'arbiter_requests_total', { status_class: '2xx' }), 50);
    assert.equal(value(m, 'arbiter_request_duration_seconds', { le: '0.25' }, 'arbiter_request_duration_seconds_bucket'), 49);
    assert.ok(value(m, 'arbiter_request_duration_seconds', {}, 'arbiter_request_duration_seconds_sum') >= 0.3);
  } finally {
    await stop(r);
  }
});

test('task workers export task counters, not HTTP ones', { timeout: 60_000 }, async () => {
  const dir = tmpDir();
  writeFiles(dir, { 'tasks.js': 'export default { async hello() {} };\n' });
  const mport = await freePort();
  const r = await serve(['tasks.js', '-k', 'task', '-w', '1', '--broker', `spool:${path.join(dir, 'spool')}`, '--metrics-bind', `127.0.0.1:${mport}`], { cwd: dir });
  try {
    const m = await waitFor(async () => {
      const x = await scrape(mport);
      return x.has('arbiter_tasks_total') ? x : null;
    }, 5000, 'task families');
    for (const outcome of ['processed', 'failed', 'retried', 'dead']) assert.equal(typeof value(m, 'arbiter_tasks_total', { outcome }), 'number');
    assert.ok(!m.has('arbiter_request_duration_seconds'));
  } finally {
    await stop(r);
  }
});

test('a metrics address in use stops the start with one line and exit 1', { timeout: 30_000 }, async () => {
  const port = await freePort();
  const r = await serve([PID_APP, '-w', '1', '-b', `127.0.0.1:${port}`, '--metrics-bind', `127.0.0.1:${await freePort()}`]);
  try {
    const busy = r.logs().find((l) => l.event === 'metrics_listening')!.address as string;
    const { run } = await import('./helpers.ts');
    const second = run([PID_APP, '-w', '1', '-b', `127.0.0.1:${await freePort()}`, '--metrics-bind', busy]);
    assert.equal((await second.exited).code, 1);
    assert.match(second.stderr(), /metrics: cannot listen on .*EADDRINUSE/);
  } finally {
    await stop(r);
  }
});
