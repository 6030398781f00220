/**
 * Interning of common methods and header names: a known name costs a byte compare against a
 * constant string instead of an allocation (and a toLowerCase) per field.
 *
 * Header names come back lowercased; how the client spelled the name is left in `spelling`, for
 * the request's `rawHeaders`. Clients send either lowercase (HTTP libraries, h2-minded tools)
 * or the canonical `Title-Case` (browsers, curl, wrk), so both spellings of a known name are
 * constants: only an unusual spelling (`HOST`, `content-Type`) allocates.
 */
import { latin1 } from './chars.js';

const METHODS = ['GET', 'PUT', 'POST', 'HEAD', 'PATCH', 'TRACE', 'DELETE', 'OPTIONS', 'CONNECT'];
const METHOD_BY_LEN: string[][] = [];
for (const m of METHODS) (METHOD_BY_LEN[m.length] ??= []).push(m);

export function internMethod(buf: Buffer, s: number, e: number): string {
  const cands = METHOD_BY_LEN[e - s];
  if (cands !== undefined) {
    outer: for (let k = 0; k < cands.length; k++) {
      const m = cands[k]!;
      for (let i = 0; i < m.length; i++) if (buf[s + i] !== m.charCodeAt(i)) continue outer;
      return m;
    }
  }
  return latin1(buf, s, e);
}

const NAMES = [
  'te', 'via', 'dnt', 'host', 'date', 'from', 'etag', 'vary', 'range', 'accept', 'cookie', 'expect', 'origin',
  'pragma', 'referer', 'upgrade', 'trailer', 'priority', 'if-match', 'if-range', 'sec-ch-ua', 'x-real-ip',
  'connection', 'user-agent', 'keep-alive', 'content-type', 'cache-control', 'authorization', 'if-none-match',
  'content-length', 'accept-charset', 'sec-fetch-site', 'sec-fetch-mode', 'sec-fetch-dest', 'sec-fetch-user',
  'accept-encoding', 'accept-language', 'x-forwarded-for', 'content-encoding', 'sec-ch-ua-mobile',
  'x-requested-with', 'x-forwarded-host', 'transfer-encoding', 'x-forwarded-proto', 'if-modified-since',
  'sec-ch-ua-platform', 'if-unmodified-since', 'upgrade-insecure-requests', 'proxy-authorization',
  'sec-websocket-key', 'sec-websocket-version', 'sec-websocket-protocol', 'sec-websocket-extensions',
];
/** Canonical spellings that are not plain Title-Case. */
const SPELLED: Readonly<Record<string, string>> = {
  te: 'TE', dnt: 'DNT', etag: 'ETag', 'x-real-ip': 'X-Real-IP', 'sec-ch-ua': 'Sec-CH-UA',
  'sec-ch-ua-mobile': 'Sec-CH-UA-Mobile', 'sec-ch-ua-platform': 'Sec-CH-UA-Platform',
  'sec-websocket-key': 'Sec-WebSocket-Key', 'sec-websocket-version': 'Sec-WebSocket-Version',
  'sec-websocket-protocol': 'Sec-WebSocket-Protocol', 'sec-websocket-extensions': 'Sec-WebSocket-Extensions',
};
const canonical = (n: string): string => SPELLED[n] ?? n.replace(/(^|-)[a-z]/g, (m) => m.toUpperCase());

/** The canonical spelling of each known lowercase name. */
export const SPELLING: ReadonlyMap<string, string> = new Map(NAMES.map((n) => [n, canonical(n)]));

// Per length: every spelling compared exactly (each name lowercase, then canonical), and for
// each the lowercase name and whether it was the canonical one.
const SPELLINGS_BY_LEN: string[][] = [];
const LOWER_BY_LEN: string[][] = [];
const CANONICAL_BY_LEN: boolean[][] = [];
const SLOT_BY_LEN: number[][] = [];
/** Credentials: their last value is not kept in the process for the next request to match. */
const NOT_KEPT = new Set(['authorization', 'proxy-authorization', 'cookie']);
NAMES.forEach((n, index) => {
  const slot = NOT_KEPT.has(n) ? -1 : index;
  for (const [sp, isCanonical] of [[n, false], [SPELLING.get(n)!, true]] as const) {
    (SPELLINGS_BY_LEN[n.length] ??= []).push(sp);
    (LOWER_BY_LEN[n.length] ??= []).push(n);
    (CANONICAL_BY_LEN[n.length] ??= []).push(isCanonical);
    (SLOT_BY_LEN[n.length] ??= []).push(slot);
  }
});

/** Slots for the last value of a known name (`spelling.slot` is below this). */
export const VALUE_SLOTS = NAMES.length;

/** How the client spelled a header name (`spelling.sent` after internName()). */
export const SENT_LOWER = 0;
export const SENT_CANONICAL = 1;
/** Any other spelling: the string is in `spelling.other`. */
export const SENT_OTHER = 2;

/**
 * Set by internName(): how the name was spelled (a number, so the common spellings store no
 * string per field), and where the parser keeps its last value (-1: an unknown name, or a
 * credential).
 */
export const spelling = { sent: SENT_LOWER, other: '', slot: -1 };

/**
 * The lowercased header name in `buf[s, e)` (a token); sets `spelling`. The bytes are compared
 * case-sensitively with the known spellings first (a mismatch usually shows at the first byte);
 * only an unusual spelling of a known name is folded.
 */
export function internName(buf: Buffer, s: number, e: number): string {
  const n = e - s;
  const cands = SPELLINGS_BY_LEN[n];
  if (cands !== undefined) {
    outer: for (let k = 0; k < cands.length; k++) {
      const m = cands[k]!;
      for (let i = 0; i < n; i++) if (buf[s + i] !== m.charCodeAt(i)) continue outer;
      spelling.sent = CANONICAL_BY_LEN[n]![k]! ? SENT_CANONICAL : SENT_LOWER;
      spelling.slot = SLOT_BY_LEN[n]![k]!;
      return LOWER_BY_LEN[n]![k]!;
    }
    const lower = LOWER_BY_LEN[n]!;
    outer: for (let k = 0; k < lower.length; k += 2) {
      const m = lower[k]!;
      // (b | 0x20) folds A-Z onto a-z; every other token byte that folds onto a letter or '-' is not a tchar.
      for (let i = 0; i < n; i++) if ((buf[s + i]! | 0x20) !== m.charCodeAt(i)) continue outer;
      spelling.sent = SENT_OTHER;
      spelling.other = latin1(buf, s, e);
      spelling.slot = SLOT_BY_LEN[n]![k]!;
      return m;
    }
  }
  spelling.slot = -1;
  const raw = latin1(buf, s, e);
  const lower = raw.toLowerCase();
  if (lower === raw) spelling.sent = SENT_LOWER;
  else {
    spelling.sent = SENT_OTHER;
    spelling.other = raw;
  }
  return lower;
}
