// A `net` server that answers every request head with the same fixed bytes, parsing nothing
// but the blank line that ends a head, on net.Socket's stream API ('data', write()). Keep-alive, pipelining
// (one write per read, however many heads it held) and `Connection: close` (closes after the
// answer). Writes leave in the check phase after all of the turn's reads, as h11's do (a
// write inside each read callback costs the kernel more). No HTTP server on net.Socket's
// streams does less per request; bench/README.md's "raw net" row (raw-handle.mjs is the same
// below the stream API, the ceiling h11 is reported against).
//   node bench/servers/raw-net.mjs PORT
import net from 'node:net';
import { answers, closing, headCounter } from './fixed-answer.mjs';

const pending = []; // [socket, string] pairs to write in this turn's check phase
function writeAll() {
  const batch = pending.splice(0);
  for (let i = 0; i < batch.length; i += 2) batch[i].write(batch[i + 1], 'latin1');
}

const port = Number(process.argv[2]);
net
  .createServer({ noDelay: true }, (sock) => {
    const heads = headCounter();
    sock.on('data', (chunk) => {
      const n = heads(chunk.latin1Slice(0, chunk.length));
      if (n === 0) return;
      if (n < 0) sock.end(closing, 'latin1');
      else {
        pending.push(sock, answers(n));
        if (pending.length === 2) setImmediate(writeAll);
      }
    });
    sock.on('error', () => {});
  })
  .listen(port, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
