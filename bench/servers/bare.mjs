// Baseline: bare node:http in one process, serving examples/hello.js's handler (or the
// `handler` export of another module under bench/servers/, e.g. body-app.mjs).
//   node bench/servers/bare.mjs PORT [MODULE]   (PORT may also come from $PORT, e.g. under PM2)
import http from 'node:http';

const port = Number(process.argv[2] ?? process.env.PORT);
const { handler } = await import(process.argv[3] ? `./${process.argv[3]}` : '../../examples/hello.js');
http.createServer(handler).listen(port, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
