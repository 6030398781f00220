/**
 * The fetch interface on the h11 engine: the request object of one exchange (a light Request,
 * see ../fetch-light.ts) fed by the engine, and the writer of what the app returns (a light
 * Response goes out with one `respond()`; anything else is streamed with backpressure).
 */
import type { Conn, Exchange } from './conn.js';
import type { Output, RequestEvent } from './engine/index.js';
import {
  GlobalRequest, GlobalResponse, flatFrom, headersFrom, lazyRequest, lightParts, nativeMethod, nativeResponse, requestUrl, toBuf,
} from '../fetch-light.js';

function buildUrl(scheme: string, ev: RequestEvent): string {
  const hs = ev.headers;
  let host = '';
  for (let i = 0; i < hs.length; i += 2) {
    if (hs[i] === 'host') {
      host = hs[i + 1]!;
      break;
    }
  }
  return requestUrl(scheme, host, ev.target);
}

// ---------------------------------------------------------------- Request

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
    return (this._headers ??= headersFrom(this._ev.headers));
  }

  /** The native Request, built on first use of anything but method/url/headers. */
  _native(): Request {
    if (this._real !== null) return this._real;
    const ac = (this._ac ??= new AbortController());
    const ev = this._ev;
    const method = nativeMethod(ev.method);
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
lazyRequest(FetchEx.prototype, 'h11', (self) => {
  if (self._ev.bodyKind !== 'none') self._conn.bodyWanted();
});

export type ErrorSink = (ex: FetchEx, err: unknown) => void;

/** Write what the app returned. Fast path: a light Response, one `respond()`. */
export function writeFetchResponse(ex: FetchEx, res: unknown, onError: ErrorSink): void {
  if (ex._dead) return;
  const light = lightParts(res);
  if (light !== null) {
    const status = light.status;
    const conn = ex._conn;
    let buf: Output;
    try {
      buf = conn.h.respond(status, light.headers, light.body, light.statusText);
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
    const native = nativeResponse(res);
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
