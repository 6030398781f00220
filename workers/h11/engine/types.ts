/** Public types of the h11 engine. */

/**
 * Bytes the engine produces for the socket: a Buffer, or a string with one char per byte
 * (latin1), which `socket.write(s, 'latin1')` sends as it is. Heads and ASCII bodies come as
 * strings: Node writes a short string straight from the stack, without allocating a Buffer.
 * `length` is the byte count either way; `toBytes()` gives a Buffer.
 */
export type Output = Buffer | string;

export type HttpVersion = '1.0' | '1.1';
export type BodyKind = 'none' | 'length' | 'chunked';
/** Statuses the engine uses to reject a request. */
export type RejectStatus = 400 | 413 | 414 | 431 | 501 | 505;

/** A complete, validated request head. Exactly one per request, before its body events. */
export interface RequestEvent {
  readonly type: 'request';
  /** Token, case preserved (common methods are interned constants). */
  readonly method: string;
  /** Request-target exactly as received (origin-, absolute-, authority- or asterisk-form). */
  readonly target: string;
  readonly version: HttpVersion;
  /** Flat list `[name0, value0, name1, value1, ...]`; names lowercased, values OWS-trimmed, latin1-decoded. */
  readonly headers: string[];
  /**
   * The same list with the names as the client spelled them (Node's `rawHeaders`). It is the
   * very array `headers` is when every name was sent in lowercase; otherwise a second array
   * with the same values.
   */
  readonly rawHeaders: string[];
  /** Whether the *client* asked for a persistent connection. */
  readonly keepAlive: boolean;
  /** HTTP/1.1 request with `Expect: 100-continue` and a body. The driver decides whether to send 100. */
  readonly expectContinue: boolean;
  readonly bodyKind: BodyKind;
  /** Declared length (`length`), 0 (`none`) or null (`chunked`). */
  readonly contentLength: number | null;
  /**
   * The `Upgrade` header value (e.g. `websocket`) when the request proposes a protocol switch:
   * HTTP/1.1, `Connection` lists `upgrade`, not CONNECT. Else null. Once the request is complete,
   * the app either accepts (`switchProtocols()` or `detach()`) or answers normally (declines).
   */
  readonly upgrade: string | null;
}

/** A piece of the request body (already de-chunked). May alias the Buffer passed to receive(). */
export interface DataEvent {
  readonly type: 'data';
  readonly chunk: Buffer;
}

/** The request body is complete. `trailers` is a flat lowercase-name list, or null when there were none. */
export interface EndEvent {
  readonly type: 'end';
  readonly trailers: string[] | null;
}

/**
 * The peer violated the protocol or a limit. Terminal: nothing is parsed afterwards, ever.
 * If no response has been started, send `conn.errorResponse(status)` and close; otherwise just close.
 */
export interface ErrorEvent {
  readonly type: 'error';
  readonly status: RejectStatus;
  readonly reason: string;
}

export type H11Event = RequestEvent | DataEvent | EndEvent | ErrorEvent;

export interface H11Options {
  /** Max request-line length in bytes, excluding CRLF (414 beyond). Default 4094; 0 = hard cap 65536. */
  limitRequestLine?: number;
  /** Max number of header fields (431 beyond); also applies to trailers. Default 100; 0 = hard cap 32768. */
  limitRequestFields?: number;
  /** Max length of one field line (name + ':' + value, excluding CRLF) (431 beyond); also bounds chunk-size lines. Default 8190; 0 = hard cap 65536. */
  limitRequestFieldSize?: number;
  /** Max request body size in bytes (413 beyond). Default Infinity. */
  maxBodySize?: number;
  /** Returns the IMF-fixdate for the `Date` header (cache it per second in the driver). null/undefined = no Date header. */
  date?: (() => string) | null;
}

export type HeaderValue = string | number | readonly (string | number)[];
/**
 * Outgoing headers: tuples `[[name, value], ...]`, a flat list `[name, value, name, value, ...]`,
 * or a record `{ name: value | value[] }` (undefined values are skipped). Names keep their case.
 */
export type OutgoingHeaders =
  | readonly (readonly [string, string | number])[]
  | readonly string[]
  | Readonly<Record<string, HeaderValue | undefined>>;

/** Coarse read state (the precise one, with the chunked sub-states and might-switch, is in `conn.states`). */
export type ReadState = 'head' | 'body' | 'waiting' | 'closed' | 'error' | 'switched';
export type WriteState = 'idle' | 'ready' | 'body' | 'closed' | 'switched';
