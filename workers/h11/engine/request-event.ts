/**
 * The request event. A class rather than a literal only for `rawHeaders`, which is built the
 * first time someone reads it: the parser records how names were spelled as a bitmask (the
 * common case) and the original-case list costs nothing for consumers that never look at it
 * (fetch apps), and nothing at all when the client sent lowercase names.
 */
import { SPELLING } from './names.js';
import type { BodyKind, HttpVersion, RequestEvent } from './types.js';

/** Field indexes the spelling mask can hold (bits of a small integer). */
export const MASK_FIELDS = 30;

/**
 * A copy of `headers[0, end)` where each field whose bit is set in `mask` gets the canonical
 * spelling of its (known, lowercase) name.
 */
export function respell(headers: readonly string[], mask: number, end: number): string[] {
  // A loop, not slice(): for the few fields of a typical request the builtin's call costs
  // more than the copy (~1% of the worker's CPU with 8-deep pipelining).
  const raw: string[] = [];
  for (let i = 0; i < end; i++) raw.push(headers[i]!);
  for (let f = 0; mask !== 0; f++, mask >>>= 1) {
    if ((mask & 1) !== 0) raw[2 * f] = SPELLING.get(raw[2 * f]!)!;
  }
  return raw;
}

export class Request implements RequestEvent {
  // Declared, not initialized: with ES2022 class fields each initializer would be one more
  // define per field per request, before the constructor's own stores.
  declare readonly type: 'request';
  declare readonly method: string;
  declare readonly target: string;
  declare readonly version: HttpVersion;
  declare readonly headers: string[];
  declare readonly keepAlive: boolean;
  declare readonly expectContinue: boolean;
  declare readonly bodyKind: BodyKind;
  declare readonly contentLength: number | null;
  declare readonly upgrade: string | null;
  /** Fields (index < MASK_FIELDS) whose name came in its canonical spelling. */
  private declare readonly spelled: number;
  /** The original-case list: null until read, unless the parser had to build it as it went. */
  private declare raw: string[] | null;

  constructor(
    method: string, target: string, version: HttpVersion, headers: string[], spelled: number, raw: string[] | null,
    keepAlive: boolean, expectContinue: boolean, bodyKind: BodyKind, contentLength: number | null, upgrade: string | null,
  ) {
    this.type = 'request';
    this.method = method;
    this.target = target;
    this.version = version;
    this.headers = headers;
    this.keepAlive = keepAlive;
    this.expectContinue = expectContinue;
    this.bodyKind = bodyKind;
    this.contentLength = contentLength;
    this.upgrade = upgrade;
    this.spelled = spelled;
    this.raw = raw;
  }

  get rawHeaders(): string[] {
    let raw = this.raw;
    if (raw === null) raw = this.raw = this.spelled === 0 ? this.headers : respell(this.headers, this.spelled, this.headers.length);
    return raw;
  }
}
