// A real Fastify app, used unchanged: arbiter examples/fastify-app.js -w 2
// arbiter recognises a Fastify instance by shape, waits for ready() and serves app.routing.
import Fastify from 'fastify';

const app = Fastify();

app.get('/', async (request, reply) => {
  reply.type('text/plain');
  return 'Hello from Fastify!\n';
});

app.get('/users/:id', async (request) => ({ id: request.params.id, pid: process.pid }));

app.post('/echo', async (request) => ({ received: request.body }));

export default app;
