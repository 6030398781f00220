/**
 * Schedules (SPEC §6.3): the master enqueues `task` with `payload` at every tick of `cron`.
 *
 * The expressions are read by croner (a maintained, dependency-free cron library that
 * handles time zones and daylight saving time: a run at a local time that does not exist
 * that day happens when the clock jumps past it, one that happens twice runs once). It is
 * loaded only when the config has a schedule.
 *
 * Exactly once. Each tick is enqueued through `Broker.enqueueScheduled(key, tick)`, which
 * enqueues only if no run of that schedule at that tick or later was enqueued before (Redis:
 * one script that compares and sets `arbiter:schedule:KEY` and adds the task; spool: a tick
 * file created with O_EXCL). So several arbiters sharing a broker (replicas of one
 * container, the old and new master of a USR2 upgrade) enqueue each tick once between them,
 * whichever is first; a clock a little behind only means that arbiter finds its tick taken.
 * The task id is `NAME@TICK` (ISO 8601), the same on every arbiter.
 *
 * Missed runs. Only ticks that come while an arbiter runs are enqueued. With `catchUp`, an
 * arbiter starting up enqueues the latest tick it finds missed since the last one the broker
 * knows of, once (however many were missed); a schedule that never ran has nothing to catch up.
 */
import { createHash } from 'node:crypto';
import type { Logger } from './core/logging.js';
import { openBroker } from './core/brokers/open.js';
import { redactUrl } from './core/brokers/url.js';
import type { Broker } from './core/brokers/types.js';
import { SettingError, errorMessage } from './core/errors.js';
import type { ScheduleEntry, Settings } from './core/settings.js';

/** A timer never waits longer than this: a wall-clock jump is noticed within it. */
const MAX_TIMER_MS = 60_000;

/** Just what the scheduler needs of croner's Cron (loaded on demand). */
interface CronLike {
  nextRun(from?: Date): Date | null;
  previousRuns(n: number, from?: Date): Date[];
}

/** One schedule, checked and ready to run. */
export interface Compiled {
  name: string;
  /** Keys the schedule's state on the broker: the same on every arbiter with this config. */
  key: string;
  entry: ScheduleEntry;
  queue: string;
  cron: CronLike;
}

export interface ScheduleStatus {
  name: string;
  cron: string;
  tz: string | null;
  task: string;
  queue: string;
  /** ISO 8601; null when the expression has no further run. */
  next: string | null;
  /** The last tick this arbiter enqueued, ISO 8601. */
  last: string | null;
}

/**
 * Reads every entry's expression (loading croner only when there is one); a bad one is a
 * SettingError naming the entry. `settings` gives the default queue.
 */
export async function compileSchedules(settings: Pick<Settings, 'schedule' | 'queue'>, origin = 'config'): Promise<Compiled[]> {
  if (settings.schedule.length === 0) return [];
  const { Cron } = await import('croner');
  const names = new Set<string>();
  return settings.schedule.map((entry, i) => {
    let cron: CronLike;
    try {
      cron = new Cron(entry.cron, { paused: true, mode: '5-or-6-parts', ...(entry.tz ? { timezone: entry.tz } : {}) });
    } catch (err) {
      throw new SettingError(`invalid value ${JSON.stringify(entry.cron)} for schedule[${i}].cron (${origin}): ${errorMessage(err).replace(/^CronPattern: /, '')}`);
    }
    const queue = entry.queue ?? settings.queue[0]!;
    const name = entry.name ?? `${entry.task}@${entry.cron}${entry.tz ? `@${entry.tz}` : ''}`;
    if (names.has(`${queue}\n${name}`))
      throw new SettingError(`schedule[${i}] (${origin}) is a second schedule named ${JSON.stringify(name)} on queue ${queue}: give one a "name"`);
    names.add(`${queue}\n${name}`);
    const key = `${entry.task.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 40)}.${createHash('sha256').update(JSON.stringify([queue, name])).digest('hex').slice(0, 16)}`;
    return { name, key, entry, queue, cron };
  });
}

interface Running {
  c: Compiled;
  /** The tick the timer waits for (epoch ms), or null when there is none left. */
  next: number | null;
  /** The last tick handled here (enqueued or found taken). */
  handled: number;
  lastEnqueued: number | null;
  timer: NodeJS.Timeout | null;
}

export class Scheduler {
  private running = new Map<string, Running>();
  private readonly brokers = new Map<string, Promise<Broker>>();
  private url: string;
  private closed = false;

  constructor(
    private readonly log: Logger,
    settings: Pick<Settings, 'broker'>,
  ) {
    this.url = settings.broker;
  }

  /** Starts the schedules (at start-up: catch-up runs happen here). */
  start(list: Compiled[]): void {
    for (const c of list) this.add(c, true);
    if (list.length) this.log.info({ event: 'schedules', count: list.length, broker: redactUrl(this.url) }, `${list.length} schedule${list.length === 1 ? '' : 's'}: ${list.map((c) => `${c.name} (next ${iso(this.peek(c))})`).join(', ')}`);
  }

  /** HUP: schedules that stay keep their place; new ones start (without catch-up); dropped ones stop. */
  update(list: Compiled[], settings: Pick<Settings, 'broker'>): void {
    if (settings.broker !== this.url) {
      for (const r of this.running.values()) this.disarm(r);
      this.running.clear();
      void this.closeBrokers();
      this.url = settings.broker;
    }
    const keep = new Set(list.map((c) => c.key));
    for (const [key, r] of this.running) {
      if (keep.has(key)) continue;
      this.disarm(r);
      this.running.delete(key);
    }
    for (const c of list) {
      const r = this.running.get(c.key);
      if (r) {
        // Same name and queue: the expression may have changed; the handled tick stays.
        r.c = c;
        this.disarm(r);
        this.arm(r);
      } else this.add(c, false);
    }
  }

  status(): ScheduleStatus[] {
    return [...this.running.values()].map((r) => ({
      name: r.c.name,
      cron: r.c.entry.cron,
      tz: r.c.entry.tz ?? null,
      task: r.c.entry.task,
      queue: r.c.queue,
      next: r.next === null ? null : iso(r.next),
      last: r.lastEnqueued === null ? null : iso(r.lastEnqueued),
    }));
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const r of this.running.values()) this.disarm(r);
    this.running.clear();
    await this.closeBrokers();
  }

  // ------------------------------------------------------------------ running

  private add(c: Compiled, startUp: boolean): void {
    const r: Running = { c, next: null, handled: Date.now(), lastEnqueued: null, timer: null };
    this.running.set(c.key, r);
    this.arm(r);
    if (startUp && c.entry.catchUp) void this.catchUp(r);
  }

  private peek(c: Compiled): number | null {
    return c.cron.nextRun(new Date())?.getTime() ?? null;
  }

  private arm(r: Running): void {
    if (this.closed) return;
    const now = Date.now();
    r.next = r.c.cron.nextRun(new Date(Math.max(now, r.handled)))?.getTime() ?? null;
    if (r.next === null) return;
    r.timer = setTimeout(() => this.wake(r), Math.min(Math.max(0, r.next - now), MAX_TIMER_MS));
    r.timer.unref();
  }

  private disarm(r: Running): void {
    if (r.timer) clearTimeout(r.timer);
    r.timer = null;
  }

  private wake(r: Running): void {
    r.timer = null;
    const tick = r.next;
    if (tick === null || this.closed || this.running.get(r.c.key) !== r) return;
    if (Date.now() < tick) return this.arm(r);
    r.handled = tick;
    // The next tick is armed before this one is enqueued: a slow broker never delays it.
    this.arm(r);
    void this.enqueue(r, tick, 'due');
  }

  private async catchUp(r: Running): Promise<void> {
    try {
      const b = await this.broker(r.c.queue);
      const last = await b.lastScheduled(r.c.key);
      const [missed] = r.c.cron.previousRuns(1, new Date(Date.now() + 1));
      if (last === null || !missed || missed.getTime() <= last) return;
      this.log.info({ event: 'schedule_catch_up', schedule: r.c.name, tick: iso(missed.getTime()), last: iso(last) }, `schedule ${r.c.name}: catching up the run of ${iso(missed.getTime())} (the last was ${iso(last)})`);
      await this.enqueue(r, missed.getTime(), 'catch-up');
    } catch (err) {
      this.log.error({ event: 'schedule_failed', schedule: r.c.name, err: errorMessage(err) }, `schedule ${r.c.name}: cannot catch up: ${errorMessage(err)}`);
    }
  }

  private async enqueue(r: Running, tick: number, why: 'due' | 'catch-up'): Promise<void> {
    const { entry, name, key, queue } = r.c;
    const id = `${name}@${iso(tick)}`;
    try {
      const b = await this.broker(queue);
      const got = await b.enqueueScheduled(key, tick, entry.task, entry.payload ?? null, { id });
      if (got === null) {
        this.log.debug({ event: 'schedule_taken', schedule: name, tick: iso(tick) }, `schedule ${name}: the run of ${iso(tick)} was enqueued by another arbiter`);
        return;
      }
      if (r.lastEnqueued === null || tick > r.lastEnqueued) r.lastEnqueued = tick;
      this.log.info({ event: 'schedule_enqueued', schedule: name, task: id, taskName: entry.task, queue, why }, `schedule ${name}: enqueued ${entry.task} (${id})`);
    } catch (err) {
      this.log.error(
        { event: 'schedule_failed', schedule: name, tick: iso(tick), err: errorMessage(err) },
        `schedule ${name}: could not enqueue the run of ${iso(tick)}: ${errorMessage(err)}`,
      );
    }
  }

  private broker(queue: string): Promise<Broker> {
    let b = this.brokers.get(queue);
    if (!b) {
      b = openBroker(this.url, { queue, consumer: `scheduler:${process.pid}`, cwd: process.cwd() });
      this.brokers.set(queue, b);
      // Not cached when it failed: the next tick tries again.
      b.catch(() => this.brokers.delete(queue));
    }
    return b;
  }

  private async closeBrokers(): Promise<void> {
    const open = [...this.brokers.values()];
    this.brokers.clear();
    await Promise.allSettled(open.map(async (p) => (await p).close()));
  }
}

function iso(ms: number | null): string {
  return ms === null ? 'never' : new Date(ms).toISOString();
}
