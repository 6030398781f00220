// One BullMQ worker process for bench/tasks.mjs: a no-op processor at the given concurrency.
// argv: REDIS_URL QUEUE CONCURRENCY. Prints "ready" once connected; killed by pid when done
// (Worker.close() can hang, so the bench does not ask nicely).
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';

const [url, queue, concurrency] = process.argv.slice(2);
// BullMQ needs maxRetriesPerRequest: null on the connections its workers block on.
const connection = new Redis(url, { maxRetriesPerRequest: null });
const worker = new Worker(queue, async () => {}, {
  connection,
  concurrency: Number(concurrency),
  removeOnComplete: { count: 0 },
  removeOnFail: { count: 0 },
});
worker.on('error', (err) => process.stderr.write(`bullmq worker: ${err.message}\n`));
await worker.waitUntilReady();
process.stdout.write('ready\n');
