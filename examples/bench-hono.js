// A real Hono app with one route, used by `npm run bench`. The default export is the Hono
// app object; arbiter sees its .fetch and uses the fetch interface:
//   arbiter examples/bench-hono.js -w 1
import { Hono } from 'hono';

const app = new Hono();
app.get('/', (c) => c.text('Hello, world!'));

export default app;
