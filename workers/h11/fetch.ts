/**
 * The fetch interface on the h11 engine.
 *
 * Request: a lightweight object whose prototype chain ends in `Request.prototype`
 * (`instanceof Request` holds). `method`, `url` and `headers` are served from the parsed
 * head; anything else (`body`, `json()`, `signal`, `clone()` …) builds the real `Request` on
 * first use, with a body stream fed by the engine and an AbortSignal that fires when the
 * client goes away.
 *
 * Response: while a fetch app runs under h11, `globalThis.Response` is a lightweight subclass
 * (the trick `@hono/node-server` uses too): `new Response(string | Uint8Array | ArrayBuffer | null,
 * init)` only records its arguments, and the worker writes it with one `respond()` — one
 * Buffer, one socket write. Reading it (`text()`, `body`, …) builds the native Response on
 * demand. Other bodies (streams, Blob, FormData …) are native right away and streamed with
 * backpressure.
 */
import type { Conn, Exchange } from './conn.js';
import type { Output, RequestEvent } from './engine/index.js';
import { isFieldValueString, isTokenString } from './engine/chars.js';

/** Like the native Headers constructor: bad names/values throw a TypeError in the app. */
function checkInitHeaders(h: unknown): void {
  if (h == null || typeof h !== 'object' || h instanceof GlobalHeaders) return;
  const bad = (k: unknown, v: unknown) => {
    if (typeof k !== 'string' || !isTokenString(k) || !isFieldValueString(String(v).trim())) {
      throw new TypeError(`Headers: invalid header ${JSON.stringify(String(k))}`);
    }
  };
  if (Array.isArray(h)) for (const e of h) bad(e[0], e[1]);
  else for (const k in h as Record<string, unknown>) bad(k, (h as Record<string, unknown>)[k]);
}

const GlobalRequest = globalThis.Request;
const GlobalResponse = globalThis.Response;
const GlobalHeaders = globalThis.Headers;

// ---------------------------------------------------------------- URL

const originCache = new Map<string, string>();
const PLAIN_TARGET = /^\/[A-Za-z0-9\-._~!$&()*+,;=:@/?%]*$/;

function originOf(scheme: string, host: string): string {
  const key = scheme + host;
  let o = originCache.get(key);
  if (o === undefined) {
    try {
      o = new URL(`${scheme}://${host || 'localhost'}`).origin;
    } catch {
      o = `${scheme}://localhost`;
    }
    if (originCache.size > 256) originCache.clear();
    originCache.set(key, o);
  }
  return o;
}

function buildUrl(scheme: string, ev: RequestEvent): string {
  const target = ev.target;
  const hs = ev.headers;
  let host = '';
  for (let i = 0; i < hs.length; i += 2) {
    if (hs[i] === 'host') {
      host = hs[i + 1]!;
      break;
    }
  }
  const origin = originOf(scheme, host);
  if (target.charCodeAt(0) === 47 /* / */) {
    if (PLAIN_TARGET.test(target) && target.indexOf('/.') === -1 && !/%2e/i.test(target)) return origin + target;
    try {
      return new URL(target, origin).href;
    } catch {
      return origin + '/';
    }
  }
  if (target === '*') return origin + '/*';
  try {
    return new URL(target).href; // absolute-form
  } catch {
    return origin + '/';
  }
}

// ---------------------------------------------------------------- Request

const FORBIDDEN_METHODS = new Set(['CONNECT', 'TRACE', 'TRACK']);

/** The request of one fetch exchange; also the exchange the connection drives. */
export class FetchEx implements Exchange {
  _url: string | null = null;
  _headers: Headers | null = null;
  _real: Request | null = null;
  _ac: AbortController | null = null;
  _chunks: Buffer[] | null = null;
  _buffered = 0;
  _ended: boolean;
  _ctrl: ReadableStreamDefaultController<Uint8Array> | null = null;
  _err: Error | null = null;
  _dead = false;

  constructor(
    readonly _conn: Conn,
    readonly _ev: RequestEvent,
    readonly _scheme: string,
  ) {
    this._ended = _ev.bodyKind === 'none';
  }

  get method(): string {
    return this._ev.method;
  }

  get url(): string {
    return (this._url ??= buildUrl(this._scheme, this._ev));
  }

  get headers(): Headers {
    let h = this._headers;
    if (h === null) {
      h = this._headers = new GlobalHeaders();
      const hs = this._ev.headers;
      for (let i = 0; i < hs.length; i += 2) h.append(hs[i]!, hs[i + 1]!);
    }
    return h;
  }

  /** The native Request, built on first use of anything but method/url/headers. */
  _native(): Request {
    if (this._real !== null) return this._real;
    const ac = (this._ac ??= new AbortController());
    const ev = this._ev;
    let method = ev.method;
    if (FORBIDDEN_METHODS.has(method)) method = 'GET';
    const init: RequestInit & { duplex?: 'half' } = { method, headers: this.headers, signal: ac.signal };
    if (ev.bodyKind !== 'none' && method !== 'GET' && method !== 'HEAD') {
      init.body = this._stream();
      init.duplex = 'half';
    }
    return (this._real = new GlobalRequest(this.url, init));
  }

  private _stream(): ReadableStream<Uint8Array> {
    return new ReadableStream<Uint8Array>({
      start: (c) => {
        this._ctrl = c;
        const chunks = this._chunks;
        if (chunks !== null) for (const b of chunks) c.enqueue(b);
        this._chunks = null;
        this._buffered = 0;
        if (this._err) c.error(this._err);
        else if (this._ended) c.close();
      },
      pull: () => {
        this._conn.bodyWanted();
      },
      cancel: () => {
        this._ctrl = null;
        this._dead = this._dead || false;
        this._chunks = null;
        this._conn.bodyPaused(false);
      },
    });
  }

  onData(chunk: Buffer): void {
    const c = this._ctrl;
    if (c !== null) {
      c.enqueue(chunk);
      if ((c.desiredSize ?? 0) <= 0) this._conn.bodyPaused(true);
    } else if (this._real === null || this._real.body === null) {
      (this._chunks ??= []).push(chunk);
      if ((this._buffered += chunk.length) > 65536) this._conn.bodyPaused(true);
    }
  }

  onEnd(): void {
    this._ended = true;
    const c = this._ctrl;
    if (c !== null) {
      try {
        c.close();
      } catch {
        /* cancelled */
      }
    }
  }

  onAbort(err: Error): void {
    this._dead = true;
    this._err = err;
    const c = this._ctrl;
    if (c !== null) {
      try {
        c.error(err);
      } catch {
        /* closed */
      }
    }
    this._ac?.abort(err);
  }
}

const REQUEST_GETTERS = ['body', 'bodyUsed', 'cache', 'credentials', 'destination', 'integrity', 'mode', 'redirect', 'referrer',
  'referrerPolicy', 'signal', 'keepalive', 'duplex'];
const REQUEST_METHODS = ['arrayBuffer', 'blob', 'bytes', 'clone', 'formData', 'json', 'text'];
for (const k of REQUEST_GETTERS) {
  Object.defineProperty(FetchEx.prototype, k, {
    get(this: FetchEx) {
      return (this._native() as any)[k];
    },
    configurable: true,
  });
}
for (const k of REQUEST_METHODS) {
  Object.defineProperty(FetchEx.prototype, k, {
    value(this: FetchEx, ...args: unknown[]) {
      const n = this._native() as any;
      if (k !== 'clone' && this._ev.bodyKind !== 'none') this._conn.bodyWanted();
      return n[k](...args);
    },
    configurable: true,
    writable: true,
  });
}
Object.defineProperty(FetchEx.prototype, Symbol.for('nodejs.util.inspect.custom'), {
  value(this: FetchEx) {
    return `Request (h11) ${this.method} ${this.url}`;
  },
});
Object.setPrototypeOf(FetchEx.prototype, GlobalRequest.prototype);

// ---------------------------------------------------------------- Response

const kLight = Symbol('h11.light');
const kBody = Symbol('h11.body');
const kInit = Symbol('h11.init');
const kHeaders = Symbol('h11.headers');
const kReal = Symbol('h11.real');
const TEXT_PLAIN = 'text/plain;charset=UTF-8';

type LightBody = string | Uint8Array | ArrayBuffer | null | undefined;

/** `globalThis.Response` while a fetch app runs on h11 (see the top of this file). */
export class LightResponse {
  [kLight]: boolean;
  [kBody]: LightBody;
  [kInit]: ResponseInit | undefined;
  [kHeaders]: Headers | undefined;
  [kReal]: Response | undefined;

  constructor(body?: ConstructorParameters<typeof Response>[0], init?: ResponseInit) {
    if (body == null || typeof body === 'string' || body instanceof Uint8Array || body instanceof ArrayBuffer) {
      if (init !== undefined && init !== null) {
        const s = init.status;
        if (s !== undefined && !(Number.isInteger(s) && s >= 200 && s <= 599)) {
          throw new RangeError(`init["status"] must be in the range of 200 to 599, inclusive.`);
        }
        checkInitHeaders(init.headers);
      }
      this[kLight] = true;
      this[kBody] = body as LightBody;
      this[kInit] = init ?? undefined;
      this[kHeaders] = undefined;
      this[kReal] = undefined;
    } else {
      this[kLight] = false;
      this[kBody] = undefined;
      this[kInit] = undefined;
      this[kHeaders] = undefined;
      this[kReal] = new GlobalResponse(body, init);
    }
  }

  static [Symbol.hasInstance](x: unknown): boolean {
    return x instanceof GlobalResponse;
  }

  static json(data: unknown, init?: ResponseInit): Response {
    const body = JSON.stringify(data);
    const headers = new GlobalHeaders(init?.headers);
    if (!headers.has('content-type')) headers.set('content-type', 'application/json');
    return new LightResponse(body, { status: init?.status, statusText: init?.statusText, headers }) as unknown as Response;
  }

  /** The native Response, built on first use of anything the light one does not keep. */
  _native(): Response {
    let r = this[kReal];
    if (r === undefined) {
      const init = this[kInit];
      const h = this[kHeaders];
      r = this[kReal] = new GlobalResponse(this[kBody], h === undefined ? init : { status: init?.status, statusText: init?.statusText, headers: h });
      this[kLight] = false;
      this[kBody] = undefined;
    }
    return r;
  }

  get status(): number {
    return this[kLight] ? (this[kInit]?.status ?? 200) : this[kReal]!.status;
  }

  get ok(): boolean {
    const s = this.status;
    return s >= 200 && s < 300;
  }

  get statusText(): string {
    return this[kLight] ? (this[kInit]?.statusText ?? '') : this[kReal]!.statusText;
  }

  get headers(): Headers {
    if (!this[kLight]) return this[kReal]!.headers;
    let h = this[kHeaders];
    if (h === undefined) {
      h = this[kHeaders] = new GlobalHeaders(this[kInit]?.headers);
      if (typeof this[kBody] === 'string' && !h.has('content-type')) h.set('content-type', TEXT_PLAIN);
    }
    return h;
  }
}
for (const k of ['body', 'bodyUsed', 'redirected', 'type', 'url']) {
  Object.defineProperty(LightResponse.prototype, k, {
    get(this: LightResponse) {
      return (this._native() as any)[k];
    },
    configurable: true,
  });
}
for (const k of ['arrayBuffer', 'blob', 'bytes', 'clone', 'formData', 'json', 'text']) {
  Object.defineProperty(LightResponse.prototype, k, {
    value(this: LightResponse, ...args: unknown[]) {
      return (this._native() as any)[k](...args);
    },
    configurable: true,
    writable: true,
  });
}
Object.defineProperty(LightResponse.prototype, Symbol.for('nodejs.util.inspect.custom'), {
  value(this: LightResponse) {
    return `Response (h11) ${this.status}`;
  },
});
Object.setPrototypeOf(LightResponse, GlobalResponse);
Object.setPrototypeOf(LightResponse.prototype, GlobalResponse.prototype);

let installed = false;
/** Make `new Response(...)` the light one in this (worker) process. */
export function installLightResponse(): void {
  if (installed) return;
  installed = true;
  (globalThis as any).Response = LightResponse;
}

// ---------------------------------------------------------------- writing a Response

type Flat = string[];

function flatFrom(init: ConstructorParameters<typeof Headers>[0] | null, defaultType: string | null): Flat | null {
  if (init == null) return defaultType === null ? null : ['content-type', defaultType];
  const out: Flat = [];
  let hasType = false;
  if (init instanceof GlobalHeaders) {
    for (const [k, v] of init) {
      if (k === 'content-type') hasType = true;
      out.push(k, v);
    }
  } else if (Array.isArray(init)) {
    for (const [k, v] of init as [string, string][]) {
      if (k.length === 12 && k.toLowerCase() === 'content-type') hasType = true;
      out.push(k, v);
    }
  } else {
    const rec = init as Record<string, string>;
    for (const k in rec) {
      const v = rec[k];
      if (v === undefined) continue;
      if (k.length === 12 && k.toLowerCase() === 'content-type') hasType = true;
      out.push(k, v);
    }
  }
  if (!hasType && defaultType !== null) out.push('content-type', defaultType);
  return out;
}

function toBuf(v: Uint8Array | ArrayBuffer): Buffer {
  if (Buffer.isBuffer(v)) return v;
  if (v instanceof ArrayBuffer) return Buffer.from(v);
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

export type ErrorSink = (ex: FetchEx, err: unknown) => void;

/** Write what the app returned. Fast path: a light Response, one `respond()`. */
export function writeFetchResponse(ex: FetchEx, res: unknown, onError: ErrorSink): void {
  if (ex._dead) return;
  const r = res as LightResponse;
  if (r !== null && typeof r === 'object' && r[kLight] === true) {
    const body = r[kBody];
    const init = r[kInit];
    const h = r[kHeaders];
    const headers = h !== undefined ? flatFrom(h, null) : flatFrom(init?.headers, typeof body === 'string' ? TEXT_PLAIN : null);
    const status = init?.status ?? 200;
    const conn = ex._conn;
    let buf: Output;
    try {
      buf = conn.h.respond(status, headers, body == null ? null : typeof body === 'string' ? body : toBuf(body), init?.statusText || undefined);
    } catch (err) {
      onError(ex, err);
      return;
    }
    conn.send(buf);
    conn.finishExchange(ex, status);
    return;
  }
  void writeSlow(ex, res, onError);
}

const immediate = () => new Promise<undefined>((resolve) => setImmediate(() => resolve(undefined)));

async function writeSlow(ex: FetchEx, res: unknown, onError: ErrorSink): Promise<void> {
  const conn = ex._conn;
  const h = conn.h;
  let reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
  try {
    if (!(res instanceof GlobalResponse)) throw new TypeError(`the fetch app returned ${res === null ? 'null' : typeof res}, not a Response`);
    const native = (res as any)[kLight] === false ? (res as unknown as LightResponse)._native() : res;
    const headers = flatFrom(native.headers, null);
    const status = native.status;
    const reason = native.statusText || undefined;
    const body = native.body;
    if (body === null) {
      const buf = h.respond(status, headers, null, reason);
      conn.send(buf);
      conn.finishExchange(ex, status);
      return;
    }
    reader = body.getReader();
    const first = await reader.read();
    if (ex._dead) return void reader.cancel().catch(noop);
    if (first.done) {
      conn.send(h.respond(status, headers, null, reason));
      conn.finishExchange(ex, status);
      return;
    }
    // One more chunk if it is there already: a small body goes out with Content-Length.
    const second = await Promise.race([reader.read(), immediate()]);
    if (ex._dead) return void reader.cancel().catch(noop);
    if (second !== undefined && second.done) {
      conn.send(h.respond(status, headers, toBuf(first.value), reason));
      conn.finishExchange(ex, status);
      return;
    }
    conn.send(h.writeHead(status, headers, reason));
    conn.send(h.writeBody(toBuf(first.value)));
    let next: { done: boolean; value?: Uint8Array } =
      second !== undefined ? second : await reader.read();
    for (;;) {
      if (ex._dead) return void reader.cancel().catch(noop);
      if (next.done) break;
      if (next.value!.length !== 0) conn.send(h.writeBody(toBuf(next.value!)));
      if (conn.congested) await conn.drain();
      if (ex._dead) return void reader.cancel().catch(noop);
      next = await reader.read();
    }
    conn.send(h.writeEnd());
    conn.finishExchange(ex, status);
  } catch (err) {
    reader?.cancel().catch(noop);
    onError(ex, err);
  }
}

function noop(): void {}

/** An app error: 500 when nothing was sent yet, else the connection is closed. */
export function fetchAppError(ex: FetchEx): void {
  if (ex._dead) return;
  ex._dead = true;
  const conn = ex._conn;
  const h = conn.h;
  if (!h.responseStarted && h.writeState === 'ready') {
    h.startClosing();
    conn.send(h.respond(500, { 'Content-Type': 'text/plain; charset=utf-8', Connection: 'close' }, 'Internal Server Error\n'));
    conn.finishExchange(ex, 500);
  } else {
    conn.abortExchange(ex);
  }
}
