/**
 * The node interface on the h11 engine: `req` is a real `http.IncomingMessage`; `res` is an
 * object whose prototype is `http.ServerResponse.prototype` and whose whole API lives in
 * OWN properties that drive the engine. Own properties matter: Express re-parents both
 * objects (`Object.setPrototypeOf(res, app.response)`), which keeps own properties and drops
 * anything put on a prototype of ours. Inherited getters (`headersSent`, `writableEnded`,
 * `writableFinished`, `connection`) work from the plain fields we keep (`_header`,
 * `finished`, `outputSize`, `socket`). See README.md for what is and is not supported.
 */
import http, { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Conn, Exchange } from './conn.js';
import { H11Error, InvalidHeaderError, type Output, type RequestEvent } from './engine/index.js';
import { isFieldValueString } from './engine/chars.js';
import { headerNameKind } from './engine/serializer.js';

type HeaderVal = string | number | readonly (string | number)[];
type HeaderMap = Record<string, [string, HeaderVal]>;
type Res = ServerResponse & Record<string, any> & { _h11: NodeEx };

/** The headers set so far, or null. */
function hdrs(res: Res): HeaderMap | null {
  return (res as unknown as Record<symbol, HeaderMap | null>)[kOutHeaders]!;
}

function hdrsFor(res: Res): HeaderMap {
  const r = res as unknown as Record<symbol, HeaderMap | null>;
  return (r[kOutHeaders] ??= Object.create(null) as HeaderMap);
}
type Req = IncomingMessage & Record<string, any> & { _h11: NodeEx };

const SR_PROTO = ServerResponse.prototype;
const EMPTY_LIST: never[] = [];

// Node's lazy `req.headers` / `req.trailers` getters build from rawHeaders up to a count the
// parser normally sets under an internal symbol; find it once (fallback: eager objects).
const probe = new IncomingMessage(null as unknown as Socket);
const symOf = (name: string) => Object.getOwnPropertySymbols(probe).find((s) => s.description === name);
const kHeadersCount = symOf('kHeadersCount');
const kTrailersCount = symOf('kTrailersCount');
const DEFAULT_HWM = probe.readableHighWaterMark;
const HAS_CLIENT = 'client' in probe;
// Where Node's ServerResponse keeps the headers set so far (`{ lowercased: [name, value] }`):
// ours live there too, so that code calling OutgoingMessage.prototype.setHeader directly on
// res (the `cookies` module under cookie-session does) sets ours.
const kOutHeaders: symbol =
  Object.getOwnPropertySymbols(new ServerResponse(probe)).find((s) => s.description === 'kOutHeaders') ?? Symbol('kOutHeaders');

function headerObject(raw: string[]): Record<string, string | string[]> {
  const m = new IncomingMessage(null as unknown as Socket) as any;
  const dst: Record<string, string | string[]> = {};
  for (let i = 0; i < raw.length; i += 2) m._addHeaderLine(raw[i], raw[i + 1], dst);
  return dst;
}
/** `_header` once the head is committed (truthy: the inherited `headersSent` getter reads it). */
const SENT = 'HTTP/1.1 (h11)\r\n';

function headersSentError(what: string): Error {
  return Object.assign(new Error(`Cannot ${what} after they are sent to the client`), { code: 'ERR_HTTP_HEADERS_SENT' });
}

function checkName(name: unknown): void {
  if (typeof name !== 'string' || headerNameKind(name) < 0) {
    throw Object.assign(new InvalidHeaderError(`Header name must be a valid HTTP token ["${String(name)}"]`, String(name)), {
      code: 'ERR_INVALID_HTTP_TOKEN',
    });
  }
}

function checkValue(name: string, value: unknown): void {
  if (value === undefined) {
    throw Object.assign(new TypeError(`Invalid value "undefined" for header "${name}"`), { code: 'ERR_HTTP_INVALID_HEADER_VALUE' });
  }
  if (typeof value === 'object' && value !== null && Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) checkValue(name, value[i]);
    return;
  }
  if (typeof value !== 'number' && !isFieldValueString(String(value))) {
    throw Object.assign(new InvalidHeaderError(`Invalid character in header content ["${name}"]`, name), { code: 'ERR_INVALID_CHAR' });
  }
}

function checkRecord(headers: Record<string, unknown>): void {
  for (const name in headers) {
    const v = headers[name];
    if (v === undefined) continue;
    checkName(name);
    checkValue(name, v);
  }
}

/** Per-request state shared by req and res. */
export class NodeEx implements Exchange {
  /** Headers given to writeHead while none were set before: passed to the engine as they are. */
  wh: Record<string, HeaderVal> | null = null;
  /** The engine produced the response head. */
  started = false;
  dead = false;
  needDrain = false;
  trailers: Record<string, HeaderVal> | null = null;
  req: Req;
  res: Res;

  constructor(
    readonly conn: Conn,
    ev: RequestEvent,
  ) {
    const sock = conn.sock;
    const req = newRequest(ev, sock) as Req;
    req._h11 = this;
    if (ev.bodyKind !== 'none') req._read = readBody;
    this.req = req;
    this.res = newRes(this, req, sock);
  }

  onData(chunk: Buffer): void {
    if (!this.req.push(chunk)) this.conn.bodyPaused(true);
  }

  onEnd(trailers: string[] | null): void {
    const req = this.req;
    if (req.complete) {
      // No body: the stream was born ended (newRequest). A 'readable' listener the handler
      // attached at once would, under Node's parser, hear the end's 'readable' event (the
      // parser pushes null after the handler returns): replay that push for it.
      if (req._events.readable !== undefined && !req.readableEnded) {
        req._readableState.ended = false;
        req.push(null);
      }
      return;
    }
    req.complete = true;
    if (trailers !== null) {
      req.rawTrailers = trailers;
      if (kTrailersCount !== undefined) req[kTrailersCount as any] = trailers.length;
      else req.trailers = headerObject(trailers) as any;
    }
    req.push(null);
  }

  onAbort(err: Error): void {
    this.dead = true;
    const res = this.res;
    res.destroyed = true;
    const req = this.req;
    if (!req.complete || !req.readableEnded) {
      // Node's own _destroy would destroy the socket, before our 400 is flushed.
      req._destroy = reqDestroy;
      req.destroy(err);
    }
    if (res._events !== undefined) process.nextTick(emitClose, res);
  }

  onFlushed(): void {
    const res = this.res;
    if (res._events !== undefined) {
      res.emit('finish');
      res.emit('close');
    }
    const req = this.req;
    // Like Node: a body nobody read is dumped, so 'end'/'close' listeners hear about it (one
    // that already ended has nothing left to dump).
    if (req._eventsCount !== 0 && !req._consuming && !req.readableEnded) req._dump();
  }

  onDrain(): void {
    if (this.needDrain) {
      this.needDrain = false;
      this.res.emit('drain');
    }
  }

  /** The headers to give the engine. */
  out(): Record<string, HeaderVal> | (string | number)[] | null {
    const hh = hdrs(this.res);
    if (hh === null) return this.wh;
    const flat: (string | number)[] = [];
    for (const k in hh) {
      const e = hh[k]!;
      const v = e[1];
      if (typeof v === 'object') for (let i = 0; i < v.length; i++) flat.push(e[0], v[i]!);
      else flat.push(e[0], v);
    }
    return flat;
  }

  startHead(res: Res): void {
    const head = this.conn.h.writeHead(res.statusCode, this.out() as any, reasonOf(res));
    this.started = true;
    res._header = SENT;
    this.conn.send(head);
  }
}

/** The request as Node's parser would have made it; without a body, complete and ending on first read. */
function newRequest(ev: RequestEvent, sock: Socket): IncomingMessage {
  const req = (sock.readableHighWaterMark === DEFAULT_HWM ? bareRequest(sock) : new IncomingMessage(sock)) as IncomingMessage & Record<string | symbol, any>;
  req.method = ev.method;
  req.url = ev.target;
  const v = ev.version;
  req.httpVersion = v;
  req.httpVersionMajor = 1;
  req.httpVersionMinor = v === '1.1' ? 1 : 0;
  // Names as the client spelled them; Node's lazy `headers` getter lowercases from these.
  req.rawHeaders = ev.rawHeaders;
  if (kHeadersCount !== undefined) req[kHeadersCount] = ev.rawHeaders.length;
  else req.headers = headerObject(ev.headers) as any;
  if (ev.bodyKind === 'none') {
    // Born ended, as push(null) leaves a stream once its 'readable' tick has run: 'end' comes
    // with the first read, the reader's listeners are all that costs (no _read(), no push, no
    // extra tick per request).
    req.complete = true;
    req._readableState.ended = true;
  }
  return req;
}

/**
 * `new IncomingMessage(sock)` for a socket with the default highWaterMark, which is all the
 * socket is asked for. Given a socket, the constructor passes `{ highWaterMark }` down to
 * Readable, whose option reads are megamorphic (every stream class in the process calls it):
 * ~2% of the worker's CPU with 8-deep pipelining. Without options they are skipped.
 */
function bareRequest(sock: Socket): IncomingMessage {
  const req = new IncomingMessage(null as unknown as Socket) as IncomingMessage & { client?: Socket };
  req.socket = sock;
  if (HAS_CLIENT) req.client = sock;
  return req;
}

/** The `req` of an `upgrade` event: a request without a body, on the socket handed over. */
export function upgradeRequest(ev: RequestEvent, sock: Socket): IncomingMessage {
  return newRequest(ev, sock);
}

function reqDestroy(this: Req, err: Error | null, cb: (err?: Error | null) => void): void {
  if (!this.readableEnded || !this.complete) {
    this.aborted = true;
    this.emit('aborted');
  }
  process.nextTick(cb, this.listenerCount('error') === 0 ? null : err);
}

function emitClose(res: Res): void {
  res.emit('close');
}

function reasonOf(res: Res): string | undefined {
  const m = res.statusMessage;
  return m ? m : undefined;
}

function readBody(this: Req): void {
  this._consuming = true;
  this._h11.conn.bodyWanted();
}

function toBuffer(chunk: unknown, encoding: unknown): Buffer | string {
  if (typeof chunk === 'string') {
    if (encoding === undefined || encoding === 'utf8' || encoding === 'utf-8' || encoding === null) return chunk;
    return Buffer.from(chunk, encoding as BufferEncoding);
  }
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  throw Object.assign(new TypeError('The "chunk" argument must be of type string or an instance of Buffer or Uint8Array'), {
    code: 'ERR_INVALID_ARG_TYPE',
  });
}

// ---------------------------------------------------------------- the ServerResponse API

function setHeader(this: Res, name: string, value: HeaderVal): Res {
  const x = this._h11;
  if (x.started || this.finished) throw headersSentError('set headers');
  checkName(name);
  checkValue(name, value);
  hdrsFor(this)[name.toLowerCase()] = [name, value];
  return this;
}

function appendHeader(this: Res, name: string, value: HeaderVal): Res {
  const x = this._h11;
  if (x.started || this.finished) throw headersSentError('append headers');
  checkName(name);
  checkValue(name, value);
  const hh = hdrsFor(this);
  const key = name.toLowerCase();
  const e = hh[key];
  if (e === undefined) hh[key] = [name, value];
  else e[1] = ([] as (string | number)[]).concat(e[1] as any, value as any);
  return this;
}

function setHeaders(this: Res, headers: Headers | Map<string, HeaderVal>): Res {
  for (const [k, v] of headers as Iterable<[string, HeaderVal]>) setHeader.call(this, k, v);
  return this;
}

function getHeader(this: Res, name: string): HeaderVal | undefined {
  const hh = hdrs(this);
  if (hh === null) return undefined;
  const e = hh[name.toLowerCase()];
  return e === undefined ? undefined : e[1];
}

function getHeaders(this: Res): Record<string, HeaderVal> {
  const out = Object.create(null) as Record<string, HeaderVal>;
  const hh = hdrs(this);
  if (hh !== null) for (const k in hh) out[k] = hh[k]![1];
  return out;
}

function getHeaderNames(this: Res): string[] {
  const hh = hdrs(this);
  return hh === null ? [] : Object.keys(hh);
}

function getRawHeaderNames(this: Res): string[] {
  const hh = hdrs(this);
  if (hh === null) return [];
  const out: string[] = [];
  for (const k in hh) out.push(hh[k]![0]);
  return out;
}

function hasHeader(this: Res, name: string): boolean {
  const hh = hdrs(this);
  return hh !== null && hh[name.toLowerCase()] !== undefined;
}

function removeHeader(this: Res, name: string): void {
  const x = this._h11;
  if (x.started || this.finished) throw headersSentError('remove headers');
  const hh = hdrs(this);
  if (hh !== null) delete hh[name.toLowerCase()];
}

function writeHead(this: Res, status: number, reason?: any, headers?: any): Res {
  const x = this._h11;
  if (x.started || this._header) throw headersSentError('write headers');
  if (typeof reason === 'string') this.statusMessage = reason;
  else headers = reason;
  status |= 0;
  if (status < 100 || status > 999) {
    throw Object.assign(new RangeError(`Invalid status code: ${status}`), { code: 'ERR_HTTP_INVALID_STATUS_CODE' });
  }
  this.statusCode = status;
  if (headers != null) {
    if (Array.isArray(headers)) {
      if (headers.length !== 0 && Array.isArray(headers[0])) {
        for (const [k, v] of headers) appendHeader.call(this, k, v);
      } else {
        if ((headers.length & 1) !== 0) throw Object.assign(new TypeError('headers array must have an even length'), { code: 'ERR_INVALID_ARG_VALUE' });
        for (let i = 0; i < headers.length; i += 2) appendHeader.call(this, headers[i], headers[i + 1]);
      }
    } else if (hdrs(this) === null) {
      checkRecord(headers);
      x.wh = headers;
    } else {
      for (const k in headers) if (headers[k] !== undefined) setHeader.call(this, k, headers[k]);
    }
  }
  this._header = SENT;
  return this;
}

function write(this: Res, chunk: any, encoding?: any, cb?: any): boolean {
  if (typeof encoding === 'function') {
    cb = encoding;
    encoding = undefined;
  }
  const x = this._h11;
  if (this.finished) {
    const err = Object.assign(new Error('write after end'), { code: 'ERR_STREAM_WRITE_AFTER_END' });
    if (typeof cb === 'function') process.nextTick(cb, err);
    if (this.listenerCount('error') > 0) process.nextTick(() => this.emit('error', err));
    return false;
  }
  if (chunk === null) throw Object.assign(new TypeError('May not write null values to stream'), { code: 'ERR_STREAM_NULL_VALUES' });
  const body = toBuffer(chunk, encoding);
  if (x.dead) return false;
  if (!x.started) implicitHead(this);
  try {
    if (!x.started) x.startHead(this);
    if (body.length !== 0) x.conn.send(x.conn.h.writeBody(body));
  } catch (err) {
    refused(x, err);
    return false;
  }
  if (typeof cb === 'function') process.nextTick(cb);
  if (x.conn.congested) {
    x.needDrain = true;
    return false;
  }
  return true;
}

function end(this: Res, chunk?: any, encoding?: any, cb?: any): Res {
  if (typeof chunk === 'function') {
    cb = chunk;
    chunk = undefined;
  } else if (typeof encoding === 'function') {
    cb = encoding;
    encoding = undefined;
  }
  if (this.finished) {
    if (typeof cb === 'function') process.nextTick(cb);
    return this;
  }
  const x = this._h11;
  if (x.dead) {
    this.finished = true;
    return this;
  }
  const body = chunk == null ? null : toBuffer(chunk, encoding);
  if (!x.started) implicitHead(this);
  const conn = x.conn;
  const h = conn.h;
  let buf: Output;
  try {
    if (!x.started) {
      // The whole response at once, Content-Length from the body.
      buf = h.respond(this.statusCode, x.out() as any, body, reasonOf(this));
      x.started = true;
      this._header = SENT;
    } else {
      if (body !== null && body.length !== 0) conn.send(h.writeBody(body));
      buf = h.writeEnd(x.trailers as any);
    }
  } catch (err) {
    refused(x, err);
    return this;
  }
  this.finished = true;
  (this as any).writable = false;
  conn.send(buf);
  if (typeof cb === 'function') this.once('finish', cb);
  conn.finishExchange(x, this.statusCode);
  return this;
}

function flushHeaders(this: Res): void {
  const x = this._h11;
  if (x.started || x.dead || this.finished) return;
  implicitHead(this);
  try {
    x.startHead(this);
  } catch (err) {
    refused(x, err);
  }
}

/**
 * A head the app did not write itself goes through `res.writeHead` when someone replaced it,
 * as Node's implicit head does: `on-headers` (express-session's cookie, morgan's and
 * response-time's timing) wraps writeHead to run just before the head is committed. Our own
 * writeHead only records, so calling it first changes nothing else.
 */
function implicitHead(res: Res): void {
  if (res.writeHead !== writeHead && !res._header) res.writeHead(res.statusCode);
}

/**
 * The engine would not frame what the app asked for (a Content-Length that does not match the
 * body, Transfer-Encoding it cannot honour). Node would send such bytes as they are; we send
 * none of them: the app error is logged and the response becomes a 500, or the connection
 * closes when the head is already out. Not thrown into the app, whose res.end() often runs in
 * a callback where a throw would take the whole worker down. Anything else is rethrown.
 */
function refused(x: NodeEx, err: unknown): void {
  if (!(err instanceof H11Error)) throw err;
  x.conn.owner.logAppError(err);
  nodeAppError(x);
}

function addTrailers(this: Res, headers: Record<string, HeaderVal> | [string, string][]): void {
  const x = this._h11;
  const t = (x.trailers ??= Object.create(null) as Record<string, HeaderVal>);
  if (Array.isArray(headers)) for (const [k, v] of headers) t[k] = v;
  else Object.assign(t, headers);
}

function writeContinue(this: Res, cb?: () => void): void {
  const x = this._h11;
  if (!x.dead && !x.started) x.conn.send(x.conn.h.send100Continue());
  if (cb) process.nextTick(cb);
}

function writeProcessing(this: Res, cb?: () => void): void {
  const x = this._h11;
  if (!x.dead && !x.started) x.conn.send(x.conn.h.writeInterim(102));
  if (cb) process.nextTick(cb);
}

function writeEarlyHints(this: Res, hints: Record<string, HeaderVal>, cb?: () => void): void {
  const x = this._h11;
  if (!x.dead && !x.started) x.conn.send(x.conn.h.writeInterim(103, hints as any));
  if (cb) process.nextTick(cb);
}

function destroy(this: Res, err?: Error): Res {
  const x = this._h11;
  if (this.destroyed) return this;
  this.destroyed = true;
  if (!this.finished && !x.dead) {
    x.dead = true;
    x.conn.abortExchange(x);
    if (this._events !== undefined) process.nextTick(emitClose, this);
  }
  void err;
  return this;
}

function setTimeoutNoop(this: Res, _ms?: number, cb?: () => void): Res {
  if (typeof cb === 'function') this.once('timeout', cb);
  return this;
}

function noop(): void {}

function implicitHeader(this: Res): void {
  flushHeaders.call(this);
}

/**
 * The response object. A constructor whose `prototype` is ServerResponse.prototype itself
 * (not an object literal with `__proto__`, which sends V8 through a slow prototype-switching
 * path for every request); the API is stored as own properties so it survives re-parenting.
 */
function H11Response(this: Record<string, unknown>, x: NodeEx, req: Req, sock: Socket): void {
  this._events = undefined;
  this._eventsCount = 0;
  this._maxListeners = undefined;
  this._h11 = x;
  (this as Record<symbol, unknown>)[kOutHeaders] = null;
  this.req = req;
  this.socket = sock;
  this.statusCode = 200;
  this.statusMessage = undefined;
  this.sendDate = true;
  this.finished = false;
  this.writable = true;
  this.destroyed = false;
  this._header = null;
  this.outputSize = 0;
  this.outputData = EMPTY_LIST;
  this.chunkedEncoding = false;
  this.shouldKeepAlive = true;
  this.useChunkedEncodingByDefault = true;
  this.strictContentLength = false;
  this.setHeader = setHeader;
  this.appendHeader = appendHeader;
  this.setHeaders = setHeaders;
  this.getHeader = getHeader;
  this.getHeaders = getHeaders;
  this.getHeaderNames = getHeaderNames;
  this.getRawHeaderNames = getRawHeaderNames;
  this.hasHeader = hasHeader;
  this.removeHeader = removeHeader;
  this.writeHead = writeHead;
  this.write = write;
  this.end = end;
  this.flushHeaders = flushHeaders;
  this.addTrailers = addTrailers;
  this.writeContinue = writeContinue;
  this.writeProcessing = writeProcessing;
  this.writeEarlyHints = writeEarlyHints;
  this.destroy = destroy;
  this.setTimeout = setTimeoutNoop;
  this.cork = noop;
  this.uncork = noop;
  this._implicitHeader = implicitHeader;
}
H11Response.prototype = SR_PROTO;

function newRes(x: NodeEx, req: Req, sock: Socket): Res {
  return new (H11Response as unknown as new (x: NodeEx, req: Req, sock: Socket) => Res)(x, req, sock);
}

void http;

/** An app error: 500 when nothing was sent yet, else the connection is closed. */
export function nodeAppError(x: NodeEx): void {
  const res = x.res;
  if (x.dead || res.finished) return;
  if (!x.started) {
    const conn = x.conn;
    conn.h.startClosing();
    const buf = conn.h.respond(500, { 'Content-Type': 'text/plain; charset=utf-8', Connection: 'close' }, 'Internal Server Error\n');
    res.statusCode = 500;
    res._header = SENT;
    x.started = true;
    res.finished = true;
    conn.send(buf);
    conn.finishExchange(x, 500);
  } else {
    destroy.call(res);
  }
}
