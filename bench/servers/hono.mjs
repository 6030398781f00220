// Baseline for the Hono group: examples/bench-hono.js served the usual way on Node,
// with @hono/node-server, one process.
//   node bench/servers/hono.mjs PORT
import { serve } from '@hono/node-server';
import app from '../../examples/bench-hono.js';

const port = Number(process.argv[2]);
serve({ fetch: app.fetch, port, hostname: '127.0.0.1' });
process.on('SIGTERM', () => process.exit(0));
