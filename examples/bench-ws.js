// A WebSocket echo beside a hello handler, used by `npm run bench` (on bare node:http + ws
// and under arbiter):   arbiter examples/bench-ws.js -w 1 [-k h11]
// The `ws` server attaches to the worker's server through the onServer lifecycle export.
import { WebSocketServer } from 'ws';
import { handler } from './hello.js';

export default handler;

export function onServer(server) {
  new WebSocketServer({ server }).on('connection', (ws) => ws.on('message', (m, isBinary) => ws.send(m, { binary: isBinary })));
}
