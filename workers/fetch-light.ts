/**
 * Light WHATWG objects for fetch apps, shared by both HTTP worker classes (`http`, `h11`).
 *
 * Request: each class's request object inherits `Request.prototype` (`instanceof Request`
 * holds) and serves `method`, `url` and `headers` from the parsed head; anything else (`body`,
 * `json()`, `signal`, `clone()` …) builds the native `Request` on first use (`lazyRequest()`
 * installs those forwarders). Most handlers only route on method and URL, and building a
 * native Request (Headers, URL parsing, a body stream) is most of the cost of a small request.
 *
 * Response: while a fetch app runs, `globalThis.Response` is a lightweight subclass (the trick
 * `@hono/node-server` uses too): `new Response(string | Uint8Array | ArrayBuffer | null, init)`
 * only records its arguments, and `lightParts()` hands them to the writer, which sends the
 * whole response at once. Reading it (`text()`, `body`, …) builds the native Response on
 * demand. Other bodies (streams, Blob, FormData …) are native right away and streamed.
 */
import { isFieldValueString, isTokenString } from './h11/engine/chars.js';

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

export const GlobalRequest = globalThis.Request;
export const GlobalResponse = globalThis.Response;
export const GlobalHeaders = globalThis.Headers;

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

/** `request.url` from the Host header and the request-target, without `new URL` for plain paths. */
export function requestUrl(scheme: string, host: string, target: string): string {
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

/** `Headers` from a flat `[name, value, …]` list (a parsed head). */
export function headersFrom(flat: readonly string[]): Headers {
  const h = new GlobalHeaders();
  for (let i = 0; i < flat.length; i += 2) h.append(flat[i]!, flat[i + 1]!);
  return h;
}

/** What a light request must provide: the native Request, built on first use. */
export interface LazyRequest {
  _native(): Request;
}

/** Methods the Request constructor refuses: the native object says GET for them. */
const FORBIDDEN_METHODS = new Set(['CONNECT', 'TRACE', 'TRACK']);

export function nativeMethod(method: string): string {
  return FORBIDDEN_METHODS.has(method) ? 'GET' : method;
}

const REQUEST_GETTERS = ['body', 'bodyUsed', 'cache', 'credentials', 'destination', 'integrity', 'mode', 'redirect', 'referrer',
  'referrerPolicy', 'signal', 'keepalive', 'duplex'];
const REQUEST_METHODS = ['arrayBuffer', 'blob', 'bytes', 'clone', 'formData', 'json', 'text'];

/**
 * Makes `proto` a light Request prototype: every Request member it does not define itself
 * forwards to `_native()`; `beforeBodyRead` runs before a body-reading method.
 */
export function lazyRequest<T extends LazyRequest & { method: string; url: string }>(
  proto: T, label: string, beforeBodyRead?: (self: T) => void,
): void {
  for (const k of REQUEST_GETTERS) {
    Object.defineProperty(proto, k, {
      get(this: T) {
        return (this._native() as any)[k];
      },
      configurable: true,
    });
  }
  for (const k of REQUEST_METHODS) {
    Object.defineProperty(proto, k, {
      value(this: T, ...args: unknown[]) {
        const n = this._native() as any;
        if (k !== 'clone') beforeBodyRead?.(this);
        return n[k](...args);
      },
      configurable: true,
      writable: true,
    });
  }
  Object.defineProperty(proto, Symbol.for('nodejs.util.inspect.custom'), {
    value(this: T) {
      return `Request (${label}) ${this.method} ${this.url}`;
    },
  });
  Object.setPrototypeOf(proto, GlobalRequest.prototype);
}

// ---------------------------------------------------------------- Response

const kLight = Symbol('light');
const kBody = Symbol('light.body');
const kInit = Symbol('light.init');
const kHeaders = Symbol('light.headers');
const kReal = Symbol('light.real');
const TEXT_PLAIN = 'text/plain;charset=UTF-8';

type LightBody = string | Uint8Array | ArrayBuffer | null | undefined;

/** `globalThis.Response` while a fetch app runs (see the top of this file). */
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
    return `Response (light) ${this.status}`;
  },
});
Object.setPrototypeOf(LightResponse, GlobalResponse);
Object.setPrototypeOf(LightResponse.prototype, GlobalResponse.prototype);

let installed = false;
/**
 * Make `new Response(...)` the light one in this (worker) process; `ARBITER_NATIVE_RESPONSE=1`
 * in the environment keeps the native one (for an app that depends on its exact class).
 */
export function installLightResponse(): void {
  if (installed || process.env.ARBITER_NATIVE_RESPONSE === '1') return;
  installed = true;
  (globalThis as any).Response = LightResponse;
}

// ---------------------------------------------------------------- writing a Response

export type Flat = string[];

export function flatFrom(init: ConstructorParameters<typeof Headers>[0] | null, defaultType: string | null): Flat | null {
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

export function toBuf(v: Uint8Array | ArrayBuffer): Buffer {
  if (Buffer.isBuffer(v)) return v;
  if (v instanceof ArrayBuffer) return Buffer.from(v);
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

export interface LightParts {
  status: number;
  statusText: string | undefined;
  /** Flat `[name, value, …]` (with the default content-type of a string body), or null. */
  headers: Flat | null;
  body: string | Buffer | null;
}

/** The pieces of a light Response whose body is known, or null for anything else. */
export function lightParts(res: unknown): LightParts | null {
  const r = res as LightResponse;
  if (r === null || typeof r !== 'object' || r[kLight] !== true) return null;
  const body = r[kBody];
  const init = r[kInit];
  const h = r[kHeaders];
  return {
    status: init?.status ?? 200,
    statusText: init?.statusText || undefined,
    headers: h !== undefined ? flatFrom(h, null) : flatFrom(init?.headers, typeof body === 'string' ? TEXT_PLAIN : null),
    body: body == null ? null : typeof body === 'string' ? body : toBuf(body),
  };
}

/** The native Response behind whatever the app returned (a light one is built now). */
export function nativeResponse(res: Response): Response {
  return (res as unknown as LightResponse)[kLight] === undefined ? res : (res as unknown as LightResponse)._native();
}
