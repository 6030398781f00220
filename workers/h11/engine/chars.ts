/** Byte classification tables shared by the parser and the serializer. */

export const CR = 13;
export const LF = 10;
export const SP = 32;
export const HTAB = 9;
export const COLON = 58;
export const COMMA = 44;
export const SEMI = 59;
export const EQUALS = 61;
export const DQUOTE = 34;
export const BACKSLASH = 92;

function table(pred: (c: number) => boolean): Uint8Array {
  const t = new Uint8Array(256);
  for (let c = 0; c < 256; c++) t[c] = pred(c) ? 1 : 0;
  return t;
}

const isAlpha = (c: number): boolean => (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;

/** RFC 9110 tchar. */
export const TOKEN = table((c) => isAlpha(c) || isDigit(c) || "!#$%&'*+-.^_`|~".includes(String.fromCharCode(c)));

/** field-vchar / SP / HTAB (obs-text 0x80-0xFF allowed); excludes all other CTLs and DEL. */
export const FIELD_CHAR = table((c) => c === HTAB || (c >= 0x20 && c <= 0x7e) || c >= 0x80);

/** VCHAR (visible US-ASCII): request-line parts. */
export const VCHAR = table((c) => c >= 0x21 && c <= 0x7e);

/** qdtext (RFC 9110 5.6.4). */
export const QDTEXT = table((c) => c === HTAB || c === SP || c === 0x21 || (c >= 0x23 && c <= 0x5b) || (c >= 0x5d && c <= 0x7e) || c >= 0x80);

/** Characters allowed after a backslash in a quoted-pair. */
export const QPAIR = table((c) => c === HTAB || (c >= 0x20 && c <= 0x7e) || c >= 0x80);

/** Hex digit value, -1 when not a hex digit. */
export const HEX_VAL = new Int8Array(256).fill(-1);
for (let c = 0x30; c <= 0x39; c++) HEX_VAL[c] = c - 0x30;
for (let c = 0x41; c <= 0x46; c++) HEX_VAL[c] = c - 0x41 + 10;
for (let c = 0x61; c <= 0x66; c++) HEX_VAL[c] = c - 0x61 + 10;

/** reg-name characters (unreserved / sub-delims; '%' is validated separately). */
export const REG_NAME = table((c) => isAlpha(c) || isDigit(c) || "-._~!$&'()*+,;=".includes(String.fromCharCode(c)));

/** Characters allowed inside an IP-literal `[...]` (IPv6 / IPvFuture / zone). */
export const IP_LITERAL = table((c) => isAlpha(c) || isDigit(c) || ":.-_~%!$&'()*+,;=".includes(String.fromCharCode(c)));

export const isTokenString = (s: string): boolean => {
  const n = s.length;
  if (n === 0) return false;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c > 127 || TOKEN[c] === 0) return false;
  }
  return true;
};

/** True when every char is HTAB, SP, VCHAR or obs-text (no CR, LF, NUL, other CTL, DEL, or > 0xFF). */
export const isFieldValueString = (s: string): boolean => {
  const n = s.length;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c > 255 || FIELD_CHAR[c] === 0) return false;
  }
  return true;
};

export const isOWS = (c: number): boolean => c === SP || c === HTAB;

/** Case-insensitive compare of `s[from, from+lower.length)` with an all-lowercase ASCII `lower`. */
export function eqLower(s: string, from: number, to: number, lower: string): boolean {
  const n = lower.length;
  if (to - from !== n) return false;
  for (let i = 0; i < n; i++) {
    let c = s.charCodeAt(from + i);
    if (c >= 0x41 && c <= 0x5a) c |= 0x20;
    if (c !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/** Does the comma-separated list `v` contain `tok` (lowercase), case-insensitively? */
export function listHasToken(v: string, tok: string): boolean {
  const n = v.length;
  let i = 0;
  while (i < n) {
    let c = v.charCodeAt(i);
    while (i < n && (c === SP || c === HTAB || c === COMMA)) c = v.charCodeAt(++i);
    let j = i;
    while (j < n && v.charCodeAt(j) !== COMMA) j++;
    let e = j;
    while (e > i && isOWS(v.charCodeAt(e - 1))) e--;
    if (e > i && eqLower(v, i, e, tok)) return true;
    i = j + 1;
  }
  return false;
}

type Latin1Slice = (this: Buffer, start: number, end: number) => string;
const nativeLatin1 = (Buffer.prototype as unknown as { latin1Slice?: Latin1Slice }).latin1Slice;

const sliceLatin1: (buf: Buffer, start: number, end: number) => string =
  typeof nativeLatin1 === 'function'
    ? (buf, start, end) => nativeLatin1.call(buf, start, end)
    : (buf, start, end) => buf.toString('latin1', start, end);
const fcc = String.fromCharCode;

/**
 * Decode `b[s, e)` as latin1. Strings of up to 16 bytes — most targets, hosts and header values —
 * come from String.fromCharCode with one argument per byte, which V8 builds without leaving
 * JavaScript; Buffer#latin1Slice is a call into C++ that costs ~40 ns whatever the length (a
 * 1-byte value: 6 ns vs 31 ns, 16 bytes: 24 ns vs 35 ns on Node 20). Longer ones take the slice.
 */
export function latin1(b: Buffer, s: number, e: number): string {
  switch (e - s) {
    case 0: return '';
    case 1: return fcc(b[s]);
    case 2: return fcc(b[s], b[s + 1]);
    case 3: return fcc(b[s], b[s + 1], b[s + 2]);
    case 4: return fcc(b[s], b[s + 1], b[s + 2], b[s + 3]);
    case 5: return fcc(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4]);
    case 6: return fcc(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5]);
    case 7: return fcc(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6]);
    case 8: return fcc(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7]);
    case 9: return fcc(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8]);
    case 10: return fcc(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9]);
    case 11: return fcc(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9], b[s + 10]);
    case 12: return fcc(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9], b[s + 10], b[s + 11]);
    case 13: return fcc(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9], b[s + 10], b[s + 11], b[s + 12]);
    case 14: return fcc(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9], b[s + 10], b[s + 11], b[s + 12], b[s + 13]);
    case 15: return fcc(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9], b[s + 10], b[s + 11], b[s + 12], b[s + 13], b[s + 14]);
    case 16: return fcc(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9], b[s + 10], b[s + 11], b[s + 12], b[s + 13], b[s + 14], b[s + 15]);
    default: return sliceLatin1(b, s, e);
  }
}

type Latin1Write = (this: Buffer, s: string, offset: number, length: number) => number;
const nativeLatin1Write = (Buffer.prototype as unknown as { latin1Write?: Latin1Write }).latin1Write;
const nativeUtf8Write = (Buffer.prototype as unknown as { utf8Write?: Latin1Write }).utf8Write;

/** Write a latin1 string at `offset` (fast path through Buffer#latin1Write when available). */
export const writeLatin1: (buf: Buffer, s: string, offset: number) => void =
  typeof nativeLatin1Write === 'function'
    ? (buf, s, offset) => void nativeLatin1Write.call(buf, s, offset, s.length)
    : (buf, s, offset) => void buf.write(s, offset, s.length, 'latin1');

/** Write a UTF-8 string of `bytes` bytes at `offset`. */
export const writeUtf8: (buf: Buffer, s: string, offset: number, bytes: number) => void =
  typeof nativeUtf8Write === 'function'
    ? (buf, s, offset, bytes) => void nativeUtf8Write.call(buf, s, offset, bytes)
    : (buf, s, offset, bytes) => void buf.write(s, offset, bytes, 'utf8');
