/**
 * Serving a fetch-style app `(Request) => Response` from Node's http server: the request
 * becomes a WHATWG Request whose body streams from the socket, and the Response's body is
 * written back with backpressure.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import type { FetchHandler, NodeHandler } from '../src/app.js';

export function fetchToNode(fetch: FetchHandler, opts: { https: boolean; onError(err: unknown): void }): NodeHandler {
  const scheme = opts.https ? 'https' : 'http';
  return (req: IncomingMessage, res: ServerResponse) => {
    const controller = new AbortController();
    // The client went away before we answered: tell the app through request.signal.
    res.once('close', () => {
      if (!res.writableFinished) controller.abort();
    });
    let request: Request;
    try {
      request = toRequest(req, scheme, controller.signal);
    } catch {
      res.writeHead(400, { 'content-type': 'text/plain', connection: 'close' }).end('Bad Request\n');
      return;
    }
    let result: Response | Promise<Response>;
    try {
      result = fetch(request);
    } catch (err) {
      return fail(res, err, opts.onError);
    }
    if (result instanceof Response) void writeResponse(res, result, opts.onError);
    else
      Promise.resolve(result).then(
        (response) => writeResponse(res, response, opts.onError),
        (err) => fail(res, err, opts.onError),
      );
  };
}

function toRequest(req: IncomingMessage, scheme: string, signal: AbortSignal): Request {
  const headers = new Headers();
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) headers.append(raw[i]!, raw[i + 1]!);
  const host = req.headers.host ?? 'localhost';
  const method = req.method ?? 'GET';
  const init: RequestInit & { duplex?: 'half' } = { method, headers, signal };
  if (method !== 'GET' && method !== 'HEAD') {
    init.body = Readable.toWeb(req) as unknown as ReadableStream;
    init.duplex = 'half';
  }
  return new Request(`${scheme}://${host}${req.url ?? '/'}`, init);
}

function fail(res: ServerResponse, err: unknown, onError: (err: unknown) => void): void {
  onError(err);
  if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain', connection: 'close' }).end('Internal Server Error\n');
  else res.destroy();
}

export async function writeResponse(res: ServerResponse, response: Response, onError: (err: unknown) => void): Promise<void> {
  if (!(response instanceof Response)) return fail(res, new TypeError(`the fetch app returned ${typeof response}, not a Response`), onError);
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
