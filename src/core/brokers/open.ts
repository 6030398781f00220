/**
 * Opening a broker by URL (see url.ts for the grammar). The implementations are loaded on
 * demand: spool users never load ioredis, and Redis users never load the spool. ioredis is
 * an optional peer dependency of the package: installed by those who use Redis.
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
    let redis: typeof import('./redis.js');
    try {
      redis = await import('./redis.js');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' && /ioredis/.test(String(err)))
        throw new Error('the Redis broker needs the ioredis package, which is not installed: npm install ioredis');
      throw err;
    }
    return redis.RedisBroker.open(where.url, where.target, resolved);
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
