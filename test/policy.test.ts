/**
 * The master's decisions (src/policy.ts) and the worker lifecycle table
 * (src/worker-handle.ts), without processes.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { ChildProcess } from 'node:child_process';
import { test } from 'node:test';
import { inspectorArgs, inspectorLine } from '../src/stack-capture.ts';
import {
  BOOT_FAILURE_HOLD_MS, MAX_DELAY_MS, QUICK_STOP_MS, RECOVER_AFTER_MS, decide, degraded, isStuck, lookWhereStuckAfterMs, replacements, rollback, scaleDown, steadyFor,
  stopGraceMs, toSpawn, withinWindow, BOOT_SLOT_MS, type WorkerView,
} from '../src/policy.ts';
import { LIFECYCLE, WORKER_STATES, WorkerHandle, type Move, type Transition } from '../src/worker-handle.ts';

const w = (age: number, state: WorkerView['state'], retiredBy?: number): WorkerView => ({ age, state, retiredBy });
const ages = (list: WorkerView[]) => list.map((x) => x.age);

test('crash-loop policy: replace at once, then back off doubling, capped, reset by a long life', () => {
  let v = decide({ livedMs: 60_000, quickDeaths: 0 });
  assert.equal(v.delayMs, 0);
  v = decide({ livedMs: 100, quickDeaths: 0 });
  assert.deepEqual([v.quickDeaths, v.delayMs], [1, 0]);
  const delays: number[] = [];
  let q = v.quickDeaths;
  for (let i = 0; i < 12; i++) {
    const next = decide({ livedMs: 100, quickDeaths: q });
    q = next.quickDeaths;
    delays.push(next.delayMs);
  }
  assert.deepEqual(delays.slice(0, 4), [100, 200, 400, 800]);
  assert.equal(delays.at(-1), MAX_DELAY_MS);
  assert.equal(decide({ livedMs: 10_000, quickDeaths: q }).quickDeaths, 0);
  // Killed from outside after serving (kill -9, the OOM killer): replaced at once, whatever its age.
  assert.deepEqual(decide({ livedMs: 100, quickDeaths: 5, killedAfterServing: true }), { quickDeaths: 5, delayMs: 0, quickMs: 5000 });
});

test('toSpawn: what is missing, nothing during a backoff, one at a time in a crash loop, no more booting at once than the CPUs', () => {
  const base = { quickDeaths: 0, now: 1000, nextSpawnAt: 0 };
  assert.equal(toSpawn({ ...base, target: 4, workers: [] }), 4);
  // Retiring and stopping workers are on their way out: they do not count.
  assert.equal(toSpawn({ ...base, target: 2, workers: [w(1, 'serving'), w(2, 'retiring'), w(3, 'stopping')] }), 1);
  assert.equal(toSpawn({ ...base, target: 2, workers: [w(1, 'serving'), w(2, 'booting')] }), 0);
  assert.equal(toSpawn({ ...base, target: 1, workers: [w(1, 'serving'), w(2, 'serving')] }), 0);
  assert.equal(toSpawn({ ...base, target: 3, workers: [], nextSpawnAt: 2000 }), 0);
  assert.equal(toSpawn({ ...base, target: 3, workers: [], quickDeaths: 1 }), 3);
  assert.equal(toSpawn({ ...base, target: 3, workers: [], quickDeaths: 2 }), 1);
  // No more booting at once than bootAtOnce; a boot that takes long gives its place up.
  const spawned = (age: number, state: WorkerView['state'], spawnedAt: number): WorkerView => ({ age, state, spawnedAt });
  assert.equal(toSpawn({ ...base, target: 8, workers: [], bootAtOnce: 2 }), 2);
  assert.equal(toSpawn({ ...base, target: 8, workers: [spawned(1, 'booting', 900), spawned(2, 'serving', 0)], bootAtOnce: 2 }), 1);
  assert.equal(toSpawn({ ...base, target: 8, workers: [spawned(1, 'booting', 900), spawned(2, 'booting', 950)], bootAtOnce: 2 }), 0);
  assert.equal(toSpawn({ ...base, target: 8, workers: [spawned(1, 'booting', 1000 - BOOT_SLOT_MS), spawned(2, 'booting', 950)], bootAtOnce: 2 }), 1);
  assert.equal(toSpawn({ ...base, target: 3, workers: [spawned(1, 'retiring', 0)], bootAtOnce: 8 }), 3);
});

test('scaleDown: the oldest of those beyond the target, serving or booting', () => {
  const list = [w(5, 'serving'), w(2, 'serving'), w(7, 'booting'), w(1, 'retiring'), w(3, 'stopping')];
  assert.deepEqual(ages(scaleDown(list, 1)), [2, 5]);
  assert.deepEqual(ages(scaleDown(list, 3)), []);
  assert.deepEqual(ages(scaleDown(list, 0)), [2, 5, 7]);
});

test('replacements: one old worker leaves per new one serving, oldest first', () => {
  // A reload of 3: nothing new serves yet, so every old worker stays.
  const old = [w(1, 'retiring'), w(2, 'retiring'), w(3, 'retiring')];
  assert.deepEqual(ages(replacements([...old, w(4, 'booting'), w(5, 'booting'), w(6, 'booting')], 3)), []);
  assert.deepEqual(ages(replacements([...old, w(4, 'serving'), w(5, 'booting'), w(6, 'booting')], 3)), [1]);
  assert.deepEqual(ages(replacements([w(3, 'retiring'), w(2, 'retiring'), w(4, 'serving'), w(5, 'serving'), w(6, 'booting')], 3)), [2]);
  assert.deepEqual(ages(replacements([w(3, 'retiring'), w(4, 'serving'), w(5, 'serving'), w(6, 'serving')], 3)), [3]);
  // Capacity never dips: with fewer serving than the target, the old ones stay.
  assert.deepEqual(ages(replacements([w(1, 'retiring'), w(2, 'serving')], 3)), []);
});

test('rollback: a failed reload gives back only the workers it retired', () => {
  const list = [w(1, 'retiring', 2), w(2, 'retiring', 3), w(3, 'retiring', 3), w(4, 'serving'), w(5, 'retiring')];
  assert.deepEqual(ages(rollback(list, 3)), [2, 3]);
  assert.deepEqual(ages(rollback(list, 4)), []);
});

test('stop grace, stuck workers, the hold after a failed reload', () => {
  assert.equal(stopGraceMs(true, 30), 30_000);
  assert.equal(stopGraceMs(false, 30), QUICK_STOP_MS);
  assert.equal(isStuck(10_000, 0, 5), true);
  assert.equal(isStuck(10_000, 6_000, 5), false);
  assert.equal(isStuck(10_000_000, 0, 0), false, 'timeout 0 disables');
  assert.ok(BOOT_FAILURE_HOLD_MS > 0);
});

test('the master looks where a worker is stuck after most of its timeout, never after it, never without one', () => {
  assert.equal(lookWhereStuckAfterMs(30, 1), 18_000, '0.6 of the timeout');
  assert.equal(lookWhereStuckAfterMs(2, 1), 1_800, 'two heartbeats would be 2 s: capped at 0.9 of the timeout');
  assert.equal(lookWhereStuckAfterMs(10, 4), 8_000, 'two missed heartbeats are not a stuck worker');
  assert.equal(lookWhereStuckAfterMs(0, 1), null);
});

test("the inspector's lines are taken out of a worker's stderr, and its address read", () => {
  assert.deepEqual(inspectorLine('Debugger listening on ws://127.0.0.1:40123/0f8e-11aa'), { url: 'ws://127.0.0.1:40123/0f8e-11aa' });
  assert.deepEqual(inspectorLine('For help, see: https://nodejs.org/en/docs/inspector'), {});
  assert.deepEqual(inspectorLine('Debugger attached.'), {});
  assert.equal(inspectorLine('Debugger listening is what my app logs'), null);
  assert.deepEqual(inspectorArgs([], 30), ['--inspect-port=0', '--inspect-publish-uid=stderr']);
  assert.deepEqual(inspectorArgs([], 0), [], 'no timeout, no stack to take');
  assert.deepEqual(inspectorArgs(['--inspect=0.0.0.0:9229'], 30), [], "the user's own inspector is theirs");
});

test('restart limiting: degraded past maxRestarts deaths in the window, recovered only when the workers live again', () => {
  const h = { maxRestarts: 3, degraded: false, steadyMs: null };
  assert.equal(degraded({ ...h, deaths: 3 }), false, 'up to maxRestarts is fine');
  assert.equal(degraded({ ...h, deaths: 4 }), true, 'more than maxRestarts degrades');
  assert.equal(degraded({ ...h, deaths: 99, maxRestarts: 0 }), false, 'maxRestarts 0 turns it off');
  // Once degraded, it stays so until every worker has served a while AND the deaths are back under the limit.
  const d = { ...h, degraded: true };
  assert.equal(degraded({ ...d, deaths: 0, steadyMs: null }), true, 'not every worker serves');
  assert.equal(degraded({ ...d, deaths: 0, steadyMs: RECOVER_AFTER_MS - 1 }), true, 'not for long enough');
  assert.equal(degraded({ ...d, deaths: 4, steadyMs: RECOVER_AFTER_MS * 10 }), true, 'too many deaths still in the window: no flapping');
  assert.equal(degraded({ ...d, deaths: 3, steadyMs: RECOVER_AFTER_MS }), false, 'recovered');
  assert.deepEqual(withinWindow([1000, 5000, 9000], 10_000, 6000), [5000, 9000]);
  assert.deepEqual(withinWindow([1000], 7000, 6000), []);
  assert.equal(steadyFor([1000, 4000], 2, 10_000), 6000, 'the youngest counts');
  assert.equal(steadyFor([1000], 2, 10_000), null, 'fewer than target serve');
  assert.equal(steadyFor([1000, 2000, 3000], 2, 10_000), 7000);
});

// ---------------------------------------------------------------------------------------

function fakeChild(): ChildProcess & { sent: unknown[]; signals: string[] } {
  const c = new EventEmitter() as ChildProcess & { sent: unknown[]; signals: string[] };
  c.sent = [];
  c.signals = [];
  Object.assign(c, {
    connected: true,
    send: (msg: unknown) => (c.sent.push(msg), true),
    kill: (sig: string) => (c.signals.push(sig), true),
  });
  return c;
}

function handle(moves: Transition[] = []) {
  const child = fakeChild();
  return { w: new WorkerHandle('main', 100, 1, 1, child, (t) => moves.push(t)), child };
}

test('the lifecycle table: every state lists its moves, exited is terminal, stopping only leaves by exiting', () => {
  assert.deepEqual(Object.keys(LIFECYCLE).sort(), [...WORKER_STATES].sort());
  for (const [from, moves] of Object.entries(LIFECYCLE)) {
    for (const to of Object.values(moves)) assert.ok(WORKER_STATES.includes(to!), `${from} leads to a state: ${to}`);
    if (from !== 'exited') assert.equal(moves.exit, 'exited', `${from} can exit`);
  }
  assert.deepEqual(LIFECYCLE.exited, {});
  assert.deepEqual(Object.keys(LIFECYCLE.stopping).sort(), ['exit', 'kill']);
});

test('a handle makes exactly the moves the table allows, and announces each', () => {
  const all: Move[] = ['booted', 'retire', 'reinstate', 'stop', 'kill', 'exit'];
  for (const state of WORKER_STATES) {
    for (const move of all) {
      const moves: Transition[] = [];
      const { w } = handle(moves);
      w.state = state;
      const ok =
        move === 'booted' ? w.booted() :
        move === 'retire' ? w.retire('reload', 2) :
        move === 'reinstate' ? w.reinstate() :
        move === 'stop' ? w.stop('stop', true, false) :
        move === 'kill' ? w.kill('timeout') :
        w.exited(0, null);
      const allowed = LIFECYCLE[state][move];
      assert.equal(ok, allowed !== undefined, `${move} from ${state}`);
      assert.equal(w.state, allowed ?? state, `${move} from ${state} leads to ${allowed ?? state}`);
      assert.deepEqual(moves.map((t) => [t.from, t.move, t.to]), allowed ? [[state, move, allowed]] : []);
    }
  }
});

test('why a worker ended: a retire reason survives the stop; a timeout kill is counted once, as a timeout', () => {
  const { w, child } = handle();
  w.booted();
  w.retire('max-requests');
  w.stop('reload', true, false);
  assert.equal(w.reason, 'max-requests');
  assert.deepEqual(child.sent, [{ t: 'stop', graceful: true, keepAccepting: false }]);
  w.exited(0, null);
  assert.equal(w.died, false);
  assert.equal(w.restartReason, 'max-requests');

  const k = handle();
  k.w.booted();
  assert.equal(k.w.kill('timeout'), true);
  assert.deepEqual(k.child.signals, ['SIGKILL']);
  // A reload that comes while it is being killed cannot claim it.
  assert.equal(k.w.retire('reload', 2), false);
  assert.equal(k.w.stop('reload', true, false), false);
  k.w.exited(null, 'SIGKILL');
  assert.equal(k.w.restartReason, 'timeout');

  const c = handle();
  c.w.booted();
  c.w.exited(1, null);
  assert.equal(c.w.died, true);
  assert.equal(c.w.restartReason, 'crash');

  const b = handle();
  b.w.exited(3, null);
  assert.equal(b.w.failedToBoot, true);
  const s = handle();
  s.w.stop('scale-down', true, false);
  s.w.exited(0, null);
  assert.equal(s.w.restartReason, null, 'scale-down is not a restart');
});
