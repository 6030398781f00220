// The same Hono app through the node interface, via @hono/node-server's request listener:
//   arbiter examples/hono-node.js:listener --interface node
import { getRequestListener } from '@hono/node-server';
import app from './hono-app.js';

export const listener = getRequestListener(app.fetch);
