/**
 * String-level validators of request fields (cold paths: they run only on the few fields that
 * need them — Content-Length, Host, Transfer-Encoding — and on unusual request targets).
 */
import * as C from './chars.js';
import type { RejectStatus } from './types.js';

const { eqLower, isOWS } = C;
const TOKEN = C.TOKEN, HEX_VAL = C.HEX_VAL, QDTEXT = C.QDTEXT, QPAIR = C.QPAIR, REG_NAME = C.REG_NAME, IP_LITERAL = C.IP_LITERAL;
const COLON = 58, COMMA = 44, SEMI = 59, EQUALS = 61, DQUOTE = 34, BACKSLASH = 92;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** 1*DIGIT, no sign / space / comma, <= MAX_SAFE_INTEGER. Returns -1 when invalid. */
export function parseContentLength(v: string): number {
  const n = v.length;
  if (n === 0 || n > 16) return -1;
  let x = 0;
  for (let i = 0; i < n; i++) {
    const c = v.charCodeAt(i) - 0x30;
    if (c < 0 || c > 9) return -1;
    x = x * 10 + c;
  }
  return x > MAX_SAFE ? -1 : x;
}

function skipOWS(v: string, i: number): number {
  const n = v.length;
  while (i < n && isOWS(v.charCodeAt(i))) i++;
  return i;
}

function skipToken(v: string, i: number): number {
  const n = v.length;
  while (i < n) {
    const c = v.charCodeAt(i);
    if (c > 127 || TOKEN[c] === 0) break;
    i++;
  }
  return i;
}

/** Returns the index after a quoted-string starting at `i` (which must be a DQUOTE), or -1. */
function skipQuoted(v: string, i: number): number {
  const n = v.length;
  i++;
  while (i < n) {
    const c = v.charCodeAt(i);
    if (c === DQUOTE) return i + 1;
    if (c > 255) return -1;
    if (c === BACKSLASH) {
      if (i + 1 >= n) return -1;
      const d = v.charCodeAt(i + 1);
      if (d > 255 || QPAIR[d] === 0) return -1;
      i += 2;
      continue;
    }
    if (QDTEXT[c] === 0) return -1;
    i++;
  }
  return -1;
}

/** uri-host [ ":" port ] (RFC 9110 7.2 / RFC 3986). `requirePort` for CONNECT authority-form. */
export function isValidHost(v: string, requirePort: boolean): boolean {
  const n = v.length;
  if (n === 0) return !requirePort;
  let i = 0;
  if (v.charCodeAt(0) === 0x5b /* [ */) {
    i = 1;
    while (i < n) {
      const c = v.charCodeAt(i);
      if (c === 0x5d /* ] */) break;
      if (c > 127 || IP_LITERAL[c] === 0) return false;
      i++;
    }
    if (i >= n || i < 3) return false; // no ']' or too short
    i++;
  } else {
    while (i < n) {
      const c = v.charCodeAt(i);
      if (c === COLON) break;
      if (c === 0x25 /* % */) {
        if (i + 2 >= n || HEX_VAL[v.charCodeAt(i + 1) & 0xff]! < 0 || HEX_VAL[v.charCodeAt(i + 2) & 0xff]! < 0 ||
          v.charCodeAt(i + 1) > 127 || v.charCodeAt(i + 2) > 127) return false;
        i += 3;
        continue;
      }
      if (c > 127 || REG_NAME[c] === 0) return false;
      i++;
    }
    if (i === 0) return false; // empty host with a port
  }
  if (i === n) return !requirePort;
  if (v.charCodeAt(i) !== COLON) return false;
  i++;
  const digits = n - i;
  if (digits > 5 || (requirePort && digits === 0)) return false;
  for (; i < n; i++) {
    const c = v.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

/** Validates a request-target string (already known to be VCHAR-only) for `method`. Returns a reason or null. */
export function checkTarget(method: string, t: string): string | null {
  const n = t.length;
  const c0 = t.charCodeAt(0);
  if (method === 'CONNECT') {
    return isValidHost(t, true) ? null : 'CONNECT requires an authority-form request target';
  }
  if (c0 === 0x2a /* * */) {
    if (n !== 1) return 'invalid request target';
    return method === 'OPTIONS' ? null : 'asterisk-form request target is only allowed for OPTIONS';
  }
  let i = 0;
  if (c0 !== 0x2f /* / */) {
    // absolute-form: scheme "://" ... (authority-form is only valid for CONNECT)
    const a = c0 | 0x20;
    if (a < 0x61 || a > 0x7a) return 'invalid request target';
    i = 1;
    while (i < n) {
      const c = t.charCodeAt(i);
      const l = c | 0x20;
      if ((l >= 0x61 && l <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2b || c === 0x2d || c === 0x2e) i++;
      else break;
    }
    if (i + 3 > n || t.charCodeAt(i) !== COLON || t.charCodeAt(i + 1) !== 0x2f || t.charCodeAt(i + 2) !== 0x2f) {
      return 'invalid request target (authority-form is only allowed for CONNECT)';
    }
    i += 3;
  }
  for (; i < n; i++) {
    const c = t.charCodeAt(i);
    if (c === 0x23 /* # */) return 'fragment in request target';
    if (c === 0x25 /* % */) {
      if (i + 2 >= n || HEX_VAL[t.charCodeAt(i + 1)]! < 0 || HEX_VAL[t.charCodeAt(i + 2)]! < 0) {
        return 'invalid percent-encoding in request target';
      }
      i += 2;
    }
  }
  return null;
}

/** Why a Transfer-Encoding is refused: the status and the reason (constants: nothing allocated). */
export type TEProblem = readonly [RejectStatus, string];
const TE_INVALID: TEProblem = [400, 'invalid Transfer-Encoding'];
const TE_BAD_PARAM: TEProblem = [400, 'invalid Transfer-Encoding parameter'];
const TE_CHUNKED_PARAMS: TEProblem = [400, 'chunked transfer-coding with parameters'];
const TE_EMPTY: TEProblem = [400, 'empty Transfer-Encoding'];
const TE_NOT_LAST: TEProblem = [400, 'final transfer-coding is not chunked'];
const TE_TWICE: TEProblem = [400, 'chunked applied more than once'];
const TE_UNSUPPORTED: TEProblem = [501, 'unsupported transfer-coding'];

/**
 * Transfer-Encoding of a request: null when it ends in a single `chunked` without parameters;
 * else why not (400), or 501 for other (valid) codings, which the engine does not decode.
 */
export function checkTE(v: string): TEProblem | null {
  const n = v.length;
  let codings = 0, chunked = 0, other = false, lastChunked = false;
  let i = 0;
  while (i < n) {
    i = skipOWS(v, i);
    if (i >= n) break;
    if (v.charCodeAt(i) === COMMA) {
      i++;
      continue;
    }
    const s = i;
    i = skipToken(v, i);
    if (i === s) return TE_INVALID;
    const isChunked = eqLower(v, s, i, 'chunked');
    let params = false;
    for (;;) {
      const j = skipOWS(v, i);
      if (j < n && v.charCodeAt(j) === SEMI) {
        params = true;
        let k = skipOWS(v, j + 1);
        const ks = k;
        k = skipToken(v, k);
        if (k === ks) return TE_BAD_PARAM;
        k = skipOWS(v, k);
        if (k >= n || v.charCodeAt(k) !== EQUALS) return TE_BAD_PARAM;
        k = skipOWS(v, k + 1);
        if (k < n && v.charCodeAt(k) === DQUOTE) {
          k = skipQuoted(v, k);
          if (k < 0) return TE_BAD_PARAM;
        } else {
          const vs = k;
          k = skipToken(v, k);
          if (k === vs) return TE_BAD_PARAM;
        }
        i = k;
      } else {
        i = j;
        break;
      }
    }
    if (i < n && v.charCodeAt(i) !== COMMA) return TE_INVALID;
    i++;
    codings++;
    if (isChunked) {
      chunked++;
      if (params) return TE_CHUNKED_PARAMS;
    } else other = true;
    lastChunked = isChunked;
  }
  if (codings === 0) return TE_EMPTY;
  if (!lastChunked) return TE_NOT_LAST;
  if (chunked > 1) return TE_TWICE;
  if (other) return TE_UNSUPPORTED;
  return null;
}
