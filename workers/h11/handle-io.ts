/**
 * Reading and writing a plain TCP socket through its libuv handle, under `net.Socket`.
 *
 * The socket object stays (accept, `'close'`, `end()`, `destroy()`, pause/resume, upgrades and
 * the `'connection'` event all go through it as usual); what leaves Node's stream machinery is
 * the per-request path, where it cost more than the parsing and the response together
 * (bench/README.md: a fixed-bytes server doing this answers ~1.3x what the same server on
 * `socket.on('data')` / `socket.write` does per CPU-second).
 *
 * - Reads land in one buffer shared by every connection, the way `net.Socket`'s `onread`
 *   option does for client sockets (Node offers no option for accepted ones, so the same two
 *   fields are set on the socket and its handle is told to use the buffer): no 64 KiB
 *   allocation, no Buffer object and no Readable push/'data' emit per read. The engine copies
 *   whatever it keeps past receive(); body chunks that alias the buffer are copied before the
 *   app sees them.
 * - Writes go to the handle's `writeLatin1String` / `writeBuffer`, the calls `socket.write`
 *   ends in, when nothing is buffered in the socket's Writable: no Writable state, no write
 *   callback, no after-write tick. The request object libuv needs comes from the same
 *   binding `net` uses (`process.binding('stream_wrap')`, on Node's allow-list for it). A write
 *   the kernel took at once (nearly all of them) leaves the request unused, so one is reused;
 *   a partial write keeps it, with the data, until libuv reports it done. libuv keeps a
 *   handle's writes in order whichever path queued them, and `end()`'s shutdown waits for them.
 *
 * Each part is found by feature test and falls back to the stream path without it (another
 * Node, TLS, `--pending-deprecation`, under which touching `process.binding` would print
 * DEP0111 in the app's logs).
 */
import { Socket } from 'node:net';
import { getSystemErrorName } from 'node:util';

const onreadProbe = new Socket({ onread: { buffer: Buffer.alloc(1), callback: () => undefined } } as ConstructorParameters<typeof Socket>[0]);
const symbolNamed = (name: string) => Object.getOwnPropertySymbols(onreadProbe).find((s) => s.description === name);
const kBuffer = symbolNamed('kBuffer');
const kBufferCb = symbolNamed('kBufferCb');
export const READ_BUFFER = Buffer.allocUnsafeSlow(64 * 1024);

/** The parts of a libuv stream handle (TCPWrap) used here. */
interface StreamHandle {
  useUserBuffer?(buf: Uint8Array): void;
  /** Called by the C++ side after each read; the byte count (or error) is in streamBaseState. */
  onread: (this: StreamHandle, ab?: ArrayBuffer) => unknown;
  writeLatin1String(req: WriteReq, s: string): number;
  writeBuffer(req: WriteReq, b: Uint8Array): number;
  /** Bytes in libuv's write queue (written by either path, not yet taken by the kernel). */
  readonly writeQueueSize?: number;
}
/** A `WriteWrap`: what libuv's write request is bound to while a write is in flight. */
interface WriteReq {
  oncomplete(this: WriteReq, status: number): void;
  /** The data, kept alive while libuv points into it (Buffers are not copied). */
  buffer: string | Uint8Array | null;
  bytes: number;
  owner: DirectWriter | null;
}
interface StreamWrapBinding {
  WriteWrap: new () => WriteReq;
  streamBaseState: Int32Array;
  kLastWriteWasAsync: number;
  kReadBytesOrError: number;
}
type HandleSocket = Record<symbol, unknown> & { _handle: StreamHandle | null };

/** Told when a write it made finishes after the call returned. */
export interface DirectWriter {
  writeDone(bytes: number, status: number): void;
}

function loadStreamWrap(): StreamWrapBinding | null {
  const pending = process.execArgv.includes('--pending-deprecation') || /--pending-deprecation/.test(process.env.NODE_OPTIONS ?? '') || process.env.NODE_PENDING_DEPRECATION === '1';
  if (pending) return null;
  try {
    const b = (process as unknown as { binding(name: string): Partial<StreamWrapBinding> }).binding('stream_wrap');
    if (typeof b.WriteWrap === 'function' && b.streamBaseState instanceof Int32Array && typeof b.kLastWriteWasAsync === 'number' && typeof b.kReadBytesOrError === 'number') return b as StreamWrapBinding;
  } catch {}
  return null;
}

const streamWrap = loadStreamWrap();
let spare: WriteReq | null = streamWrap && new streamWrap.WriteWrap();

function onWriteDone(this: WriteReq, status: number): void {
  const owner = this.owner!;
  const bytes = this.bytes;
  this.owner = null;
  this.buffer = null;
  owner.writeDone(bytes, status);
}

/** Route the socket's reads to `cb` through READ_BUFFER; false when this socket cannot. */
export function readDirect(sock: Socket, cb: (n: number, buf: Buffer) => unknown): boolean {
  const s = sock as unknown as HandleSocket;
  const handle = s._handle;
  if (kBuffer === undefined || kBufferCb === undefined || handle === null || typeof handle.useUserBuffer !== 'function') return false;
  if (s[kBuffer] !== null || Object.getPrototypeOf(sock) !== Socket.prototype) return false; // TLS, or someone else's onread
  s[kBuffer] = READ_BUFFER;
  s[kBufferCb] = cb;
  handle.useUserBuffer(READ_BUFFER);
  if (streamWrap !== null) {
    // Bytes go straight to cb; EOF and errors to net's own onread (which reads kBuffer/kBufferCb
    // the same way), so 'end', 'error' and half-close behave as on any socket.
    const state = streamWrap.streamBaseState;
    const kRead = streamWrap.kReadBytesOrError;
    const streamOnread = (netOnread ??= handle.onread);
    handle.onread = function onread(ab) {
      const n = state[kRead]!;
      if (n > 0) cb(n, READ_BUFFER);
      else return streamOnread.call(this, ab);
    };
  }
  return true;
}

/** net's onread (one function for every socket), put back when a socket leaves us. */
let netOnread: StreamHandle['onread'] | undefined;

/** From now on the socket's reads are pushed into its stream ('data' events) for a new owner. */
export function readAsStream(sock: Socket): void {
  const s = sock as unknown as HandleSocket;
  if (netOnread !== undefined && s._handle !== null) s._handle.onread = netOnread;
  s[kBufferCb!] = (n: number, buf: Buffer) => sock.push(Buffer.from(buf.subarray(0, n)));
}

/** Bytes written to the socket that the kernel has not taken yet (its Writable's and libuv's). */
export function unsentBytes(sock: Socket): number {
  return sock.writableLength + ((sock as unknown as HandleSocket)._handle?.writeQueueSize ?? 0);
}

/** Whether writeDirect() can work in this process (for sockets that readDirect() took). */
export const canWriteDirect = streamWrap !== null;

/**
 * Write `data` (a latin1 string or bytes) on the socket's handle; false when it must go
 * through `socket.write` instead (something is buffered in the Writable, it is ending or
 * gone). Returns the bytes still in flight (0: the kernel took all of it); the writer's
 * writeDone() hears of those. A write error destroys the socket, as `socket.write` would.
 */
export function writeDirect(sock: Socket, data: string | Uint8Array, writer: DirectWriter): number | false {
  const handle = (sock as unknown as HandleSocket)._handle;
  if (handle === null || !sock.writable || sock.writableLength !== 0) return false;
  const req = spare!;
  const err = typeof data === 'string' ? handle.writeLatin1String(req, data) : handle.writeBuffer(req, data);
  if (err !== 0) {
    const code = getSystemErrorName(err);
    sock.destroy(Object.assign(new Error(`write ${code}`), { errno: err, code, syscall: 'write' }));
    return 0;
  }
  if (streamWrap!.streamBaseState[streamWrap!.kLastWriteWasAsync] === 0) return 0;
  // libuv holds this request (and, for bytes, a pointer into data) until the write is done.
  spare = new streamWrap!.WriteWrap();
  req.oncomplete = onWriteDone;
  req.buffer = data;
  req.bytes = data.length;
  req.owner = writer;
  return data.length;
}
