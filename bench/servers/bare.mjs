// Baseline: bare node:http in one process, serving examples/hello.js's handler.
//   node bench/servers/bare.mjs PORT        (PORT may also come from $PORT, e.g. under PM2)
import http from 'node:http';
import { handler } from '../../examples/hello.js';

const port = Number(process.argv[2] ?? process.env.PORT);
http.createServer(handler).listen(port, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
