/**
 * Serving a fetch-style app `(Request) => Response` from Node's http server (`-k http`).
 *
 * The request is a light Request (./fetch-light.ts) over the IncomingMessage: `method`, `url`
 * and `headers` come from the parsed head; the native Request, with a body streaming from the
 * socket and a signal that aborts when the client goes away, is built only if the app asks for
 * more. A light Response is written with one `writeHead` + `end`; anything else is streamed
 * with backpressure.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import type { FetchHandler, NodeHandler } from '../src/core/app.js';
import {
  GlobalRequest, GlobalResponse, headersFrom, installLightResponse, lazyRequest, lightParts, nativeMethod, nativeResponse,
  requestUrl,
} from './fetch-light.js';

export function fetchToNode(fetch: FetchHandler, opts: { https: boolean; onError(err: unknown): void }): NodeHandler {
  const scheme = opts.https ? 'https' : 'http';
  installLightResponse();
  return (req: IncomingMessage, res: ServerResponse) => {
    const request = new NodeFetchRequest(req, res, scheme);
    let result: Response | Promise<Response>;
    try {
      result = fetch(request as unknown as Request);
    } catch (err) {
      return fail(res, err, opts.onError);
    }
    if (result instanceof GlobalResponse) void writeResponse(res, result, opts.onError);
    else
      Promise.resolve(result).then(
        (response) => writeResponse(res, response, opts.onError),
        (err) => fail(res, err, opts.onError),
      );
  };
}

/** The light Request of one exchange on Node's server. */
class NodeFetchRequest {
  private _url: string | null = null;
  private _headers: Headers | null = null;
  private _real: Request | null = null;

  constructor(
    private readonly _req: IncomingMessage,
    private readonly _res: ServerResponse,
    private readonly _scheme: string,
  ) {}

  get method(): string {
    return this._req.method ?? 'GET';
  }

  get url(): string {
    if (this._url === null) {
      const raw = this._req.rawHeaders;
      let host = '';
      for (let i = 0; i < raw.length; i += 2) {
        const k = raw[i]!;
        if (k.length === 4 && k.toLowerCase() === 'host') {
          host = raw[i + 1]!;
          break;
        }
      }
      this._url = requestUrl(this._scheme, host, this._req.url ?? '/');
    }
    return this._url;
  }

  get headers(): Headers {
    return (this._headers ??= headersFrom(this._req.rawHeaders));
  }

  /** The native Request, built on first use of anything but method/url/headers. */
  _native(): Request {
    if (this._real !== null) return this._real;
    const res = this._res;
    const controller = new AbortController();
    // The client went away before we answered: tell the app through request.signal.
    if (res.destroyed && !res.writableFinished) controller.abort();
    else
      res.once('close', () => {
        if (!res.writableFinished) controller.abort();
      });
    const method = nativeMethod(this.method);
    const init: RequestInit & { duplex?: 'half' } = { method, headers: this.headers, signal: controller.signal };
    if (method !== 'GET' && method !== 'HEAD') {
      init.body = Readable.toWeb(this._req) as unknown as ReadableStream;
      init.duplex = 'half';
    }
    return (this._real = new GlobalRequest(this.url, init));
  }
}
lazyRequest(NodeFetchRequest.prototype as NodeFetchRequest, 'http');

function fail(res: ServerResponse, err: unknown, onError: (err: unknown) => void): void {
  onError(err);
  if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain', connection: 'close' }).end('Internal Server Error\n');
  else res.destroy();
}

function hasName(flat: string[], lower: string): boolean {
  for (let i = 0; i < flat.length; i += 2) {
    const k = flat[i]!;
    if (k.length === lower.length && k.toLowerCase() === lower) return true;
  }
  return false;
}

export async function writeResponse(res: ServerResponse, response: Response, onError: (err: unknown) => void): Promise<void> {
  if (!(response instanceof GlobalResponse)) return fail(res, new TypeError(`the fetch app returned ${typeof response}, not a Response`), onError);
  const light = lightParts(response);
  if (light !== null) {
    // The whole response at once: one writeHead, one end, with a Content-Length.
    const headers = light.headers ?? [];
    const body = light.body;
    try {
      const status = light.status;
      // 204 and 304 carry no body and, per RFC 9110, no Content-Length to speak of one.
      if (status !== 204 && status !== 304 && !hasName(headers, 'content-length') && !hasName(headers, 'transfer-encoding')) {
        headers.push('content-length', String(body === null ? 0 : typeof body === 'string' ? Buffer.byteLength(body) : body.length));
      }
      res.writeHead(status, light.statusText, headers);
    } catch (err) {
      return fail(res, err, onError);
    }
    res.end(body ?? undefined);
    return;
  }
  response = nativeResponse(response);
  const headers: Record<string, string | string[]> = {};
  response.headers.forEach((value, name) => {
    if (name !== 'set-cookie') headers[name] = value;
  });
  const cookies = response.headers.getSetCookie();
  if (cookies.length) headers['set-cookie'] = cookies;
  const body = response.body;
  if (!body) {
    res.writeHead(response.status, response.statusText || undefined, headers);
    res.end();
    return;
  }
  const reader = body.getReader();
  try {
    // Most app responses (text, JSON) arrive as one chunk: send those whole, with a
    // Content-Length, in one write; stream the rest.
    const first = await reader.read();
    const second = first.done ? first : await reader.read();
    if (second.done) {
      const chunk = first.done ? undefined : first.value;
      if (headers['content-length'] === undefined && headers['transfer-encoding'] === undefined) headers['content-length'] = String(chunk?.byteLength ?? 0);
      res.writeHead(response.status, response.statusText || undefined, headers);
      res.end(chunk);
      return;
    }
    res.writeHead(response.status, response.statusText || undefined, headers);
    res.write(first.value);
    let next: { done: boolean; value?: Uint8Array } = second;
    while (!next.done) {
      if (!res.write(next.value))
        await new Promise<void>((resolve) => {
          res.once('drain', resolve);
          res.once('close', resolve);
        });
      if (res.destroyed) {
        await reader.cancel();
        return;
      }
      next = await reader.read();
    }
    res.end();
  } catch (err) {
    onError(err);
    res.destroy();
  }
}
