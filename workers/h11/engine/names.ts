/**
 * Interning of common methods and header names: a known name costs a byte compare against a
 * constant string instead of an allocation (and a toLowerCase) per field.
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
const NAME_BY_LEN: string[][] = [];
for (const n of NAMES) (NAME_BY_LEN[n.length] ??= []).push(n);

/** The lowercased header name in `buf[s, e)` (a token). */
export function internName(buf: Buffer, s: number, e: number): string {
  const cands = NAME_BY_LEN[e - s];
  if (cands !== undefined) {
    outer: for (let k = 0; k < cands.length; k++) {
      const m = cands[k]!;
      // (b | 0x20) folds A-Z onto a-z; every other token byte that folds onto a letter or '-' is not a tchar.
      for (let i = 0; i < m.length; i++) if ((buf[s + i]! | 0x20) !== m.charCodeAt(i)) continue outer;
      return m;
    }
  }
  return latin1(buf, s, e).toLowerCase();
}
