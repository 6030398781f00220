/**
 * One client connection of the `h11` worker: a raw `net`/`tls` socket driving an
 * `H11Connection`. Both app interfaces (node.ts, fetch.ts) talk to it through a handful of
 * methods: `send()` bytes, `finishExchange()` when a response ended, `bodyWanted()` when the
 * app starts reading the request body, `bodyPaused()` for body backpressure.
 *
 * Output is batched: every byte a connection produces goes out with one write (to the socket's
 * handle, or `socket.write`: handle-io.ts) in the check phase (setImmediate) of the event-loop turn that produced it: 8 pipelined requests
 * answered synchronously make one write, and so do an async app's head and body. Writing after
 * all the turn's reads, instead of inside each read callback, also costs the kernel less per
 * response: a keep-alive load gets ~15% more requests per CPU-second (bench/README.md).
 */
import type { Socket } from 'node:net';
import { canWriteDirect, readAsStream, readDirect, unsentBytes, writeDirect, type DirectWriter } from './handle-io.js';
import { H11Connection, toBytes, type H11Event, type H11Options, type Output, type RequestEvent } from './engine/index.js';

/** What a request in progress looks like to the connection (node.ts / fetch.ts implement it). */
export interface Exchange {
  /** Request body bytes (already de-chunked). */
  onData(chunk: Buffer): void;
  onEnd(trailers: string[] | null): void;
  /** The request failed (bad body bytes) or the client went away before the response ended. */
  onAbort(err: Error): void;
  /** After the final bytes of the response were handed to the socket (node: 'finish'/'close'). */
  onFlushed?(status: number): void;
}

/** The worker side every connection reports to (worker.ts). */
export interface ConnOwner {
  /** The connection no longer counts toward workerConnections (closing, or closed). */
  connReleased(conn: Conn): void;
  readonly stopping: boolean;
  readonly closeEach: boolean;
  startRequest(conn: Conn, ev: RequestEvent): Exchange;
  /** A response ended (status counted, one request less in progress). */
  requestFinished(conn: Conn, status: number): void;
  /** A request in progress ended without a response of its own. */
  requestAborted(conn: Conn): void;
  /** A rejection written by the connection itself. */
  countStatus(status: number): void;
  /** Log an error of the app's making (the exchange answers it itself). */
  logAppError(err: unknown): void;
  connClosed(conn: Conn): void;
  /** Someone listens for upgrades: a request proposing one is handed over, not served. */
  readonly takesUpgrades: boolean;
  /** The connection is the upgrade listener's now: the socket and the bytes read past the request. */
  upgrade(conn: Conn, ev: RequestEvent, head: Buffer): void;
}

/** Held (unparsed) pipelined bytes above which we stop reading the socket. */
const MAX_HELD = 256 * 1024;
/** Socket write buffer above which body writers are told to wait for 'drain'. */
export const WRITE_HWM = 64 * 1024;

export class Conn implements DirectWriter {
  readonly h: H11Connection;
  /** A request is in progress: its response has not ended yet. */
  busy = false;
  /** The current exchange (null between requests). */
  ex: Exchange | null = null;
  /**
   * Coarse timestamp when the connection began waiting for its next request: at accept, and
   * when a response ended. Bytes of the next head do not move it (headerTimeout).
   */
  idleSince: number;
  /** Bytes of the next request have come, but not a whole head. */
  partial = false;
  /** Coarse timestamp when the current request's head arrived. */
  requestSince = 0;
  /** Still counted toward workerConnections (not closing, not closed). */
  private held = true;
  /** Set when we decided to close (ended our side); the sweep destroys it after a while. */
  closingSince = 0;
  /** Bytes the kernel had not taken at the last sweep of a closing connection. */
  private unsentAtSweep = 0;
  dead = false;

  private batching = false;
  private out: Output[] = [];
  private outLen = 0;
  /** Every queued piece is a latin1 string: they go out joined, as one string. */
  private outStrings = true;
  private flushed: Exchange[] = [];
  private flushedStatus: number[] = [];
  private pauseHeld = false;
  private pauseBody = false;
  private waiters: (() => void)[] | null = null;

  /** Reads come through READ_BUFFER (readDirect), not as 'data' events. */
  private readonly direct: boolean;
  /** Writes may go to the socket's handle (writeDirect). */
  private writesDirect: boolean;
  /** Bytes of direct writes libuv has not finished yet (the kernel's buffer was full). */
  private inFlight = 0;

  constructor(
    readonly sock: Socket,
    readonly owner: ConnOwner,
    opts: H11Options,
    now: number,
    /** Nobody else may listen for the socket's 'data' (no 'connection' listener): read it directly. */
    mayReadDirect = false,
  ) {
    this.h = new H11Connection(opts);
    this.idleSince = now;
    this.direct = mayReadDirect && readDirect(sock, this.readListener);
    this.writesDirect = this.direct && canWriteDirect;
    if (!this.direct) sock.on('data', this.dataListener);
    sock.on('end', this.endListener);
    sock.on('error', noop);
    sock.on('close', this.closeListener);
    sock.on('drain', this.drainListener);
  }

  private readonly dataListener = (b: Buffer) => this.onData(b, b.length);
  private readonly readListener = (n: number, buf: Buffer): void => this.onData(buf, n);
  private readonly endListener = () => this.onEOF();
  private readonly closeListener = () => this.onClose();
  private readonly drainListener = () => this.onDrain();
  /** A request that proposed an upgrade, to hand over once it is complete. */
  private upgrading: RequestEvent | null = null;

  // ------------------------------------------------------------------ input

  /** `chunk[0, n)` came in. */
  private onData(chunk: Buffer, n: number): void {
    if (this.closingSince !== 0) return; // draining a closed connection: discard
    if (!this.busy) this.partial = true;
    if (this.batching) {
      this.pump(this.h.receive(chunk, n)); // joins the output already queued for this turn
      return;
    }
    this.batching = true; // what the app sends during the pump is collected, not queued
    this.pump(this.h.receive(chunk, n));
    // A connection that closes after this response gains nothing from waiting: write now.
    if (this.h.shouldClose) {
      this.flush();
    } else {
      this.batching = false;
      this.flushLater();
    }
  }

  private onEOF(): void {
    if (this.dead) return;
    if (this.closingSince !== 0) {
      this.sock.destroy();
      return;
    }
    this.pump(this.h.receiveEOF());
    this.flushLater();
  }

  /** Deliver events; continue with held pipelined requests while responses end synchronously. */
  private pump(events: H11Event[]): void {
    const h = this.h;
    for (;;) {
      for (let i = 0; i < events.length; i++) {
        const ev = events[i]!;
        switch (ev.type) {
          case 'request':
            if (ev.method === 'CONNECT') {
              // No tunnels here: refuse before the app sees it; what follows is never read as HTTP.
              this.protocolError(501);
              return;
            }
            this.busy = true;
            this.partial = false;
            this.peerCloses = !ev.keepAlive;
            this.requestSince = clock.now;
            // As Node: an upgrade goes to the 'upgrade' listeners if there are any (here, only
            // without a body, which would be HTTP's to read first), else it is a request.
            if (ev.upgrade !== null && ev.bodyKind === 'none' && this.owner.takesUpgrades) this.upgrading = ev;
            else this.ex = this.owner.startRequest(this, ev);
            break;
          case 'data':
            // (a chunk may alias READ_BUFFER, which the next read overwrites)
            this.ex?.onData(this.direct ? Buffer.from(ev.chunk) : ev.chunk);
            break;
          case 'end':
            if (this.upgrading !== null) {
              this.handOver(this.upgrading);
              return;
            }
            this.ex?.onEnd(ev.trailers);
            break;
          case 'error':
            this.protocolError(ev.status);
            return;
        }
      }
      if (this.busy || this.dead || h.shouldClose || h.bufferedBytes === 0) return;
      events = h.receive();
      if (events.length === 0) return;
    }
  }

  private protocolError(status: number): void {
    this.peerCloses = false;
    const h = this.h;
    const ex = this.ex;
    this.ex = null;
    if (!h.responseStarted) {
      this.send(h.errorResponse(status));
      this.owner.countStatus(status);
    } else {
      // Mid-response: nothing sensible can follow; close once what we have is out.
      this.hardClose = true;
    }
    if (this.busy) {
      this.busy = false;
      this.owner.requestAborted(this);
    }
    ex?.onAbort(Object.assign(new Error(`bad request body: ${status}`), { code: 'HPE_INVALID', status }));
  }

  private hardClose = false;
  /** The current (last) request said it is the client's last one. */
  private peerCloses = false;

  /**
   * The socket leaves the engine for the upgrade listener: what earlier (pipelined)
   * responses produced is written first, our listeners come off (as Node's http server
   * does, flowing reset so that the new owner's 'data' listener starts the flow), and the
   * listener gets the bytes read past the request. Nothing is parsed as HTTP again.
   */
  private handOver(ev: RequestEvent): void {
    this.upgrading = null;
    const sock = this.sock;
    this.writeOut();
    const head = this.h.detach();
    // The new owner reads through 'data' events: what comes into READ_BUFFER is copied into
    // the socket's stream from now on (backpressure: false stops reading until resume()).
    if (this.direct) readAsStream(sock);
    else sock.off('data', this.dataListener);
    this.writesDirect = false;
    sock.off('end', this.endListener);
    sock.off('close', this.closeListener);
    sock.off('drain', this.drainListener);
    sock.off('error', noop);
    (sock as { readableFlowing: boolean | null }).readableFlowing = null;
    this.dead = true;
    this.busy = false;
    // Still a connection of this worker's (workerConnections) until it closes.
    sock.once('close', () => this.release());
    this.owner.connClosed(this);
    this.owner.upgrade(this, ev, head);
  }

  // ------------------------------------------------------------------ output

  /** Queue response bytes; they go out at the end of the current batch (or tick). */
  send(o: Output): void {
    const n = o.length;
    if (n === 0 || this.dead) return;
    this.out.push(o);
    this.outLen += n;
    if (typeof o !== 'string') this.outStrings = false;
    this.flushLater();
  }

  /** The response of `ex` ended (its last bytes were sent). */
  finishExchange(ex: Exchange, status: number): void {
    if (this.ex === ex) this.ex = null;
    this.busy = false;
    this.idleSince = clock.now;
    this.partial = this.h.bufferedBytes > 0;
    this.owner.requestFinished(this, status);
    if (ex.onFlushed !== undefined) {
      this.flushed.push(ex);
      this.flushedStatus.push(status);
    }
    this.flushLater();
  }

  /** The app gave up on the response (error after the head was sent): close the connection. */
  abortExchange(ex: Exchange): void {
    if (this.ex === ex) this.ex = null;
    if (this.busy) {
      this.busy = false;
      this.owner.requestAborted(this);
    }
    this.hardClose = true;
    this.flushLater();
  }

  private flushLater(): void {
    if (this.batching) return;
    this.batching = true;
    toFlush.push(this);
    if (toFlush.length === 1) setImmediate(flushAll);
  }

  /** Write everything queued, continue with held requests, close when the engine says so. */
  flush(): void {
    const h = this.h;
    // Responses that ended asynchronously: parse the next held (pipelined) request now.
    if (!this.busy && !this.dead && !h.shouldClose && h.bufferedBytes > 0 && h.readState === 'head') {
      this.pump(h.receive());
    }
    this.batching = false;
    this.writeOut();
    if (this.drainOwed && this.inFlight === 0 && this.sock.writableLength === 0) this.onDrain();
    const nFlushed = this.flushed.length;
    if (nFlushed === 1) {
      // The usual case, without new arrays: emptied before anyone hears, so that a response
      // a listener ends is told after the next write, like the case below.
      const ex = this.flushed.pop()!;
      ex.onFlushed!(this.flushedStatus.pop()!);
    } else if (nFlushed !== 0) {
      const done = this.flushed;
      const st = this.flushedStatus;
      this.flushed = [];
      this.flushedStatus = [];
      for (let i = 0; i < done.length; i++) done[i]!.onFlushed!(st[i]!);
    }
    if (this.dead) return;
    if (this.hardClose) {
      this.closeNow();
      return;
    }
    if (h.shouldClose) {
      if (this.busy) return;
      // The client said this request was its last (Connection: close, or HTTP/1.0 without
      // keep-alive) and sent nothing after it: nothing can arrive that a close would throw
      // away, so close once the bytes are out instead of waiting for its FIN (one wake-up and
      // read less per connection). Otherwise linger (endGracefully).
      if (this.peerCloses && h.bufferedBytes === 0) this.closeAfterWrite();
      else this.endGracefully();
      return;
    }
    const held = !this.busy ? false : h.bufferedBytes > MAX_HELD;
    if (held !== this.pauseHeld) {
      this.pauseHeld = held;
      this.updatePause();
    }
  }

  /** What is queued, in one write. */
  private writeOut(): void {
    const out = this.out;
    const n = out.length;
    if (n === 0 || this.dead) return;
    if (this.outStrings) {
      let str = out[0] as string;
      for (let i = 1; i < n; i++) str += out[i] as string;
      this.write(str);
    } else if (n === 1) {
      this.write(out[0]!);
    } else {
      this.write(Buffer.concat(out.map(toBytes), this.outLen));
    }
    out.length = 0;
    this.outLen = 0;
    this.outStrings = true;
  }

  private write(data: Output): void {
    if (this.writesDirect) {
      const pending = writeDirect(this.sock, data, this);
      if (pending !== false) {
        this.inFlight += pending;
        return;
      }
    }
    if (typeof data === 'string') this.sock.write(data, 'latin1');
    else this.sock.write(data);
  }

  /** A direct write that the kernel could not take at once is done. */
  writeDone(bytes: number, status: number): void {
    this.inFlight -= bytes;
    if (status < 0) this.sock.destroy();
    else if (this.inFlight === 0 && this.sock.writableLength === 0) this.onDrain();
  }

  /** Body backpressure from the app side. */
  bodyPaused(paused: boolean): void {
    if (paused === this.pauseBody) return;
    this.pauseBody = paused;
    this.updatePause();
  }

  /** The app started reading the request body: send `100 Continue` if the client waits for it. */
  bodyWanted(): void {
    if (this.busy && !this.dead) this.send(this.h.send100Continue());
    this.bodyPaused(false);
  }

  private updatePause(): void {
    if (this.dead) return;
    if (this.pauseHeld || this.pauseBody) this.sock.pause();
    else this.sock.resume();
  }

  /**
   * True when enough is queued (for this turn's write, in the socket, or in flight) that a body
   * writer should wait for drain(). Counting this turn's queue matters: a handler that writes
   * in a loop would otherwise queue its whole body in memory before the first write.
   */
  get congested(): boolean {
    if (this.outLen + this.sock.writableLength + this.inFlight <= WRITE_HWM) return false;
    this.drainOwed = true;
    return true;
  }
  /** Someone was told to wait: a flush that the kernel takes whole must say 'drain' itself. */
  private drainOwed = false;

  /** Resolves on 'drain' or close. */
  drain(): Promise<void> {
    return new Promise((resolve) => (this.waiters ??= []).push(resolve));
  }

  private onDrain(): void {
    this.drainOwed = false;
    const w = this.waiters;
    if (w) {
      this.waiters = null;
      for (const f of w) f();
    }
    const ex = this.ex as (Exchange & { onDrain?(): void }) | null;
    ex?.onDrain?.();
  }

  // ------------------------------------------------------------------ closing

  /** A deadline passed with no complete head: answer `status` (408) and close. */
  timeOut(status: number): void {
    if (this.busy || this.dead || this.closingSince !== 0) return;
    this.protocolError(status);
    this.flush();
  }

  /** Close after flushing: half-close, discard what the peer still sends, destroy later (sweep). */
  endGracefully(): void {
    if (this.dead || this.closingSince !== 0) return;
    this.closingSince = clock.now;
    this.release();
    this.h.startClosing();
    this.sock.end();
    this.sock.resume();
  }

  /**
   * A closing connection has lingered `ms` since we closed, or since the client last took some
   * of the bytes still queued for it: a client that reads a large last response slowly keeps
   * it, one that stops reading does not.
   */
  lingered(now: number, ms: number): boolean {
    const unsent = unsentBytes(this.sock);
    if (unsent < this.unsentAtSweep) this.closingSince = now;
    this.unsentAtSweep = unsent;
    return now - this.closingSince > ms;
  }

  /** End our side and close the socket as soon as what was written is out. */
  private closeAfterWrite(): void {
    if (this.dead || this.closingSince !== 0) return;
    this.closingSince = clock.now;
    this.release();
    this.h.startClosing();
    this.sock.destroySoon();
  }

  closeNow(): void {
    if (this.dead) return;
    this.sock.destroy();
  }

  private release(): void {
    if (!this.held) return;
    this.held = false;
    this.owner.connReleased(this);
  }

  private onClose(): void {
    if (this.dead) return;
    this.dead = true;
    this.release();
    this.out.length = 0;
    const ex = this.ex;
    this.ex = null;
    if (this.busy) {
      this.busy = false;
      this.owner.requestAborted(this);
      ex?.onAbort(Object.assign(new Error('aborted'), { code: 'ECONNRESET' }));
    }
    const w = this.waiters;
    this.waiters = null;
    if (w) for (const f of w) f();
    this.owner.connClosed(this);
  }
}

/** Connections with output (or a state change) waiting for this turn's check phase. */
let toFlush: Conn[] = [];
/** The other of the two arrays flushAll() takes turns with (no array per turn). */
let spareFlush: Conn[] = [];

function flushAll(): void {
  // What a flush queues (an app writing from a 'finish' listener, say) waits for the next turn.
  const batch = toFlush;
  toFlush = spareFlush;
  spareFlush = batch;
  for (let i = 0; i < batch.length; i++) batch[i]!.flush();
  batch.length = 0;
}

function noop(): void {}

/** A coarse clock (ms), advanced by the worker's sweep timer. */
export const clock = { now: Date.now() };
