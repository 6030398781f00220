/**
 * H11Connection: one HTTP/1.1 server-side connection, sans IO.
 * Bytes in -> events (receive / receiveEOF); calls -> bytes out (writeHead / writeBody / writeEnd / respond).
 *
 * The write state changes only through `go(event)`, and every call first asks the table in
 * states.ts whether its event may leave the current state (`allow()`), so a call in the wrong
 * state throws before anything is built. What the response side needs to know about the
 * request comes from its RequestEvent, which the parser hands over when the head completes.
 */
import { LocalProtocolError } from './errors.js';
import { RequestReader, type RequestSink } from './parser.js';
import {
  EMPTY, F_CHUNKED, F_LENGTH, F_NONE, STATUS_TEXT, buildHead, buildInterim, buildLastChunk, buildSwitch, frameChunk,
  statusLine, toOutput, type HeadPlan, type ResponseContext,
} from './serializer.js';
import {
  R_CHUNK_CR, R_CHUNK_DATA, R_CHUNK_LF, R_CHUNK_SIZE, R_CLOSED, R_ERROR, R_HEAD, R_MIGHT_SWITCH, R_SWITCHED, R_TRAILERS,
  R_WAITING, READ_STATES, R_BODY, WE_CLOSE, WE_DATA, WE_END, WE_END_CLOSE, WE_ERROR_RESPONSE, WE_HEAD, WE_INTERIM,
  WE_REQUEST, WE_RESPOND, WE_RESPOND_CLOSE, WE_SWITCH, WRITE_EVENTS, WRITE_EVENT_COUNT, WRITE_STATES, WRITE_STATE_HINT,
  W_BODY, W_CLOSED, W_IDLE, W_NEXT, W_READY, trace, type ReadStateName, type WriteStateName,
} from './states.js';
import type { H11Event, H11Options, OutgoingHeaders, Output, ReadState, RequestEvent, WriteState } from './types.js';

const READ_STATE: ReadState[] = [];
READ_STATE[R_HEAD] = 'head';
READ_STATE[R_BODY] = READ_STATE[R_CHUNK_SIZE] = READ_STATE[R_CHUNK_DATA] = READ_STATE[R_CHUNK_CR] =
  READ_STATE[R_CHUNK_LF] = READ_STATE[R_TRAILERS] = 'body';
// Complete, response pending, either way: whether a switch is still possible is the states' detail.
READ_STATE[R_WAITING] = READ_STATE[R_MIGHT_SWITCH] = 'waiting';
READ_STATE[R_CLOSED] = 'closed';
READ_STATE[R_ERROR] = 'error';
READ_STATE[R_SWITCHED] = 'switched';

function checkFinalStatus(status: number): void {
  if (!Number.isInteger(status) || status < 100 || status > 599) throw new LocalProtocolError(`invalid status code ${status}`);
  if (status < 200) throw new LocalProtocolError('1xx responses must be sent with writeInterim()');
}

export class H11Connection implements RequestSink {
  /** Date header provider (IMF-fixdate), or null for no Date header. Settable. */
  date: (() => string) | null;

  private readonly r: RequestReader;
  /** Write state (W_*, see states.ts). Changed only by go(). */
  private ws = W_IDLE;
  /** The request being answered (its facts decide the response's framing). */
  private req: RequestEvent | null = null;
  private closing = false;
  private continueSent = false;
  private remaining = 0;
  private readonly plan: HeadPlan = { framing: F_NONE, close: false, length: -1 };
  private readonly ctx: ResponseContext = { isHead: false, v10: false, keepAlive: true, closing: false };

  constructor(opts: H11Options = {}) {
    this.r = new RequestReader(opts, this);
    this.date = opts.date ?? null;
  }

  // ------------------------------------------------------------------ input

  /**
   * Feed bytes from the socket. Call with no argument to continue parsing bytes held back
   * while the previous response was in progress (after writeEnd()/respond() when !shouldClose).
   * Body `data` chunks may alias `chunk` (do not reuse it). After a protocol switch nothing is
   * parsed: the bytes are only held for takeBuffered(). `length`: how much of `chunk` to take
   * (all of it by default), so that a read into a reused buffer needs no subarray.
   */
  receive(chunk?: Buffer, length: number = chunk === undefined ? 0 : chunk.length): H11Event[] {
    const out: H11Event[] = [];
    this.r.receive(chunk, length, out);
    return out;
  }

  /** The peer half-closed its side. Returns the resulting events (possibly an `error`). */
  receiveEOF(): H11Event[] {
    const out: H11Event[] = [];
    this.r.receiveEOF(out);
    return out;
  }

  /** @internal The parser completed a request head. */
  onRequest(ev: RequestEvent): void {
    this.req = ev;
    this.go(WE_REQUEST);
    this.continueSent = false;
  }

  // ------------------------------------------------------------------ output

  /** 1xx interim response (100, 102, 103). Returns EMPTY for HTTP/1.0 clients (RFC 9110 15.2). */
  writeInterim(status: number, headers?: OutgoingHeaders | null): Output {
    this.go(WE_INTERIM, 'writeInterim');
    if (this.r.rs === R_ERROR) throw new LocalProtocolError('the request failed: no interim response');
    if (!Number.isInteger(status) || status < 100 || status > 199) throw new LocalProtocolError(`invalid interim status ${status}`);
    if (status === 101) throw new LocalProtocolError('101 is sent with switchProtocols()');
    if (this.req!.version === '1.0') return EMPTY;
    const b = buildInterim(status, headers);
    if (status === 100) this.continueSent = true;
    return b;
  }

  /** `HTTP/1.1 100 Continue` if the current request expects it and it was not sent yet, else EMPTY. */
  send100Continue(): Output {
    if (this.ws !== W_READY || !this.req!.expectContinue || this.continueSent || this.r.rs === R_ERROR) return EMPTY;
    return this.writeInterim(100);
  }

  /**
   * Final response head. Framing: the app's Content-Length if set; else `Transfer-Encoding: chunked`
   * (HTTP/1.1) or close-delimited (HTTP/1.0). HEAD/204/304: no body. Adds `Connection: close`
   * when the connection will close. Throws InvalidHeaderError (nothing written) on bad headers.
   * On an Upgrade request this declines the upgrade.
   */
  writeHead(status: number, headers?: OutgoingHeaders | null, reason?: string): Output {
    this.beginFinal(WE_HEAD, 'writeHead', status);
    const head = buildHead(this.plan, this.ctx, status, reason, headers, -1, this.date !== null ? this.date() : null);
    if (this.req!.upgrade !== null) this.r.decline();
    this.go(WE_HEAD);
    this.remaining = this.plan.length;
    return head;
  }

  /** Body bytes, framed for the response (chunked-encoded when chunked; EMPTY for bodiless responses). */
  writeBody(chunk: Buffer | string): Buffer {
    this.go(WE_DATA, 'writeBody');
    const framing = this.plan.framing;
    if (framing === F_NONE) return EMPTY;
    if (framing === F_CHUNKED) return frameChunk(chunk);
    const b = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    if (framing === F_LENGTH) {
      if (b.length > this.remaining) throw new LocalProtocolError('response body exceeds the declared Content-Length');
      this.remaining -= b.length;
    }
    return b;
  }

  /**
   * Ends the response (last chunk + trailers when chunked; trailers are ignored otherwise).
   * A Content-Length body that is too short forces the connection to close.
   */
  writeEnd(trailers?: OutgoingHeaders | null): Output {
    this.allow(WE_END, 'writeEnd');
    let out: Output = EMPTY;
    let force = false;
    const framing = this.plan.framing;
    if (framing === F_CHUNKED) out = buildLastChunk(trailers);
    else if (framing === F_LENGTH && this.remaining > 0) force = true;
    this.finish(WE_END, WE_END_CLOSE, force);
    return out;
  }

  /**
   * Complete response (head + body + end) as one Output. Sets Content-Length from the body.
   * On an Upgrade request this declines the upgrade.
   */
  respond(status: number, headers?: OutgoingHeaders | null, body?: Buffer | string | null, reason?: string): Output {
    this.beginFinal(WE_RESPOND, 'respond', status);
    const bodyBytes = body == null ? 0 : typeof body === 'string' ? Buffer.byteLength(body) : body.length;
    const head = buildHead(this.plan, this.ctx, status, reason, headers, bodyBytes, this.date !== null ? this.date() : null);
    const out = toOutput(head, body, this.plan.framing === F_NONE ? 0 : bodyBytes);
    if (this.req!.upgrade !== null) this.r.decline();
    this.finish(WE_RESPOND, WE_RESPOND_CLOSE, false);
    return out;
  }

  /**
   * Complete minimal `text/plain` response with `Connection: close`, for rejecting a request
   * (typically the status of an `error` event). Only valid while no response is in progress.
   * Afterwards the connection is closed (shouldClose === true).
   */
  errorResponse(status: number, reason?: string): Output {
    this.allow(WE_ERROR_RESPONSE, 'errorResponse');
    if (!Number.isInteger(status) || status < 200 || status > 599) throw new LocalProtocolError(`invalid status code ${status}`);
    const phrase = STATUS_TEXT[status] ?? 'Error';
    const body = phrase + '\n';
    const noBody = this.ws === W_READY && this.req!.method === 'HEAD';
    let head = statusLine(status, reason) + 'Content-Type: text/plain; charset=utf-8\r\nContent-Length: ' + body.length +
      '\r\nConnection: close\r\n';
    if (this.date !== null) head += 'Date: ' + this.date() + '\r\n';
    head += '\r\n';
    this.go(WE_ERROR_RESPONSE);
    this.r.close();
    return toOutput(head, body, noBody ? 0 : body.length);
  }

  /**
   * Graceful stop: responses not yet started carry `Connection: close`, and the connection closes
   * after the current response (immediately when idle).
   */
  startClosing(): void {
    this.closing = true;
    if (this.ws === W_IDLE) {
      this.go(WE_CLOSE);
      this.r.close();
    }
  }

  // ------------------------------------------------------------------ protocol switch

  /**
   * Accepts the current request's Upgrade: returns the `101 Switching Protocols` head (the app's
   * headers, plus `Upgrade` / `Connection: Upgrade` when it left them out). Afterwards both
   * sides are `switched`: nothing is ever parsed or written as HTTP again, and takeBuffered()
   * gives the bytes that followed the request. The request must be complete (read its body
   * first). Throws LocalProtocolError when there is nothing to switch, InvalidHeaderError
   * (nothing changed) for headers a 101 cannot carry.
   */
  switchProtocols(headers?: OutgoingHeaders | null): Output {
    this.checkSwitch('switchProtocols');
    const head = buildSwitch(headers, this.req!.upgrade!);
    this.switched();
    return head;
  }

  /**
   * Like switchProtocols() for an app that writes the 101 (or a refusal) on the socket itself,
   * as Node's `'upgrade'` listeners do: moves to `switched` without producing output and returns
   * the bytes that followed the request (Node's `head`).
   */
  detach(): Buffer {
    this.checkSwitch('detach');
    this.switched();
    return this.r.takeBuffered();
  }

  /**
   * After a switch: the bytes received past the request, and since (receive() holds them), which
   * belong to the new protocol. Each call returns what arrived since the previous one.
   */
  takeBuffered(): Buffer {
    if (this.r.rs !== R_SWITCHED) throw new LocalProtocolError('takeBuffered() before switchProtocols()/detach()');
    return this.r.takeBuffered();
  }

  // ------------------------------------------------------------------ state

  /** The socket must be closed once pending output is flushed; no further response will be produced. */
  get shouldClose(): boolean {
    const rs = this.r.rs;
    return this.ws === W_CLOSED || rs === R_ERROR || (rs === R_CLOSED && this.ws === W_IDLE);
  }

  get readState(): ReadState {
    return READ_STATE[this.r.rs]!;
  }

  get writeState(): WriteState {
    return this.ws === W_IDLE && this.r.rs >= R_CLOSED ? 'closed' : WRITE_STATES[this.ws]!;
  }

  /** The precise states, as named in states.ts (for debugging and tests). */
  get states(): { readonly read: ReadStateName; readonly write: WriteStateName } {
    return { read: READ_STATES[this.r.rs]!, write: WRITE_STATES[this.ws]! };
  }

  /** A final response head has been produced for the current request (and writeEnd not yet called). */
  get responseStarted(): boolean {
    return this.ws === W_BODY;
  }

  /** Bytes received but not yet parsed (held pipelined requests / partial lines). Pause reading when large. */
  get bufferedBytes(): number {
    return this.r.bufferedBytes;
  }

  get isClosing(): boolean {
    return this.closing;
  }

  // ------------------------------------------------------------------ internals

  /** The only place the write state changes: the table decides where `ev` leads (`call` names it in errors). */
  private go(ev: number, call?: string): void {
    const from = this.ws;
    const to = W_NEXT[from * WRITE_EVENT_COUNT + ev]!;
    if (to < 0) throw wrongState(from, ev, call);
    if (trace !== null) trace('write', this, from, ev, to);
    this.ws = to;
  }

  /** Throws unless the table lets `ev` leave the current write state. */
  private allow(ev: number, call: string): void {
    if (W_NEXT[this.ws * WRITE_EVENT_COUNT + ev]! < 0) throw wrongState(this.ws, ev, call);
  }

  private beginFinal(ev: number, call: string, status: number): void {
    this.allow(ev, call);
    const r = this.r;
    if (r.rs === R_ERROR) throw new LocalProtocolError('the request failed: use errorResponse() or close the connection');
    checkFinalStatus(status);
    const req = this.req!;
    const method = req.method;
    if (method === 'CONNECT' && status < 300) throw new LocalProtocolError('CONNECT tunnels are not supported');
    const ctx = this.ctx;
    ctx.isHead = method === 'HEAD';
    ctx.v10 = req.version === '1.0';
    ctx.keepAlive = req.keepAlive;
    ctx.closing = this.closing;
  }

  private finish(keep: number, close: number, force: boolean): void {
    const r = this.r;
    let closes = force || this.plan.close || this.closing || !r.requestComplete;
    if (!closes && r.eof && r.bufferedBytes === 0) closes = true;
    if (closes) {
      this.go(close);
      r.close();
    } else {
      this.go(keep);
      r.resume();
    }
  }

  private checkSwitch(call: string): void {
    this.allow(WE_SWITCH, call);
    const r = this.r;
    if (this.req!.upgrade === null) throw new LocalProtocolError(`${call}(): the request did not propose an Upgrade`);
    if (!r.switchPending) {
      throw new LocalProtocolError(r.rs === R_ERROR ? `${call}(): the request failed` : `${call}(): the request body was not received yet`);
    }
  }

  private switched(): void {
    this.r.switchProtocols();
    this.go(WE_SWITCH);
  }
}

/** A call (or, from go(), an event) the write state does not allow. */
function wrongState(from: number, ev: number, call?: string): LocalProtocolError {
  const name = WRITE_STATES[from]!;
  const what = call !== undefined ? `${call}()` : `'${WRITE_EVENTS[ev]}'`;
  return new LocalProtocolError(`${what}: ${WRITE_STATE_HINT[name]} (write state '${name}')`);
}
