// A real Hono app, used unchanged: arbiter examples/hono-app.js -w 2
// arbiter sees the `fetch` method and serves it through the fetch interface.
import { Hono } from 'hono';

const app = new Hono();

app.get('/', (c) => c.text('Hello from Hono!\n'));
app.get('/users/:id', (c) => c.json({ id: c.req.param('id'), pid: process.pid }));
app.post('/echo', async (c) => c.json({ received: await c.req.json() }));

export default app;
