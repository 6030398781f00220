/**
 * Response side of the engine: response heads, chunk framing, trailers.
 * Validates everything that comes from the application and throws `InvalidHeaderError`
 * before producing any bytes.
 */
import * as C from './chars.js';
import { InvalidHeaderError } from './errors.js';
import type { OutgoingHeaders, Output } from './types.js';

const { eqLower, isFieldValueString, isOWS, isTokenString, listHasToken, writeLatin1, writeUtf8 } = C;
const FIELD_CHAR = C.FIELD_CHAR;
const CR = 13, LF = 10;

export const F_NONE = 0; // no body bytes (HEAD, 1xx, 204, 304)
export const F_LENGTH = 1; // Content-Length framed
export const F_CHUNKED = 2; // Transfer-Encoding: chunked
export const F_CLOSE = 3; // delimited by closing the connection (HTTP/1.0, unknown length)

export const STATUS_TEXT: Readonly<Record<number, string>> = {
  100: 'Continue', 101: 'Switching Protocols', 102: 'Processing', 103: 'Early Hints',
  200: 'OK', 201: 'Created', 202: 'Accepted', 203: 'Non-Authoritative Information', 204: 'No Content',
  205: 'Reset Content', 206: 'Partial Content', 207: 'Multi-Status', 208: 'Already Reported', 226: 'IM Used',
  300: 'Multiple Choices', 301: 'Moved Permanently', 302: 'Found', 303: 'See Other', 304: 'Not Modified',
  305: 'Use Proxy', 307: 'Temporary Redirect', 308: 'Permanent Redirect',
  400: 'Bad Request', 401: 'Unauthorized', 402: 'Payment Required', 403: 'Forbidden', 404: 'Not Found',
  405: 'Method Not Allowed', 406: 'Not Acceptable', 407: 'Proxy Authentication Required', 408: 'Request Timeout',
  409: 'Conflict', 410: 'Gone', 411: 'Length Required', 412: 'Precondition Failed', 413: 'Content Too Large',
  414: 'URI Too Long', 415: 'Unsupported Media Type', 416: 'Range Not Satisfiable', 417: 'Expectation Failed',
  418: "I'm a Teapot", 421: 'Misdirected Request', 422: 'Unprocessable Content', 423: 'Locked', 424: 'Failed Dependency',
  425: 'Too Early', 426: 'Upgrade Required', 428: 'Precondition Required', 429: 'Too Many Requests',
  431: 'Request Header Fields Too Large', 451: 'Unavailable For Legal Reasons',
  500: 'Internal Server Error', 501: 'Not Implemented', 502: 'Bad Gateway', 503: 'Service Unavailable',
  504: 'Gateway Timeout', 505: 'HTTP Version Not Supported', 506: 'Variant Also Negotiates',
  507: 'Insufficient Storage', 508: 'Loop Detected', 510: 'Not Extended', 511: 'Network Authentication Required',
};

const STATUS_LINE: string[] = [];
for (const k of Object.keys(STATUS_TEXT)) STATUS_LINE[+k] = `HTTP/1.1 ${k} ${STATUS_TEXT[+k]}\r\n`;

export const EMPTY: Buffer = Buffer.alloc(0);

export function statusLine(status: number, reason: string | undefined): string {
  if (reason === undefined) {
    const cached = STATUS_LINE[status];
    if (cached !== undefined) return cached;
    return `HTTP/1.1 ${status} \r\n`;
  }
  // reason-phrase = 1*( HTAB / SP / VCHAR / obs-text )
  if (!isFieldValueString(reason)) throw new InvalidHeaderError('invalid characters in status reason phrase');
  return `HTTP/1.1 ${status} ${reason}\r\n`;
}

/** Request facts the head builder needs. */
export interface ResponseContext {
  isHead: boolean;
  v10: boolean;
  keepAlive: boolean;
  closing: boolean;
}

/** Result of buildHead (reused object). */
export interface HeadPlan {
  framing: number;
  close: boolean;
  /** Declared Content-Length (F_LENGTH) or -1. */
  length: number;
}

/** What the head builder must know about a header name (NAME_OTHER: nothing). */
const NAME_OTHER = 0, NAME_CONTENT_LENGTH = 1, NAME_TRANSFER_ENCODING = 2, NAME_CONNECTION = 3, NAME_DATE = 4, NAME_UPGRADE = 5;

/**
 * What is known about a valid name seen before: its kind, and the last value sent with it as
 * the whole header line, validated and flat. An app uses a few dozen header names, mostly with
 * the same few values (`content-type: text/plain`), so a lookup and a string comparison stand in
 * for validating the name and the value, lowercasing the name and concatenating the line:
 * one piece of the head instead of four, which is also what writing the head (V8 walks every
 * piece of a concatenated string) costs less for. Bounded, so names made up per request only
 * miss the cache.
 */
interface KnownName {
  readonly kind: number;
  value: string;
  line: string;
  /** NAME_CONTENT_LENGTH: `value` parsed. */
  length: number;
}
const known = new Map<string, KnownName>();
const NAME_CACHE_MAX = 1024;

/** What `name` is, or null when it is not a valid field name (token). */
function knownName(name: string): KnownName | null {
  const hit = known.get(name);
  if (hit !== undefined) return hit;
  if (!isTokenString(name)) return null;
  const lower = name.toLowerCase();
  const kind =
    lower === 'content-length' ? NAME_CONTENT_LENGTH :
    lower === 'transfer-encoding' ? NAME_TRANSFER_ENCODING :
    lower === 'connection' ? NAME_CONNECTION :
    lower === 'date' ? NAME_DATE :
    lower === 'upgrade' ? NAME_UPGRADE : NAME_OTHER;
  // `line` = '' never matches a value's line: the first value is checked and cached as a miss.
  const e: KnownName = { kind, value: '', line: '', length: -1 };
  if (known.size < NAME_CACHE_MAX) known.set(name, e);
  return e;
}

/** The name's kind, or -1 when it is not a valid field name (token). */
export function headerNameKind(name: string): number {
  return knownName(name)?.kind ?? -1;
}

/**
 * `s` as one flat string. V8 flattens a concatenated string the first time its characters are
 * read, in place; a cached line is read once here so that every head it goes into gets one
 * piece, not the tree it was built as.
 */
function flat(s: string): string {
  s.charCodeAt(0);
  return s;
}

function checkValue(name: string, v: string): void {
  const n = v.length;
  for (let i = 0; i < n; i++) {
    const c = v.charCodeAt(i);
    if (c > 255 || FIELD_CHAR[c] === 0) {
      throw new InvalidHeaderError(
        `invalid character ${c === CR ? 'CR' : c === LF ? 'LF' : c === 0 ? 'NUL' : `U+${c.toString(16).padStart(4, '0')}`} in value of header ${JSON.stringify(name)}`,
        name,
      );
    }
  }
}

function parseOutgoingLength(name: string, v: string): number {
  const n = v.length;
  if (n === 0 || n > 16) throw new InvalidHeaderError('invalid Content-Length value', name);
  let x = 0;
  for (let i = 0; i < n; i++) {
    const c = v.charCodeAt(i) - 0x30;
    if (c < 0 || c > 9) throw new InvalidHeaderError('invalid Content-Length value', name);
    x = x * 10 + c;
  }
  if (x > Number.MAX_SAFE_INTEGER) throw new InvalidHeaderError('invalid Content-Length value', name);
  return x;
}

/** Last element of a comma list (OWS-trimmed) is exactly `chunked` (case-insensitive). */
function lastCodingIsChunked(v: string): boolean {
  let e = v.length;
  while (e > 0 && isOWS(v.charCodeAt(e - 1))) e--;
  let s = e;
  while (s > 0 && v.charCodeAt(s - 1) !== 0x2c) s--;
  while (s < e && isOWS(v.charCodeAt(s))) s++;
  return eqLower(v, s, e, 'chunked');
}

/** The last Content-Length and Date lines made (responses in a row mostly share them). */
let lastLength = -1, lastLengthLine = '';
let lastDate = '', lastDateLine = '';

function lengthLine(n: number): string {
  if (n !== lastLength) {
    lastLength = n;
    lastLengthLine = flat('Content-Length: ' + n + '\r\n');
  }
  return lastLengthLine;
}

function dateLine(date: string): string {
  if (date !== lastDate) {
    lastDate = date;
    lastDateLine = flat('Date: ' + date + '\r\n');
  }
  return lastDateLine;
}

/** Per-call accumulator (module-level: the engine is synchronous and never re-entered). */
const acc = {
  s: '',
  cl: -1,
  te: false,
  teChunked: false,
  connClose: false,
  connKeepAlive: false,
  /** Every Connection value, joined (only a 101 looks at it). */
  conn: null as string | null,
  upgrade: null as string | null,
  hasDate: false,
  dropFraming: false, // 204: never send CL / TE
  dropTE: false, // HTTP/1.0 recipient: never send TE (body is close-delimited)
};

function addHeader(name: string, value: string | number): void {
  const e = knownName(name);
  if (e === null) throw new InvalidHeaderError(`invalid header name ${JSON.stringify(name)}`, name);
  const v = typeof value === 'string' ? value : String(value);
  if (v !== e.value || e.line === '') {
    checkValue(name, v);
    const length = e.kind === NAME_CONTENT_LENGTH ? parseOutgoingLength(name, v) : -1;
    e.value = v;
    e.line = flat(name + ': ' + v + '\r\n');
    e.length = length;
  }
  const kind = e.kind;
  if (kind !== NAME_OTHER) {
    if (kind === NAME_CONTENT_LENGTH) {
      const x = e.length;
      if (acc.cl !== -1) throw new InvalidHeaderError('duplicate Content-Length', name);
      acc.cl = x;
      if (acc.dropFraming) return;
    } else if (kind === NAME_TRANSFER_ENCODING) {
      acc.te = true;
      acc.teChunked = lastCodingIsChunked(v);
      if (acc.dropFraming || acc.dropTE) return;
    } else if (kind === NAME_CONNECTION) {
      if (listHasToken(v, 'close')) acc.connClose = true;
      if (listHasToken(v, 'keep-alive')) acc.connKeepAlive = true;
      acc.conn = acc.conn === null ? v : acc.conn + ',' + v;
    } else if (kind === NAME_DATE) {
      acc.hasDate = true;
    } else {
      acc.upgrade = acc.upgrade === null ? v : acc.upgrade + ',' + v;
    }
  }
  acc.s += e.line;
}

function addAll(headers: OutgoingHeaders | null | undefined): void {
  if (headers == null) return;
  if (Array.isArray(headers)) {
    const n = headers.length;
    if (n === 0) return;
    if (typeof headers[0] === 'string') {
      const flat = headers as readonly string[];
      if ((n & 1) !== 0) throw new InvalidHeaderError('flat header list must have an even length');
      for (let i = 0; i < n; i += 2) addHeader(flat[i]!, flat[i + 1]!);
    } else {
      const tuples = headers as readonly (readonly [string, string | number])[];
      for (let i = 0; i < n; i++) {
        const t = tuples[i]!;
        addHeader(t[0], t[1]);
      }
    }
    return;
  }
  const rec = headers as Readonly<Record<string, string | number | readonly (string | number)[] | undefined>>;
  for (const name in rec) {
    const v = rec[name];
    if (v === undefined) continue;
    if (typeof v === 'object') {
      for (let i = 0; i < v.length; i++) addHeader(name, v[i]!);
    } else addHeader(name, v);
  }
}

/**
 * Builds a final response head (status 200-599).
 * @param bodyLength  body size when the whole body is known (respond()), or -1 when streaming.
 */
export function buildHead(
  plan: HeadPlan, ctx: ResponseContext, status: number, reason: string | undefined,
  headers: OutgoingHeaders | null | undefined, bodyLength: number, date: string | null,
): string {
  const line = statusLine(status, reason);
  const noBody = ctx.isHead || status === 204 || status === 304;
  acc.s = line;
  acc.cl = -1;
  acc.te = false;
  acc.teChunked = false;
  acc.connClose = false;
  acc.connKeepAlive = false;
  acc.conn = null;
  acc.upgrade = null;
  acc.hasDate = false;
  acc.dropFraming = status === 204;
  acc.dropTE = ctx.v10; // RFC 9112 6.1: no Transfer-Encoding to HTTP/1.0 recipients
  addAll(headers);
  const cl = acc.cl;
  if (acc.te && !acc.dropFraming) {
    if (cl !== -1) throw new InvalidHeaderError('both Content-Length and Transfer-Encoding set', 'transfer-encoding');
    if (!acc.teChunked) throw new InvalidHeaderError('Transfer-Encoding must end with chunked', 'transfer-encoding');
    if (bodyLength >= 0) throw new InvalidHeaderError('respond() frames the body itself: do not set Transfer-Encoding', 'transfer-encoding');
  }
  let framing: number;
  let length = -1;
  if (noBody) {
    framing = F_NONE;
    if (bodyLength >= 0) {
      if (cl !== -1 && cl !== bodyLength && bodyLength !== 0 && status !== 204) {
        throw new InvalidHeaderError('Content-Length does not match the body length', 'content-length');
      }
      // HEAD: headers as for GET.
      if (ctx.isHead && cl === -1 && !acc.te && status !== 204 && status !== 304) acc.s += lengthLine(bodyLength);
    }
  } else if (cl !== -1) {
    if (bodyLength >= 0 && cl !== bodyLength) {
      throw new InvalidHeaderError('Content-Length does not match the body length', 'content-length');
    }
    framing = F_LENGTH;
    length = cl;
  } else if (bodyLength >= 0) {
    acc.s += lengthLine(bodyLength);
    framing = F_LENGTH;
    length = bodyLength;
  } else if (ctx.v10) {
    framing = F_CLOSE;
  } else {
    if (!acc.te) acc.s += 'Transfer-Encoding: chunked\r\n';
    framing = F_CHUNKED;
  }
  const close = !ctx.keepAlive || ctx.closing || acc.connClose || framing === F_CLOSE;
  if (close) {
    if (!acc.connClose) acc.s += 'Connection: close\r\n';
  } else if (ctx.v10 && !acc.connKeepAlive) {
    acc.s += 'Connection: keep-alive\r\n';
  }
  if (date !== null && !acc.hasDate) acc.s += dateLine(date);
  plan.framing = framing;
  plan.close = close;
  plan.length = length;
  const s = acc.s + '\r\n';
  acc.s = '';
  return s;
}

function beginInterim(status: number, headers: OutgoingHeaders | null | undefined): void {
  acc.s = statusLine(status, undefined);
  acc.dropFraming = true;
  acc.dropTE = true;
  acc.cl = -1;
  acc.te = false;
  acc.conn = null;
  acc.upgrade = null;
  addAll(headers);
  if (acc.cl !== -1 || acc.te) throw new InvalidHeaderError('1xx responses cannot carry framing headers');
}

/** Interim (1xx) response head. */
export function buildInterim(status: number, headers: OutgoingHeaders | null | undefined): string {
  beginInterim(status, headers);
  const s = acc.s + '\r\n';
  acc.s = '';
  return s;
}

/**
 * The `101 Switching Protocols` head. RFC 9110 7.8 wants `Upgrade` (naming only protocols the
 * client offered) and `Connection: upgrade` on it: taken from the app's headers when it set
 * them, else added (`Upgrade` only when the client offered a single protocol: otherwise the app
 * must say which).
 */
export function buildSwitch(headers: OutgoingHeaders | null | undefined, offered: string): string {
  beginInterim(101, headers);
  const up = acc.upgrade;
  if (up === null) {
    if (offered.includes(',')) {
      throw new InvalidHeaderError('the client offered several protocols: name the chosen one in Upgrade', 'upgrade');
    }
    acc.s += 'Upgrade: ' + offered + '\r\n';
  } else {
    for (const p of up.split(',')) {
      const name = p.trim().toLowerCase();
      if (name === '' || !listHasToken(offered, name)) {
        throw new InvalidHeaderError(`Upgrade ${JSON.stringify(p.trim())} was not offered by the client (${offered})`, 'upgrade');
      }
    }
  }
  if (acc.conn === null) acc.s += 'Connection: Upgrade\r\n';
  else if (!listHasToken(acc.conn, 'upgrade')) {
    throw new InvalidHeaderError('a 101 response must list "upgrade" in Connection', 'connection');
  }
  const s = acc.s + '\r\n';
  acc.s = '';
  return s;
}

/** Trailer section for the last chunk: "0\r\n" *(field CRLF) "\r\n". */
export function buildLastChunk(trailers: OutgoingHeaders | null | undefined): string {
  if (trailers == null) return '0\r\n\r\n';
  acc.s = '0\r\n';
  acc.dropFraming = false;
  acc.dropTE = false;
  acc.cl = -1;
  acc.te = false;
  addAll(trailers);
  if (acc.cl !== -1 || acc.te) throw new InvalidHeaderError('Content-Length / Transfer-Encoding are not allowed in trailers');
  const s = acc.s + '\r\n';
  acc.s = '';
  return s;
}

/**
 * A head (latin1) and an optional body as one Output: a string when the body is empty or an
 * ASCII string (`bodyBytes === body.length` says so: any other char takes more than one UTF-8
 * byte), else one Buffer.
 */
export function toOutput(head: string, body: Buffer | string | null | undefined, bodyBytes: number): Output {
  if (bodyBytes === 0) return head;
  if (typeof body === 'string' && bodyBytes === body.length) return head + body;
  const hl = head.length;
  const out = Buffer.allocUnsafe(hl + bodyBytes);
  writeLatin1(out, head, 0);
  if (bodyBytes > 0) {
    if (typeof body === 'string') writeUtf8(out, body, hl, bodyBytes);
    else (body as Buffer).copy(out, hl);
  }
  return out;
}

/** An Output as a Buffer. */
export function toBytes(o: Output): Buffer {
  return typeof o === 'string' ? Buffer.from(o, 'latin1') : o;
}

/** Frames `data` as one chunk. Returns EMPTY for an empty chunk (a 0-size chunk would end the body). */
export function frameChunk(data: Buffer | string): Buffer {
  const n = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
  if (n === 0) return EMPTY;
  const hex = n.toString(16);
  const hl = hex.length + 2;
  const out = Buffer.allocUnsafe(hl + n + 2);
  writeLatin1(out, hex, 0);
  out[hl - 2] = CR;
  out[hl - 1] = LF;
  if (typeof data === 'string') writeUtf8(out, data, hl, n);
  else data.copy(out, hl);
  out[hl + n] = CR;
  out[hl + n + 1] = LF;
  return out;
}
