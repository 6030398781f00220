// The socket's limit in Node, below net.Socket: raw-net.mjs's fixed-bytes server, but each
// accepted socket is read and written through its libuv handle, as h11 does
// (workers/h11/handle-io.ts): reads land in one shared buffer and reach this code straight
// from the handle's onread, writes go to writeLatin1String with a reused write request. What
// is left per request is libuv, the read and write system calls and one JS callback each: the
// "raw handle (ceiling)" row of bench/README.md, against which h11 is reported.
//   node bench/servers/raw-handle.mjs PORT
import net from 'node:net';
import { answers, closing, headCounter } from './fixed-answer.mjs';

const { WriteWrap, streamBaseState, kReadBytesOrError, kLastWriteWasAsync } = process.binding('stream_wrap');

const READ = Buffer.allocUnsafeSlow(64 * 1024);
let spare = new WriteWrap();
const held = new Set(); // write requests libuv still holds (the kernel did not take all at once)
function done() {
  held.delete(this);
}
function write(sock, s) {
  const req = spare;
  if (sock._handle.writeLatin1String(req, s) !== 0) return sock.destroy();
  if (streamBaseState[kLastWriteWasAsync] === 0) return;
  spare = new WriteWrap();
  req.oncomplete = done;
  held.add(req);
}

const pending = []; // [socket, string] pairs to write in this turn's check phase
function writeAll() {
  const batch = pending.splice(0);
  for (let i = 0; i < batch.length; i += 2) if (!batch[i].destroyed) write(batch[i], batch[i + 1]);
}

const port = Number(process.argv[2]);
net
  .createServer({ noDelay: true }, (sock) => {
    sock.on('error', () => {});
    const handle = sock._handle;
    const netOnread = handle.onread; // EOF and errors: net's own handling
    const heads = headCounter();
    handle.useUserBuffer(READ);
    handle.onread = function onread(ab) {
      const nread = streamBaseState[kReadBytesOrError];
      if (nread <= 0) return netOnread.call(this, ab);
      const n = heads(READ.latin1Slice(0, nread));
      if (n === 0) return;
      if (n < 0) sock.end(closing, 'latin1');
      else {
        pending.push(sock, answers(n));
        if (pending.length === 2) setImmediate(writeAll);
      }
    };
  })
  .listen(port, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
