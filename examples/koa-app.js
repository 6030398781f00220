// A real Koa app, used unchanged: arbiter examples/koa-app.js -w 2
// arbiter recognises a Koa app by shape and serves app.callback().
import Koa from 'koa';

const app = new Koa();

app.use(async (ctx, next) => {
  if (ctx.method === 'POST' && ctx.path === '/echo') {
    const chunks = [];
    for await (const chunk of ctx.req) chunks.push(chunk);
    ctx.body = { received: JSON.parse(Buffer.concat(chunks).toString() || 'null') };
    return;
  }
  const user = /^\/users\/([^/]+)$/.exec(ctx.path);
  if (ctx.method === 'GET' && user) {
    ctx.body = { id: user[1], pid: process.pid };
    return;
  }
  if (ctx.method === 'GET' && ctx.path === '/') {
    ctx.type = 'text/plain';
    ctx.body = 'Hello from Koa!\n';
    return;
  }
  await next();
});

export default app;
