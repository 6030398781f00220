/**
 * Schedules (`schedule: [...]`, src/scheduler.ts): cron expressions read by croner (five and
 * six fields, time zones), each tick enqueued exactly once by several arbiters sharing a
 * broker, missed runs caught up only when asked, the next run in `arbiter status`.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { before, test } from 'node:test';
import { compileSchedules } from '../src/scheduler.ts';
import { DEFAULTS } from '../src/core/settings.ts';
import { BIN, serve, sleep, startRedis, stop, tmpDir, waitFor, writeFiles, type LogLine, type Running } from './helpers.ts';
import { readRecord } from './fixtures/tasks/env.ts';

let redisUrl = '';
before(async () => {
  redisUrl = await startRedis();
});

const HANDLERS = `
import { appendFileSync } from 'node:fs';
export const handlers = { tick: async (p, ctx) => { appendFileSync(process.env.TASK_RECORD, 'done ' + ctx.id + ' ' + ctx.attempt + ' ' + process.pid + '\\n'); } };
`;

function cli(args: string[], cwd: string) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ARBITER_')));
  return spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 30_000, env, cwd });
}

test('cron expressions: five and six fields, time zones and DST by croner; bad ones are config errors', async () => {
  const [five, six, berlin] = await compileSchedules({
    queue: ['default'],
    schedule: [
      { cron: '*/5 * * * *', task: 'a' },
      { cron: '*/10 * * * * *', task: 'b', queue: 'high' },
      { cron: '30 2 * * *', task: 'c', tz: 'Europe/Berlin', name: 'nightly' },
    ],
  });
  const at = new Date('2024-01-01T00:00:01Z');
  assert.equal(five!.cron.nextRun(at)!.toISOString(), '2024-01-01T00:05:00.000Z');
  assert.equal(six!.cron.nextRun(at)!.toISOString(), '2024-01-01T00:00:10.000Z');
  assert.equal(five!.queue, 'default');
  assert.equal(six!.queue, 'high');
  assert.equal(five!.name, 'a@*/5 * * * *');
  assert.equal(berlin!.name, 'nightly');
  // 02:30 does not exist in Berlin on 2024-03-31 (the clocks jump to 03:00): it runs at 03:00 CEST.
  assert.equal(berlin!.cron.nextRun(new Date('2024-03-30T12:00:00Z'))!.toISOString(), '2024-03-31T01:00:00.000Z');
  assert.equal(berlin!.cron.nextRun(new Date('2024-01-10T12:00:00Z'))!.toISOString(), '2024-01-11T01:30:00.000Z');
  // Keys are stable across arbiters and differ between schedules.
  const again = await compileSchedules({ queue: ['default'], schedule: [{ cron: '*/5 * * * *', task: 'a' }] });
  assert.equal(again[0]!.key, five!.key);
  assert.notEqual(five!.key, six!.key);
  await assert.rejects(compileSchedules({ ...DEFAULTS, schedule: [{ cron: '61 * * * *', task: 'a' }] }, 'x.mjs'), /invalid value "61 \* \* \* \*" for schedule\[0\]\.cron \(x\.mjs\): Invalid value for minute: 61/);

  const dir = tmpDir('arbiter-schedule-bad-');
  writeFiles(dir, { 't.mjs': HANDLERS });
  const cases: [string, RegExp][] = [
    [`[{ cron: '* * * * *', task: 'tick', tx: 'UTC' }]`, /unknown key "tx" in schedule\[0\] \(c\.mjs\) — did you mean "tz"\?/],
    [`[{ cron: '* * * * *', task: 'tick', tz: 'Mars/Olympus' }]`, /invalid value "Mars\/Olympus" for schedule\[0\]\.tz \(c\.mjs\): expected an IANA time zone/],
    [`[{ cron: '* * *', task: 'tick' }]`, /invalid value "\* \* \*" for schedule\[0\]\.cron \(c\.mjs\): expected a cron expression of five fields/],
    [`[{ cron: '99 * * * *', task: 'tick' }]`, /schedule\[0\]\.cron \(c\.mjs\): Invalid value for minute: 99/],
    [`{ cron: '* * * * *' }`, /invalid value .* for schedule \(c\.mjs\): expected a list/],
  ];
  for (const [schedule, expected] of cases) {
    writeFiles(dir, { 'c.mjs': `export default { app: 't.mjs:handlers', workerClass: 'task', schedule: ${schedule} };\n` });
    const out = cli(['-c', 'c.mjs', '--check-config'], dir);
    assert.equal(out.status, 2, out.stderr);
    assert.match(out.stderr, expected);
  }
});

function setup(broker: 'redis' | 'spool', label: string, schedule: string) {
  const dir = tmpDir(`arbiter-schedule-${label}-`);
  const url = broker === 'redis' ? redisUrl : `spool:${path.join(dir, 'spool')}`;
  const queue = `sched-${label}-${process.pid}`;
  const config = (extra = '') => `export default {
    app: 't.mjs:handlers', workerClass: 'task', broker: ${JSON.stringify(url)}, queue: ${JSON.stringify(queue)}, gracefulTimeout: 3,
    schedule: [${schedule}], ${extra}
  };\n`;
  writeFiles(dir, { 't.mjs': HANDLERS, 'a.config.mjs': config(`controlSocket: 'a.sock'`), 'b.config.mjs': config(), 'catchup.config.mjs': config() });
  const record = path.join(dir, 'record.txt');
  const start = (file: string) => serve(['-c', file], { cwd: dir, env: { TASK_RECORD: record } });
  return { dir, record, start, config };
}

const enqueuedBy = (r: Running) => r.logs().filter((l: LogLine) => l.event === 'schedule_enqueued').map((l) => String(l.task));
const tickOf = (id: string) => Date.parse(id.slice(id.lastIndexOf('@') + 1));

for (const [broker, seconds] of [['redis', 10], ['spool', 4]] as const) {
  test(`${broker}: a schedule every second on two arbiters sharing one broker for ${seconds} s: each tick enqueued exactly once`, { timeout: 60_000 }, async () => {
    const s = setup(broker, `pair-${broker}`, `{ cron: '* * * * * *', task: 'tick', name: 'every-second' }`);
    const [a, b] = await Promise.all([s.start('a.config.mjs'), s.start('b.config.mjs')]);
    let stoppedAt = 0;
    const startedAt = Date.now();
    try {
      if (broker === 'redis') {
        // status shows the next run.
        const st = cli(['status', '--json', '--control-socket', 'a.sock'], s.dir);
        assert.equal(st.status, 0, st.stderr);
        const [sched] = JSON.parse(st.stdout).schedules;
        assert.equal(sched.name, 'every-second');
        assert.equal(sched.cron, '* * * * * *');
        const next = Date.parse(sched.next);
        assert.ok(next > Date.now() - 100 && next <= Date.now() + 1100, `next run ${sched.next}`);
        const human = cli(['status', '--control-socket', 'a.sock'], s.dir);
        assert.match(human.stdout, /^schedule every-second: \* \* \* \* \* \* -> tick on sched-pair-redis-\d+; next \d{4}-\d\d-\d\dT/m);
      }
      await sleep(seconds * 1000);
    } finally {
      stoppedAt = Date.now();
      await Promise.all([stop(a), stop(b)]);
    }
    const fromA = enqueuedBy(a);
    const fromB = enqueuedBy(b);
    const all = [...fromA, ...fromB];
    assert.equal(new Set(all).size, all.length, `a tick enqueued twice: ${all.sort().join(' ')}`);
    // Both were up the whole time: every second in between was enqueued, by one of them.
    const ticks = all.map(tickOf).sort((x, y) => x - y);
    const first = Math.ceil(startedAt / 1000) * 1000;
    const last = Math.floor(stoppedAt / 1000) * 1000 - 1000;
    for (let t = first; t <= last; t += 1000) assert.ok(ticks.includes(t), `tick ${new Date(t).toISOString()} missing: ${all.sort().join(' ')}`);
    assert.ok(ticks.length >= seconds - 1, `${ticks.length} ticks in ${seconds} s`);
    assert.ok(fromA.length > 0 || fromB.length > 0);
    // What the workers ran is what was enqueued.
    await waitFor(() => new Set(readRecord(s.record).map((l) => l.id)).size >= all.length || null, 5000, 'the ticks run').catch(() => undefined);
    for (const id of new Set(readRecord(s.record).map((l) => l.id))) assert.ok(all.includes(id), `ran ${id}, which no arbiter says it enqueued`);
  });
}

test('catchUp: a run missed while no arbiter was up is enqueued once on start, only when asked', { timeout: 60_000 }, async () => {
  const plain = `{ cron: '* * * * * *', task: 'tick', name: 'catchy' }`;
  const s = setup('spool', 'catchup', plain);
  writeFiles(s.dir, { 'catchup.config.mjs': s.config().replace("name: 'catchy' }", "name: 'catchy', catchUp: true }") });
  // First run: ticks are enqueued and remembered by the broker.
  const first = await s.start('b.config.mjs');
  await waitFor(() => enqueuedBy(first).length >= 1, 5000, 'a first tick');
  await stop(first);
  const lastTick = Math.max(...enqueuedBy(first).map(tickOf));
  await sleep(2500);
  // Without catchUp, nothing missed is replayed.
  const plainRun = await s.start('b.config.mjs');
  await sleep(300);
  await stop(plainRun);
  assert.equal(plainRun.logs().filter((l) => l.event === 'schedule_catch_up').length, 0);
  assert.ok(enqueuedBy(plainRun).every((id) => tickOf(id) > lastTick + 2000), 'only new ticks');
  await sleep(2500);
  // With catchUp: the latest missed tick, once.
  const caught = await s.start('catchup.config.mjs');
  try {
    const line = await caught.waitLog((l) => l.event === 'schedule_catch_up', 5000, 'a catch-up');
    const missed = Date.parse(String(line.tick));
    assert.ok(missed > Math.max(lastTick, ...enqueuedBy(plainRun).map(tickOf)), 'a tick from the gap');
    assert.ok(missed <= Date.now());
    await caught.waitLog((l) => l.event === 'schedule_enqueued' && l.why === 'catch-up', 5000, 'the catch-up enqueued');
    assert.equal(caught.logs().filter((l) => l.event === 'schedule_catch_up').length, 1);
  } finally {
    await stop(caught);
  }
});
