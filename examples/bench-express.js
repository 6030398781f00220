// A real Express app with one route, used by `npm run bench` (run on bare node:http and
// under arbiter):   arbiter examples/bench-express.js -w 1
import express from 'express';

const app = express();
app.get('/', (req, res) => {
  res.type('text/plain').send('Hello, world!');
});

export default app;
