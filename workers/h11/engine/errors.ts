/**
 * Typed errors thrown by the h11 engine.
 *
 * Protocol violations by the *peer* are never thrown: they are reported as
 * `{ type: 'error' }` events by `H11Connection.receive()`. Only misuse by the
 * *local* application (invalid response headers, writing in the wrong state)
 * throws.
 */

/** Base class of every error thrown by the engine. */
export class H11Error extends Error {
  readonly code: string;
  constructor(message: string, code: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

/**
 * A response header (or trailer, status reason) that must never be written:
 * invalid field name, CR/LF/NUL/CTL in a value, Content-Length together with
 * Transfer-Encoding, a malformed Content-Length, ...
 * Nothing is written when this is thrown; the connection state is unchanged.
 */
export class InvalidHeaderError extends H11Error {
  readonly headerName: string | undefined;
  constructor(message: string, headerName?: string) {
    super(message, 'ERR_H11_INVALID_HEADER');
    this.headerName = headerName;
  }
}

/**
 * The engine API was used in a state where the call is not allowed
 * (e.g. `writeBody()` before `writeHead()`, two `writeHead()` calls, a body
 * larger than the declared Content-Length, a 1xx status passed to writeHead).
 */
export class LocalProtocolError extends H11Error {
  constructor(message: string) {
    super(message, 'ERR_H11_LOCAL_PROTOCOL');
  }
}
