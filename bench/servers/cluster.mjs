// Baseline: Node's cluster module with N workers serving examples/hello.js's handler.
//   node bench/servers/cluster.mjs PORT N
// The scheduling policy is left as Node ships it: on Linux that is cluster.SCHED_RR
// (round-robin: the primary accepts every connection and hands it to a worker over IPC).
// NODE_CLUSTER_SCHED_POLICY is cleared so the environment cannot change that.
import cluster from 'node:cluster';
import http from 'node:http';
import { handler } from '../../examples/hello.js';

const port = Number(process.argv[2]);
const n = Number(process.argv[3] ?? 2);

if (cluster.isPrimary) {
  for (let i = 0; i < n; i++) cluster.fork();
  let stopping = false;
  cluster.on('exit', () => {
    if (!stopping) cluster.fork();
  });
  process.on('SIGTERM', () => {
    stopping = true;
    const left = () => Object.keys(cluster.workers).length;
    cluster.on('exit', () => {
      if (left() === 0) process.exit(0);
    });
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
    if (left() === 0) process.exit(0);
    setTimeout(() => process.exit(0), 3000).unref();
  });
} else {
  http.createServer(handler).listen(port, '127.0.0.1');
  process.on('SIGTERM', () => process.exit(0));
}
