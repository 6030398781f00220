// A real Express app, used unchanged: arbiter examples/express-app.js -w 2
import express from 'express';

const app = express();
app.use(express.json());

app.get('/', (req, res) => {
  res.type('text/plain').send('Hello from Express!\n');
});

app.get('/users/:id', (req, res) => {
  res.json({ id: req.params.id, pid: process.pid });
});

app.post('/echo', (req, res) => {
  res.json({ received: req.body });
});

export default app;
