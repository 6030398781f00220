/**
 * The master's own connection to the broker of each task pool. Three things only the master
 * can do well:
 *
 * - It knows at once when a task worker is gone (it saw the process exit), so the worker's
 *   unfinished tasks are handed back then, as their next attempt, instead of after their
 *   lease. Leases stay the safety net for a master that died too.
 * - An outage is one event for the whole arbiter: the master logs one line when the broker
 *   goes away and one when it is back (workers wait quietly), and status and metrics show it.
 * - At start it says when the broker would lose or evict tasks (a Redis without persistence).
 */
import type { Logger } from './core/logging.js';
import { openQueues } from './core/brokers/open.js';
import { WORKER_GONE, consumerName } from './core/brokers/records.js';
import type { Broker, BrokerHealth } from './core/brokers/types.js';
import { redactUrl } from './core/brokers/url.js';
import { errorMessage } from './core/errors.js';
import type { Settings } from './core/settings.js';
import type { Arbiter } from './master.js';
import type { Transition } from './worker-handle.js';

export interface BrokerStatus extends BrokerHealth {
  url: string;
}

export class TaskBrokers {
  private readonly open = new Map<string, Promise<Broker | null>>();
  private readonly health = new Map<string, BrokerStatus>();

  constructor(
    private readonly arbiter: Arbiter,
    private readonly log: Logger,
  ) {
    arbiter.events.on('transition', (t) => this.onTransition(t));
  }

  /** Connect to every task pool's broker now: start-up warnings, and outages are seen from the start. */
  async start(): Promise<void> {
    await Promise.all([...this.arbiter.groups.values()].filter((g) => isTask(g.settings)).map((g) => this.brokerFor(g.settings)));
  }

  /** Each task pool's broker, as status and metrics show it. */
  status(): BrokerStatus[] {
    return [...this.health.values()];
  }

  private onTransition(t: Transition): void {
    if (t.to !== 'exited') return;
    const group = this.arbiter.groups.get(t.worker.pool);
    if (!group || !isTask(group.settings)) return;
    void this.release(group.settings, t.worker.pid);
  }

  private async release(s: Settings, pid: number): Promise<void> {
    const broker = await this.brokerFor(s);
    if (!broker) return;
    try {
      const n = await broker.releaseConsumer(consumerName(pid), WORKER_GONE);
      if (n > 0) this.log.info({ event: 'tasks_released', worker: pid, tasks: n }, `handed back ${n} unfinished task${n === 1 ? '' : 's'} of worker ${pid}`);
    } catch (err) {
      // The broker is away: the claims come back when their lease runs out.
      this.log.debug({ event: 'tasks_release_failed', worker: pid, err: errorMessage(err) }, `cannot hand back the tasks of worker ${pid} now: ${errorMessage(err)}`);
    }
  }

  private brokerFor(s: Settings): Promise<Broker | null> {
    const key = brokerKey(s);
    let b = this.open.get(key);
    if (!b) {
      b = this.connect(s);
      this.open.set(key, b);
    }
    return b;
  }

  private async connect(s: Settings): Promise<Broker | null> {
    const url = redactUrl(s.broker);
    let broker: Broker;
    try {
      broker = await openQueues(s.broker, s.queue, { ...(s.dlq ? { dlq: s.dlq } : {}), cwd: process.cwd(), consumer: `master:${process.pid}` });
    } catch (err) {
      this.log.warn({ event: 'broker_unreachable_at_start', broker: url, err: errorMessage(err) }, `task broker ${url} cannot be reached at start (${errorMessage(err)}); workers will keep trying`);
      // Try again on the next need.
      this.open.delete(brokerKey(s));
      return null;
    }
    this.health.set(url, { url, up: true, since: Date.now() });
    broker.onHealth?.((h) => {
      const was = this.health.get(url);
      this.health.set(url, { url, ...h });
      if (!h.up) this.log.error({ event: 'broker_down', broker: url, err: h.error }, `task broker ${url} is unreachable (${h.error}); workers wait for it`);
      else this.log.info({ event: 'broker_up', broker: url, downMs: was ? h.since - was.since : null }, `task broker ${url} is reachable again` + (was ? ` after ${((h.since - was.since) / 1000).toFixed(1)} s` : ''));
    });
    for (const warning of (await broker.durabilityWarnings?.().catch(() => [])) ?? [])
      this.log.warn({ event: 'broker_durability', broker: url }, `task broker: ${warning}`);
    return broker;
  }

  async close(): Promise<void> {
    const all = [...this.open.values()];
    this.open.clear();
    await Promise.allSettled(all.map(async (p) => (await p)?.close()));
  }
}

function brokerKey(s: Settings): string {
  return `${s.broker}\n${s.queue.join(',')}\n${s.dlq ?? ''}\n${process.cwd()}`;
}

function isTask(s: Settings): boolean {
  return s.workerClass === 'task';
}

const brokers = new WeakMap<Arbiter, TaskBrokers>();

/** The one TaskBrokers of this arbiter (made by boot when a pool runs tasks). */
export function taskBrokersFor(arbiter: Arbiter, log?: Logger): TaskBrokers | null {
  let t = brokers.get(arbiter) ?? null;
  if (!t && log) brokers.set(arbiter, (t = new TaskBrokers(arbiter, log)));
  return t;
}
