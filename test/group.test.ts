/**
 * A worker group driven through its whole life with fake worker processes (the `launch`
 * it is given): what it starts, retires, rolls back and counts, with no process spawned.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import { createLogger } from '../src/core/logging.js';
import { DEFAULTS, type Settings } from '../src/core/settings.ts';
import { createHooks } from '../src/core/hooks.ts';
import { EXIT } from '../src/core/protocol.ts';
import { WorkerGroup } from '../src/group.ts';

type Fake = ChildProcess & { sent: { t: string; graceful?: boolean }[]; signals: string[]; die(code: number | null, signal?: NodeJS.Signals): void; say(msg: object): void };

function setup(target: number, over: Partial<Settings> = {}) {
  let nextPid = 1000;
  const children: Fake[] = [];
  const log = createLogger({ level: 'silent', errorLog: '-', role: 'master' });
  const settings = { ...DEFAULTS, app: 'x.js', ...over } as Settings;
  const group = new WorkerGroup({
    name: 'main', settings, configFile: null, listeners: [], target, hooks: createHooks({}, log),
    log, nextAge: (() => { let a = 0; return () => ++a; })(), hookTarget: null,
    launch: () => {
      const c = new EventEmitter() as Fake;
      Object.assign(c, { pid: nextPid++, connected: true, sent: [], signals: [] });
      c.send = ((msg: { t: string }) => (c.sent.push(msg), true)) as Fake['send'];
      c.kill = ((sig: string) => (c.signals.push(sig), true)) as Fake['kill'];
      c.die = (code, signal = undefined) => c.emit('exit', code, signal ?? null);
      c.say = (msg) => c.emit('message', msg);
      children.push(c);
      return c;
    },
  });
  const events: string[] = [];
  for (const e of ['ready', 'reloaded', 'reloadFailed', 'fatal', 'degraded', 'recovered', 'drained'] as const) group.events.on(e, (...a: unknown[]) => events.push([e, ...a.filter((x) => typeof x === 'string')].join(':')));
  const boot = (c: Fake) => c.say({ t: 'booted', pid: c.pid, appKind: 'node' });
  const states = () => [...group.workers.values()].map((w) => `${w.pid}:${w.state}`);
  return { group, children, events, boot, states };
}

test('starts the target, is ready when all serve, replaces a dead worker at once', () => {
  const { group, children, events, boot, states } = setup(2);
  group.maintain();
  assert.equal(children.length, 2);
  boot(children[0]!);
  assert.deepEqual(events, []);
  boot(children[1]!);
  assert.deepEqual(events, ['ready']);
  children[0]!.die(1);
  assert.equal(children.length, 3, 'replaced at once');
  assert.equal(group.restarts.crash, 1);
  assert.deepEqual(states(), ['1001:serving', '1002:booting']);
});

test('a reload retires the serving workers and lets one go per new one serving', () => {
  const { group, children, events, boot, states } = setup(2);
  group.maintain();
  children.forEach(boot);
  group.reload({ settings: group.settings, configFile: null, listeners: [], target: 2, hooks: group.hooks });
  assert.deepEqual(states(), ['1000:retiring', '1001:retiring', '1002:booting', '1003:booting']);
  boot(children[2]!);
  assert.deepEqual(states(), ['1000:stopping', '1001:retiring', '1002:serving', '1003:booting'], 'the oldest leaves first');
  assert.deepEqual(children[0]!.sent.at(-1), { t: 'stop', graceful: true, keepAccepting: false });
  boot(children[3]!);
  assert.deepEqual(events, ['ready', 'reloaded']);
  children[0]!.die(0);
  children[1]!.die(0);
  assert.equal(group.restarts.reload, 2);
  assert.equal(children.length, 4, 'nothing more started');
});

test('a reload whose new code cannot boot keeps the old workers serving', () => {
  const { group, children, events, boot, states } = setup(2);
  group.maintain();
  children.forEach(boot);
  group.reload({ settings: group.settings, configFile: null, listeners: [], target: 2, hooks: group.hooks });
  children[2]!.say({ t: 'bootError', message: 'app module x.js failed while loading: SyntaxError' });
  children[2]!.die(EXIT.BOOT);
  assert.deepEqual(events, ['ready', 'reloadFailed:app module x.js failed while loading: SyntaxError']);
  // The sibling booting the same broken code is let go too.
  assert.deepEqual(states(), ['1000:serving', '1001:serving', '1003:stopping']);
  assert.equal(group.restarts.crash, 0, 'a failed boot is not a crash');
  children[3]!.die(EXIT.BOOT);
  assert.deepEqual(states(), ['1000:serving', '1001:serving']);
  group.maintain();
  assert.equal(children.length, 4, 'no new attempt during the hold');
});

test('a failed reload gives back the worker count it came with, and lets its siblings go', () => {
  const { group, children, boot, states } = setup(2);
  group.maintain();
  children.forEach(boot);
  // The reloaded config asks for 3 workers; its code does not load.
  group.reload({ settings: group.settings, configFile: null, listeners: [], target: 3, hooks: group.hooks });
  assert.equal(children.length, 5);
  children[2]!.die(EXIT.BOOT);
  assert.equal(group.target, 2);
  assert.deepEqual(states(), ['1000:serving', '1001:serving', '1003:stopping', '1004:stopping']);
});

test('a first boot that fails is fatal; a stop drains', () => {
  const { group, children, events } = setup(1);
  group.maintain();
  children[0]!.say({ t: 'bootError', message: 'cannot find app module' });
  children[0]!.die(EXIT.BOOT);
  assert.deepEqual(events, ['fatal:cannot find app module']);
  group.stopAll(false, false);
  assert.deepEqual(events, ['fatal:cannot find app module', 'drained']);
});

test('a worker killed for timeout and then caught by a reload is counted once, as a timeout', () => {
  const { group, children, boot } = setup(1, { timeout: 1 });
  group.maintain();
  boot(children[0]!);
  const w = group.workers.get(1000)!;
  w.lastSeen = Date.now() - 5000;
  group.supervise(Date.now());
  assert.deepEqual(children[0]!.signals, ['SIGKILL']);
  group.reload({ settings: group.settings, configFile: null, listeners: [], target: 1, hooks: group.hooks });
  assert.equal(w.state, 'stopping');
  assert.equal(w.reason, 'timeout');
  children[0]!.die(null, 'SIGKILL');
  assert.deepEqual(group.restarts, { timeout: 1, memory: 0, 'max-requests': 0, crash: 0, reload: 0 });
});

test('scale down lets the oldest go; workers that die quickly back off', () => {
  const { group, children, boot, states } = setup(3);
  group.maintain();
  children.forEach(boot);
  group.scale(1);
  assert.deepEqual(states(), ['1000:stopping', '1001:stopping', '1002:serving']);
  children[2]!.die(1);
  assert.equal(children.length, 4, 'the first quick death is replaced at once');
  children[3]!.die(1);
  assert.equal(children.length, 4, 'the second starts a backoff');
  assert.equal(group.restarts.crash, 2);
});

test('restart limiting: too many crashes degrade the pool; it keeps restarting and recovers once its workers live', async () => {
  const { group, children, events, boot } = setup(2, { maxRestarts: 2, restartWindow: 1 });
  group.maintain();
  children.forEach(boot);
  children[0]!.die(1);
  children[1]!.die(1);
  assert.deepEqual(events, ['ready'], '2 deaths: at the limit, not past it');
  assert.equal(group.degraded, false);
  boot(children[2]!);
  children[2]!.die(1);
  assert.equal(group.degraded, true);
  assert.match(events.at(-1)!, /^degraded:pool main is degraded: 3 workers died unexpectedly within 1 s \(maxRestarts 2\)$/);
  // It keeps starting workers, one at a time after the backoff.
  const before = children.length;
  await new Promise((r) => setTimeout(r, 600));
  for (let i = 0; i < 3; i++) {
    group.supervise(Date.now());
    for (const c of children) if (group.workers.get(c.pid!)?.state === 'booting') boot(c);
  }
  assert.ok(children.length > before, 'still restarting');
  assert.equal([...group.workers.values()].filter((w) => w.state === 'serving').length, 2);
  assert.equal(group.degraded, true, 'serving, but not for long yet');
  // Every worker has served RECOVER_AFTER_MS and the deaths left the 1 s window: recovered.
  group.supervise(Date.now() + 10_000);
  assert.equal(group.degraded, false);
  assert.equal(events.at(-1), 'recovered');
});

test('restart limiting: a reload starts a fresh count', () => {
  const { group, children, boot } = setup(1, { maxRestarts: 1, restartWindow: 60 });
  group.maintain();
  boot(children[0]!);
  children[0]!.die(1);
  group.reload({ settings: group.settings, configFile: null, listeners: [], target: 1, hooks: group.hooks });
  const next = children.at(-1)!;
  boot(next);
  next.die(1);
  assert.equal(group.degraded, false, 'the death before the reload does not count');
});
