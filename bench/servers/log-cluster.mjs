// Baseline of `node bench/logs.mjs`: Node's cluster with N workers running log-app.mjs, each
// worker's stdout the primary's (inherited): lines go straight to the file, untagged.
//   node bench/servers/log-cluster.mjs PORT N
import cluster from 'node:cluster';
import http from 'node:http';
import { handler } from './log-app.mjs';

const port = Number(process.argv[2]);
const n = Number(process.argv[3] ?? 1);
if (cluster.isPrimary) {
  for (let i = 0; i < n; i++) cluster.fork();
  process.on('SIGTERM', () => {
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
    setTimeout(() => process.exit(0), 500).unref();
  });
} else {
  http.createServer(handler).listen(port, '127.0.0.1');
  process.on('SIGTERM', () => process.exit(0));
}
