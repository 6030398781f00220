/**
 * Several queues in priority order (`queue: high,default`), as one Broker for a consumer: a
 * fetch takes from the first queue while it has due tasks, and only what it still wants
 * from the next. Every delivery is settled by the broker it came from.
 *
 * Waiting: when every queue is empty, the fetch blocks on the first queue for at most
 * IDLE_SLICE_MS, then looks at all of them again. So an idle worker hears of a task on the
 * first queue at once and of one on another queue within IDLE_SLICE_MS; a busy one never
 * waits at all. (A blocking read across queues would claim from all of them at once, and
 * the lower queues' tasks would then sit in a worker that has higher ones to run.)
 */
import type { Broker, BrokerHealth, BrokerStats, DeadTask, Delivery, EnqueueOptions, KeptResult, TaskResult } from './types.js';

export const IDLE_SLICE_MS = 50;

export class PriorityBroker implements Broker {
  /** Receipt → the broker that made the delivery. */
  private readonly owners = new WeakMap<object, Broker>();
  private closed = false;

  /** `brokers[0]` is the first queue. */
  constructor(private readonly brokers: Broker[]) {
    if (brokers.length === 0) throw new Error('no queues');
  }

  async fetch(max: number, waitMs: number): Promise<Delivery[]> {
    const deadline = Date.now() + Math.max(0, waitMs);
    for (;;) {
      const got: Delivery[] = [];
      for (const b of this.brokers) {
        if (got.length >= max || this.closed) break;
        for (const d of await b.fetch(max - got.length, 0)) got.push(this.own(d, b));
      }
      const left = deadline - Date.now();
      if (got.length > 0 || left <= 0 || this.closed) return got;
      const first = this.brokers[0]!;
      const woke = await first.fetch(max, Math.min(left, IDLE_SLICE_MS));
      if (woke.length > 0) return woke.map((d) => this.own(d, first));
    }
  }

  private own(d: Delivery, b: Broker): Delivery {
    this.owners.set(d.receipt as object, b);
    return d;
  }

  private ownerOf(d: Delivery): Broker {
    const b = this.owners.get(d.receipt as object);
    if (!b) throw new Error('not a delivery of this broker');
    return b;
  }

  ack(d: Delivery, result?: KeptResult): Promise<void> {
    return this.ownerOf(d).ack(d, result);
  }

  fail(d: Delivery, error: string, retryAt: number): Promise<void> {
    return this.ownerOf(d).fail(d, error, retryAt);
  }

  deadLetter(d: Delivery, error: string, result?: KeptResult): Promise<void> {
    return this.ownerOf(d).deadLetter(d, error, result);
  }

  async release(d: Delivery): Promise<void> {
    await this.ownerOf(d).release?.(d);
  }

  /** Producers name one queue; here it is the first. */
  enqueue(name: string, payload: unknown, opts?: EnqueueOptions): Promise<string> {
    return this.brokers[0]!.enqueue(name, payload, opts);
  }

  enqueueScheduled(key: string, tick: number, name: string, payload: unknown, opts?: EnqueueOptions): Promise<string | null> {
    return this.brokers[0]!.enqueueScheduled(key, tick, name, payload, opts);
  }

  lastScheduled(key: string): Promise<number | null> {
    return this.brokers[0]!.lastScheduled(key);
  }

  /** A task's result is kept on the queue it ran from: the first that has it. */
  async getResult(id: string): Promise<TaskResult | null> {
    for (const b of this.brokers) {
      const r = await b.getResult(id);
      if (r) return r;
    }
    return null;
  }

  waitResult(id: string, timeoutMs: number): Promise<TaskResult | null> {
    return this.brokers[0]!.waitResult(id, timeoutMs);
  }

  async stats(): Promise<BrokerStats> {
    const all = await Promise.all(this.brokers.map((b) => b.stats()));
    return all.reduce((a, s) => ({ ready: a.ready + s.ready, delayed: a.delayed + s.delayed, inFlight: a.inFlight + s.inFlight, dead: a.dead + s.dead }));
  }

  listDead(limit?: number): Promise<DeadTask[]> {
    return this.brokers[0]!.listDead(limit);
  }

  retryDead(ids?: string[]): Promise<number> {
    return this.brokers[0]!.retryDead(ids);
  }

  purgeDead(ids?: string[]): Promise<number> {
    return this.brokers[0]!.purgeDead(ids);
  }

  async releaseConsumer(consumer: string, reason: string): Promise<number> {
    const n = await Promise.all(this.brokers.map((b) => b.releaseConsumer(consumer, reason)));
    return n.reduce((a, b) => a + b, 0);
  }

  /** Every queue's connection; the same server, so one change is reported once per queue. */
  onHealth(listener: (h: BrokerHealth) => void): void {
    for (const b of this.brokers) b.onHealth?.(listener);
  }

  durabilityWarnings(): Promise<string[]> {
    return this.brokers[0]!.durabilityWarnings?.() ?? Promise.resolve([]);
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.brokers.map((b) => b.close()));
  }
}
