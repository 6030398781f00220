// A `net` server that answers every request head with the same fixed bytes, parsing nothing
// but the blank line that ends a head, on net.Socket's stream API ('data', write()). Keep-alive, pipelining
// (one write per read, however many heads it held) and `Connection: close` (closes after the
// answer). Writes leave in the check phase after all of the turn's reads, as h11's do (a
// write inside each read callback costs the kernel more). No HTTP server on net.Socket's
// streams does less per request; bench/README.md's "raw net" row (raw-handle.mjs is the same
// below the stream API, the ceiling h11 is reported against).
//   node bench/servers/raw-net.mjs PORT
import net from 'node:net';

const body = 'Hello, world!\n';
const head = (close) =>
  `HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\n` +
  `Date: ${new Date().toUTCString()}\r\n${close ? 'Connection: close\r\n' : ''}\r\n${body}`;
let keep = head(false);
const close = head(true);
const repeated = [''];
setInterval(() => {
  keep = head(false);
  repeated.length = 1;
}, 1000).unref();
const times = (n) => (repeated[n] ??= keep.repeat(n));

const pending = []; // [socket, string] pairs to write in this turn's check phase
function writeAll() {
  const batch = pending.splice(0);
  for (let i = 0; i < batch.length; i += 2) batch[i].write(batch[i + 1], 'latin1');
}

const port = Number(process.argv[2]);
net
  .createServer({ noDelay: true }, (sock) => {
    let tail = ''; // the last 3 bytes of the previous read: a "\r\n\r\n" may straddle reads
    sock.on('data', (chunk) => {
      const s = tail + chunk.latin1Slice(0, chunk.length);
      let n = 0;
      for (let i = s.indexOf('\r\n\r\n'); i !== -1; i = s.indexOf('\r\n\r\n', i + 4)) n++;
      tail = s.slice(-3);
      if (n === 0) return;
      if (s.includes('onnection: close') || s.includes('onnection: Close')) sock.end(close, 'latin1');
      else {
        pending.push(sock, times(n));
        if (pending.length === 2) setImmediate(writeAll);
      }
    });
    sock.on('error', () => {});
  })
  .listen(port, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
