// Baseline: `ws` on bare node:http in one process, the same echo as examples/bench-ws.js.
//   node bench/servers/ws.mjs PORT
import http from 'node:http';
import { WebSocketServer } from 'ws';
import { handler } from '../../examples/hello.js';

const port = Number(process.argv[2] ?? process.env.PORT);
const server = http.createServer(handler);
new WebSocketServer({ server }).on('connection', (ws) => ws.on('message', (m, isBinary) => ws.send(m, { binary: isBinary })));
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
