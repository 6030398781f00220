/**
 * Opening a broker by URL (see url.ts for the grammar). The implementations are loaded on
 * demand: spool users never load ioredis, and Redis users never load the spool.
 */
import type { Broker, OpenBrokerOptions } from './types.js';
import { PriorityBroker } from './priority.js';
import { resolveOptions } from './records.js';
import { brokerUrlProblem, parseBrokerUrl } from './url.js';

export { DEFAULT_BROKER } from './url.js';

/** Opens a broker by URL; `opts` are checked first (queue names, lease). */
export async function openBroker(url: string, opts: OpenBrokerOptions): Promise<Broker> {
  const resolved = resolveOptions(opts);
  const where = parseBrokerUrl(url);
  if (where?.kind === 'spool') {
    const { SpoolBroker } = await import('./spool.js');
    return SpoolBroker.open(where.path, resolved);
  }
  if (where?.kind === 'redis') {
    const { RedisBroker } = await import('./redis.js');
    return RedisBroker.open(where.url, where.target, resolved);
  }
  throw new Error(`unknown broker "${url}" — expected ${brokerUrlProblem(url)}`);
}

/**
 * A consumer's broker for one queue or several in priority order (priority.ts). With
 * several, each has its own dead-letter queue (`QUEUE:dead`) unless `dlq` names one for all.
 */
export async function openQueues(url: string, queues: readonly string[], opts: Omit<OpenBrokerOptions, 'queue'>): Promise<Broker> {
  if (queues.length === 1) return openBroker(url, { ...opts, queue: queues[0]! });
  const opened: Broker[] = [];
  try {
    for (const queue of queues) opened.push(await openBroker(url, { ...opts, queue }));
  } catch (err) {
    await Promise.allSettled(opened.map((b) => b.close()));
    throw err;
  }
  return new PriorityBroker(opened);
}
