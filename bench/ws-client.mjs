// The WebSocket echo load (wrk has none): CONNECTIONS clients, each sending a small message
// and the next one as soon as its echo is back, for SECONDS. Prints one JSON line:
// { messages, seconds, errors: { connect, read, write, timeout }, latencyMs: { avg, p50, p90, p99 } }.
//   node bench/ws-client.mjs ws://127.0.0.1:PORT/ CONNECTIONS SECONDS
import WebSocket from 'ws';

const [url, connections = '50', seconds = '5'] = process.argv.slice(2);
if (!/^ws:\/\/127\.0\.0\.1:\d+\//.test(url ?? '')) {
  process.stderr.write(`ws-client: refusing a non-loopback target: ${url}\n`);
  process.exit(2);
}
const n = Number(connections);
const secs = Number(seconds);
const MESSAGE = Buffer.from('hello, websocket');
const errors = { connect: 0, read: 0, write: 0, timeout: 0 };
const samples = [];
let messages = 0;
let running = false;
let t0 = 0n;

const sockets = await Promise.all(
  Array.from({ length: n }, () =>
    new Promise((resolve) => {
      const ws = new WebSocket(url, { perMessageDeflate: false });
      ws.once('open', () => resolve(ws));
      ws.once('error', () => {
        errors.connect++;
        resolve(null);
      });
    }),
  ),
);
const open = sockets.filter(Boolean);
for (const ws of open) {
  let sent = 0n;
  ws.on('message', () => {
    if (!running) return;
    messages++;
    // Every 64th round trip is sampled for the latency figures.
    if ((messages & 63) === 0) samples.push(Number(process.hrtime.bigint() - sent) / 1e6);
    sent = process.hrtime.bigint();
    ws.send(MESSAGE);
  });
  ws.on('error', () => errors.read++);
  ws.on('close', () => {
    if (running) errors.read++;
  });
  ws.start = () => {
    sent = process.hrtime.bigint();
    ws.send(MESSAGE);
  };
}
running = true;
t0 = process.hrtime.bigint();
for (const ws of open) ws.start();
await new Promise((r) => setTimeout(r, secs * 1000));
running = false;
const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
for (const ws of open) ws.terminate();
samples.sort((a, b) => a - b);
const pct = (p) => (samples.length ? samples[Math.min(samples.length - 1, Math.floor((p / 100) * samples.length))] : null);
const avg = samples.length ? samples.reduce((a, b) => a + b, 0) / samples.length : null;
process.stdout.write(JSON.stringify({ messages, seconds: elapsed, errors, latencyMs: { avg, p50: pct(50), p90: pct(90), p99: pct(99) } }) + '\n');
process.exit(0);
