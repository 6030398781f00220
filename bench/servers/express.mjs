// Baseline for the Express group: examples/bench-express.js on bare node:http, one process.
//   node bench/servers/express.mjs PORT
import http from 'node:http';
import app from '../../examples/bench-express.js';

const port = Number(process.argv[2]);
http.createServer(app).listen(port, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
