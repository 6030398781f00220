/**
 * Request side of the engine: bytes in, events out.
 *
 * Strategy: one request at a time. The head is parsed line by line with resumable byte
 * scanners (each byte is classified once, in order, whatever the chunking), so the result
 * (events, and which error) never depends on how the input was split. Once a request is
 * complete the reader stops in the `waiting` state (`might-switch` when the request proposed
 * an Upgrade) and only buffers further bytes until the connection calls `resume()` after the
 * response is finished, or switches protocols.
 *
 * States change only through `go(event)`: the table in states.ts says where each event leads.
 */
import * as C from './chars.js';
import { VALUE_SLOTS, SENT_CANONICAL, SENT_LOWER, SPELLING, internMethod, internName, spelling } from './names.js';
import { MASK_FIELDS, Request, respell } from './request-event.js';
import {
  R_BODY, R_CHUNK_CR, R_CHUNK_DATA, R_CHUNK_LF, R_CHUNK_SIZE, R_CLOSED, R_ERROR, R_HEAD, R_MIGHT_SWITCH, R_NEXT,
  R_SWITCHED, R_TRAILERS, R_WAITING, RE_CHUNK, RE_CHUNK_END, RE_CLOSE, RE_CR, RE_DECLINE, RE_END, RE_EOF, RE_FAIL,
  RE_LAST_CHUNK, RE_LF, RE_REQUEST, RE_REQUEST_CHUNKED, RE_REQUEST_LENGTH, RE_RESUME, RE_SWITCH, RE_UPGRADE,
  READ_EVENT_COUNT, illegalRead, trace,
} from './states.js';
import type { EndEvent, H11Event, H11Options, HttpVersion, RejectStatus, RequestEvent } from './types.js';
import { checkTE, checkTarget, isValidHost, parseContentLength } from './validators.js';

const { eqLower, latin1, listHasToken } = C;
const TOKEN = C.TOKEN, FIELD_CHAR = C.FIELD_CHAR, VCHAR = C.VCHAR, HEX_VAL = C.HEX_VAL, QDTEXT = C.QDTEXT, QPAIR = C.QPAIR;
const CR = 13, LF = 10, SP = 32, HTAB = 9, COLON = 58, SEMI = 59, EQUALS = 61, DQUOTE = 34, BACKSLASH = 92;

const NEED = -1;
const BAD = -2;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const NO_BYTES = Buffer.alloc(0);

/**
 * The last value of each known header name (credentials aside: names.ts), in any request of
 * this process. A client sends the same Host, User-Agent, Accept… on every request, and
 * clients behind one proxy mostly agree: comparing the bytes with the last value is cheaper
 * than making a new string, and the same string coming back lets finishHead() skip
 * validating a Host it validated last. Values longer than MAX_KEPT_VALUE are not kept.
 */
const lastValue: string[] = new Array<string>(VALUE_SLOTS).fill('');
const MAX_KEPT_VALUE = 256;
/** Shorter values are made as fast as they are compared (bench/h11-engine.mjs). */
const MIN_KEPT_VALUE = 8;
/** The last Host value found valid. */
let validHost: string | null = null;

function keptValue(buf: Buffer, s: number, e: number, slot: number): string {
  const last = lastValue[slot]!;
  const n = e - s;
  if (last.length === n) {
    let i = 0;
    while (i < n && buf[s + i] === last.charCodeAt(i)) i++;
    if (i === n) return last;
  }
  const v = latin1(buf, s, e);
  if (n <= MAX_KEPT_VALUE) lastValue[slot] = v;
  return v;
}

export const END_EVENT: EndEvent = Object.freeze({ type: 'end', trailers: null }) as EndEvent;

/** Hears about each request head as it completes (the connection). */
export interface RequestSink {
  onRequest(ev: RequestEvent): void;
}

function hardLimit(v: number | undefined, def: number, cap: number, name: string): number {
  if (v === undefined) return def;
  if (!Number.isInteger(v) || v < 0) throw new RangeError(`${name} must be a non-negative integer`);
  return v === 0 ? cap : v;
}

export class RequestReader {
  /** Current read state (R_*, see states.ts). Changed only by go(). */
  rs = R_HEAD;
  /** The peer half-closed (receiveEOF). */
  eof = false;

  readonly lineLimit: number;
  readonly fieldsLimit: number;
  readonly fieldSizeLimit: number;
  readonly maxBody: number;

  // Byte queue for bytes not yet consumed (partial lines, held pipelined requests).
  private q: Buffer | null = null;
  private qs = 0;
  private qe = 0;

  // Resumable line-scanner state (offsets relative to the start of the current line).
  private scanOff = 0;
  private mark1 = -1;
  private mark2 = -1;

  // Head-in-progress.
  private haveLine = false;
  private method = '';
  private target = '';
  private version: HttpVersion = '1.1';
  private headers: string[] = [];
  private nFields = 0;
  private clCount = 0;
  private clValue = '';
  private te: string | null = null;
  private hostCount = 0;
  private hostValue = '';
  private connValue: string | null = null;
  private upgradeValue: string | null = null;
  private expect100 = false;
  // How the names were spelled, for rawHeaders: a bit per field sent in canonical spelling, or,
  // from the first spelling the mask cannot hold, the original-case list itself.
  private spelled = 0;
  private rawList: string[] | null = null;

  /** The current request proposed an Upgrade the app has not declined: at its end, go to might-switch. */
  private switchProposed = false;

  // Body.
  private remaining = 0;
  private received = 0;
  private trailers: string[] | null = null;

  // Last error.
  private errStatus: RejectStatus = 400;
  private errReason = '';

  constructor(opts: H11Options, private readonly sink: RequestSink) {
    this.lineLimit = hardLimit(opts.limitRequestLine, 4094, 65536, 'limitRequestLine');
    this.fieldsLimit = hardLimit(opts.limitRequestFields, 100, 32768, 'limitRequestFields');
    this.fieldSizeLimit = hardLimit(opts.limitRequestFieldSize, 8190, 65536, 'limitRequestFieldSize');
    const mb = opts.maxBodySize ?? Infinity;
    if (typeof mb !== 'number' || Number.isNaN(mb) || mb < 0) throw new RangeError('maxBodySize must be a number >= 0');
    this.maxBody = mb;
  }

  get bufferedBytes(): number {
    return this.qe - this.qs;
  }

  /** Feed `chunk[0, n)` (or nothing, to continue with buffered bytes). */
  receive(chunk: Buffer | undefined, n: number, out: H11Event[]): void {
    const rs = this.rs;
    if (rs >= R_WAITING) {
      // Not parsing. A pending response holds what arrives (pipelining, or the new protocol's
      // first bytes while an upgrade is decided), and so does a switched connection, for
      // takeBuffered(); a closed or failed reader drops it.
      if (chunk !== undefined && n > 0 && (rs <= R_MIGHT_SWITCH || rs === R_SWITCHED)) {
        this.enqueue(chunk, 0, n);
      }
      return;
    }
    if (chunk !== undefined && n > 0) {
      if (this.qe > this.qs) {
        this.enqueue(chunk, 0, n);
        this.runQueue(out);
      } else {
        const p = this.run(chunk, 0, n, out, false);
        if (p < n && this.rs < R_CLOSED) this.enqueue(chunk, p, n);
      }
    } else if (this.qe > this.qs) {
      this.runQueue(out);
    }
    if (this.eof) this.checkEOF(out);
  }

  receiveEOF(out: H11Event[]): void {
    if (this.rs >= R_CLOSED) return;
    this.eof = true;
    this.receive(undefined, 0, out);
  }

  /** Response finished and the connection persists: parse the next request on the next receive(). */
  resume(): void {
    if (this.rs === R_WAITING) this.go(RE_RESUME);
  }

  /** Stop reading for good (keeps R_ERROR if set). */
  close(): void {
    if (this.rs < R_CLOSED) this.go(RE_CLOSE);
    this.q = null;
    this.qs = this.qe = 0;
  }

  /** Whether the current request's body has been completely received (and no switch is pending). */
  get requestComplete(): boolean {
    return this.rs === R_WAITING;
  }

  /** The current request proposed an Upgrade, is complete, and nothing declined it yet. */
  get switchPending(): boolean {
    return this.rs === R_MIGHT_SWITCH;
  }

  /**
   * The app answers the current request with a final response: no protocol switch. Held bytes
   * are HTTP again; if the body is still arriving, its end no longer leads to might-switch.
   */
  decline(): void {
    this.switchProposed = false;
    if (this.rs === R_MIGHT_SWITCH) this.go(RE_DECLINE);
  }

  /** The connection switched protocols: nothing is ever parsed again, later bytes are held. */
  switchProtocols(): void {
    this.switchProposed = false;
    this.go(RE_SWITCH);
  }

  /** After the switch: the bytes received past the request, which belong to the new protocol. */
  takeBuffered(): Buffer {
    const q = this.q;
    if (q === null || this.qe === this.qs) return NO_BYTES;
    // Handed over as it is, not copied: the reader lets go of the buffer (a later receive()
    // starts a new one), so nothing can overwrite what the caller now owns.
    const held = q.subarray(this.qs, this.qe);
    this.q = null;
    this.qs = this.qe = 0;
    return held;
  }

  /** The only place a read state changes: the table decides where `ev` leads. */
  private go(ev: number): void {
    const from = this.rs;
    const to = R_NEXT[from * READ_EVENT_COUNT + ev]!;
    if (to < 0) illegalRead(from, ev);
    if (trace !== null) trace('read', this, from, ev, to);
    this.rs = to;
  }

  /** The request's body is complete (or it had none). */
  private ended(ev: number): void {
    this.go(ev);
    if (this.switchProposed) this.go(RE_UPGRADE);
  }

  // -------------------------------------------------------------------------------------------

  private enqueue(buf: Buffer, s: number, e: number): void {
    const n = e - s;
    let q = this.q;
    if (q === null) {
      q = this.q = Buffer.allocUnsafeSlow(n > 4096 ? n : 4096);
      this.qs = this.qe = 0;
    } else if (q.length - this.qe < n) {
      const live = this.qe - this.qs;
      if (q.length - live >= n && this.qs >= live) {
        q.copy(q, 0, this.qs, this.qe); // compact (live data is small relative to the freed space)
      } else {
        let cap = q.length * 2;
        while (cap < live + n) cap *= 2;
        const nq = Buffer.allocUnsafeSlow(cap);
        q.copy(nq, 0, this.qs, this.qe);
        q = this.q = nq;
      }
      this.qs = 0;
      this.qe = live;
    }
    buf.copy(q, this.qe, s, e);
    this.qe += n;
  }

  private runQueue(out: H11Event[]): void {
    const p = this.run(this.q!, this.qs, this.qe, out, true);
    if (this.rs >= R_CLOSED) return;
    this.qs = p;
    if (p === this.qe) {
      this.qs = this.qe = 0;
      if (this.q!.length > 65536) this.q = null; // drop large buffers once drained
    }
  }

  private checkEOF(out: H11Event[]): void {
    const rs = this.rs;
    if (rs === R_HEAD) {
      if (this.qe === this.qs && !this.haveLine) {
        this.go(RE_EOF);
        this.q = null;
      } else {
        this.fail(400, 'connection closed in the middle of a request head');
        this.emitError(out);
      }
    } else if (rs < R_WAITING) {
      this.fail(400, 'connection closed before the request body was complete');
      this.emitError(out);
    }
  }

  private fail(status: RejectStatus, reason: string): number {
    this.errStatus = status;
    this.errReason = reason;
    this.go(RE_FAIL);
    return BAD;
  }

  private failed(status: RejectStatus, reason: string): false {
    this.fail(status, reason);
    return false;
  }

  private emitError(out: H11Event[]): void {
    out.push({ type: 'error', status: this.errStatus, reason: this.errReason });
    this.q = null;
    this.qs = this.qe = 0;
    this.headers = [];
    this.trailers = null;
  }

  /** Main loop. Returns the offset up to which `buf` was consumed. */
  private run(buf: Buffer, pos: number, end: number, out: H11Event[], copy: boolean): number {
    for (;;) {
      const rs = this.rs;
      if (rs === R_HEAD) {
        pos = this.parseHead(buf, pos, end, out);
        if (this.rs === R_HEAD) return pos; // needs more bytes
      } else if (rs === R_BODY) {
        const avail = end - pos;
        if (avail === 0) return pos;
        const rem = this.remaining;
        const take = avail < rem ? avail : rem;
        const sub = buf.subarray(pos, pos + take);
        out.push({ type: 'data', chunk: copy ? Buffer.from(sub) : sub });
        pos += take;
        if ((this.remaining = rem - take) === 0) {
          out.push(END_EVENT);
          this.ended(RE_END);
        }
      } else if (rs === R_CHUNK_SIZE) {
        const n = this.scanChunkLine(buf, pos, end);
        if (n === NEED) return pos;
        if (n === BAD) break;
        if (!this.parseChunkLine(buf, pos, pos + n)) break;
        pos += n + 2;
        this.scanOff = 0;
      } else if (rs === R_CHUNK_DATA) {
        const avail = end - pos;
        if (avail === 0) return pos;
        const rem = this.remaining;
        const take = avail < rem ? avail : rem;
        const sub = buf.subarray(pos, pos + take);
        out.push({ type: 'data', chunk: copy ? Buffer.from(sub) : sub });
        pos += take;
        if ((this.remaining = rem - take) === 0) this.go(RE_CHUNK_END);
      } else if (rs === R_CHUNK_CR) {
        if (pos >= end) return pos;
        if (buf[pos] !== CR) {
          this.fail(400, 'chunk data not followed by CRLF');
          break;
        }
        pos++;
        this.go(RE_CR);
      } else if (rs === R_CHUNK_LF) {
        if (pos >= end) return pos;
        if (buf[pos] !== LF) {
          this.fail(400, 'chunk data not followed by CRLF');
          break;
        }
        pos++;
        this.go(RE_LF);
      } else if (rs === R_TRAILERS) {
        const n = this.scanField(buf, pos, end);
        if (n === NEED) return pos;
        if (n === BAD) break;
        pos += n + 2;
        this.scanOff = 0;
        this.mark1 = -1;
        if (n === 0) {
          const t = this.trailers;
          this.trailers = null;
          out.push(t === null ? END_EVENT : { type: 'end', trailers: t });
          this.ended(RE_END);
        } else {
          const t = (this.trailers ??= []);
          if (t.length >= this.fieldsLimit * 2) {
            this.fail(431, 'too many trailer fields');
            break;
          }
          this.pushField(buf, pos - n - 2, n, t);
        }
      } else {
        return pos; // waiting / might-switch / closed / error
      }
      if (this.rs === R_ERROR) break;
    }
    this.emitError(out);
    return end;
  }

  // -------------------------------------------------------------------------------------------
  // Head

  private parseHead(buf: Buffer, pos: number, end: number, out: H11Event[]): number {
    for (;;) {
      if (!this.haveLine) {
        if (this.scanOff === 0) {
          // RFC 9112 2.2: ignore empty lines (CRLF) received before the request-line.
          while (pos < end) {
            const c = buf[pos];
            if (c === CR) {
              if (pos + 1 >= end) return pos;
              if (buf[pos + 1] !== LF) return this.fail(400, 'bare CR'), pos;
              pos += 2;
            } else if (c === LF) {
              return this.fail(400, 'bare LF line ending'), pos;
            } else break;
          }
          if (pos >= end) return pos;
        }
        const n = this.scanRequestLine(buf, pos, end);
        if (n < 0) return pos;
        if (!this.requestLine(buf, pos, pos + n)) return pos;
        pos += n + 2;
        this.scanOff = 0;
        this.mark1 = this.mark2 = -1;
        this.haveLine = true;
        continue;
      }
      const n = this.scanField(buf, pos, end);
      if (n < 0) return pos;
      const ls = pos;
      pos += n + 2;
      this.scanOff = 0;
      this.mark1 = -1;
      if (n === 0) {
        this.finishHead(out);
        return pos;
      }
      if (this.nFields >= this.fieldsLimit) return this.fail(431, 'too many header fields'), pos;
      this.nFields++;
      this.pushField(buf, ls, n, this.headers);
    }
  }

  /**
   * Scans `method SP request-target SP HTTP-version CRLF`.
   * Returns the line length (CR at pos+n, LF at pos+n+1), NEED or BAD.
   */
  private scanRequestLine(buf: Buffer, pos: number, end: number): number {
    const lim = pos + this.lineLimit;
    const stop = end < lim ? end : lim;
    let p = pos + this.scanOff;
    let c: number;
    if (this.mark1 < 0) {
      while (p < stop && TOKEN[buf[p]!] !== 0) p++;
      if (p >= end) return (this.scanOff = p - pos), NEED;
      c = buf[p]!;
      if (p === lim && c !== CR) return this.fail(414, 'request line too long');
      if (c !== SP || p === pos) {
        return this.fail(400, c === LF ? 'bare LF line ending' : c === CR ? 'malformed request line' : 'invalid character in method');
      }
      this.mark1 = p - pos;
      p++;
    }
    if (this.mark2 < 0) {
      while (p < stop && VCHAR[buf[p]!] !== 0) p++;
      if (p >= end) return (this.scanOff = p - pos), NEED;
      c = buf[p]!;
      if (p === lim && c !== CR) return this.fail(414, 'request line too long');
      if (c !== SP || p === pos + this.mark1 + 1) {
        return this.fail(400,
          c === SP ? 'empty request target or repeated SP' :
          c === CR ? 'missing HTTP version' :
          c === LF ? 'bare LF line ending' :
          c === HTAB ? 'HTAB in request line' : 'invalid character in request target');
      }
      this.mark2 = p - pos;
      p++;
    }
    while (p < stop && VCHAR[buf[p]!] !== 0) p++;
    if (p >= end) return (this.scanOff = p - pos), NEED;
    c = buf[p]!;
    if (c === CR) {
      if (p + 1 >= end) return (this.scanOff = p - pos), NEED;
      if (buf[p + 1] !== LF) return this.fail(400, 'bare CR');
      if (p === pos + this.mark2 + 1) return this.fail(400, 'missing HTTP version');
      return p - pos;
    }
    if (p === lim) return this.fail(414, 'request line too long');
    return this.fail(400, c === SP ? 'extra SP in request line' : c === LF ? 'bare LF line ending' : 'invalid character in request line');
  }

  /** Structural checks of a complete request line [s, e). */
  private requestLine(buf: Buffer, s: number, e: number): boolean {
    const ms = s, me = s + this.mark1;
    const ts = me + 1, te = s + this.mark2;
    const vs = te + 1;
    // HTTP-version = "HTTP/" DIGIT "." DIGIT (case-sensitive)
    if (e - vs !== 8 || buf[vs] !== 0x48 || buf[vs + 1] !== 0x54 || buf[vs + 2] !== 0x54 || buf[vs + 3] !== 0x50 ||
      buf[vs + 4] !== 0x2f || buf[vs + 6] !== 0x2e) {
      this.fail(400, 'invalid HTTP version');
      return false;
    }
    const maj = buf[vs + 5]! - 0x30, min = buf[vs + 7]! - 0x30;
    if (maj < 0 || maj > 9 || min < 0 || min > 9) {
      this.fail(400, 'invalid HTTP version');
      return false;
    }
    if (maj !== 1 || min > 1) {
      this.fail(505, 'HTTP version not supported');
      return false;
    }
    this.version = min === 1 ? '1.1' : '1.0';
    const method = (this.method = internMethod(buf, ms, me));
    // Fast path for the overwhelmingly common "/..." target.
    let target: string;
    if (buf[ts] === 0x2f) {
      let bad = false;
      for (let i = ts + 1; i < te; i++) {
        const c = buf[i];
        if (c === 0x23 || c === 0x25) {
          bad = true;
          break;
        }
      }
      target = latin1(buf, ts, te);
      if (bad || method === 'CONNECT') {
        const why = checkTarget(method, target);
        if (why !== null) {
          this.fail(400, why);
          return false;
        }
      }
    } else {
      target = latin1(buf, ts, te);
      const why = checkTarget(method, target);
      if (why !== null) {
        this.fail(400, why);
        return false;
      }
    }
    this.target = target;
    return true;
  }

  /**
   * Scans `field-name ":" OWS field-value OWS CRLF` (also used for trailers).
   * Returns the line length (0 = the empty line ending the section), NEED or BAD.
   */
  private scanField(buf: Buffer, pos: number, end: number): number {
    const lim = pos + this.fieldSizeLimit;
    const stop = end < lim ? end : lim;
    let p = pos + this.scanOff;
    let c: number;
    if (this.mark1 < 0) {
      while (p < stop && TOKEN[buf[p]!] !== 0) p++;
      if (p >= end) return (this.scanOff = p - pos), NEED;
      c = buf[p]!;
      if (c === CR && p === pos) {
        if (p + 1 >= end) return (this.scanOff = 0), NEED;
        if (buf[p + 1] !== LF) return this.fail(400, 'bare CR');
        return 0;
      }
      if (p === lim && c !== CR) return this.fail(431, 'header field line too long');
      if (c !== COLON || p === pos) {
        return this.fail(400,
          p === pos && (c === SP || c === HTAB) ? 'obsolete line folding or leading whitespace in field line' :
          c === SP || c === HTAB ? 'whitespace between field name and colon' :
          c === COLON ? 'empty field name' :
          c === LF ? 'bare LF line ending' :
          c === CR ? 'field line without colon' : 'invalid character in field name');
      }
      this.mark1 = p - pos;
      p++;
    }
    while (p < stop && FIELD_CHAR[buf[p]!] !== 0) p++;
    if (p >= end) return (this.scanOff = p - pos), NEED;
    c = buf[p]!;
    if (c === CR) {
      if (p + 1 >= end) return (this.scanOff = p - pos), NEED;
      if (buf[p + 1] !== LF) return this.fail(400, 'bare CR');
      return p - pos;
    }
    if (p === lim) return this.fail(431, 'header field line too long');
    return this.fail(400, c === LF ? 'bare LF line ending' : c === 0 ? 'NUL in field value' : 'invalid character in field value');
  }

  /** Push the name/value of a scanned field line [ls, ls+n) (colon at mark1, already reset to -1 by caller: use scan). */
  private pushField(buf: Buffer, ls: number, n: number, into: string[]): void {
    // Colon position: first ':' in the line (names are tokens, which cannot contain ':').
    let colon = ls;
    while (buf[colon] !== COLON) colon++;
    const name = internName(buf, ls, colon);
    let vs = colon + 1;
    let ve = ls + n;
    while (vs < ve && (buf[vs] === SP || buf[vs] === HTAB)) vs++;
    while (ve > vs && (buf[ve - 1] === SP || buf[ve - 1] === HTAB)) ve--;
    const value = spelling.slot >= 0 && ve - vs >= MIN_KEPT_VALUE ? keptValue(buf, vs, ve, spelling.slot) : vs < ve ? latin1(buf, vs, ve) : '';
    into.push(name, value);
    if (into !== this.headers) return;
    if (spelling.sent !== SENT_LOWER || this.rawList !== null) this.noteSpelling(into.length - 2);
    switch (name) {
      case 'host':
        this.hostCount++;
        this.hostValue = value;
        break;
      case 'content-length':
        this.clCount++;
        this.clValue = value;
        break;
      case 'transfer-encoding':
        this.te = this.te === null ? value : this.te + ',' + value;
        break;
      case 'connection':
        this.connValue = this.connValue === null ? value : this.connValue + ',' + value;
        break;
      case 'expect':
        if (eqLower(value, 0, value.length, '100-continue')) this.expect100 = true;
        break;
      case 'upgrade':
        this.upgradeValue = this.upgradeValue === null ? value : this.upgradeValue + ', ' + value;
        break;
    }
  }

  /** The field at `at` in `headers` was not sent in lowercase, or the list is being built already. */
  private noteSpelling(at: number): void {
    const sent = spelling.sent;
    let raw = this.rawList;
    if (raw === null) {
      const field = at >> 1;
      if (sent === SENT_CANONICAL && field < MASK_FIELDS) {
        this.spelled |= 1 << field;
        return;
      }
      raw = this.rawList = respell(this.headers, this.spelled, at);
    }
    const name = this.headers[at]!;
    raw.push(sent === SENT_LOWER ? name : sent === SENT_CANONICAL ? SPELLING.get(name)! : spelling.other, this.headers[at + 1]!);
  }

  private finishHead(out: H11Event[]): void {
    const v10 = this.version === '1.0';
    let bodyKind: 'none' | 'length' | 'chunked' = 'none';
    let contentLength: number | null = 0;
    if (this.te !== null) {
      if (v10) return void this.fail(400, 'Transfer-Encoding in an HTTP/1.0 request');
      if (this.clCount > 0) return void this.fail(400, 'both Transfer-Encoding and Content-Length');
      const why = checkTE(this.te);
      if (why !== null) return void this.fail(why[0], why[1]);
      bodyKind = 'chunked';
      contentLength = null;
    } else if (this.clCount > 0) {
      if (this.clCount > 1) return void this.fail(400, 'duplicate Content-Length');
      const cl = parseContentLength(this.clValue);
      if (cl < 0) return void this.fail(400, 'invalid Content-Length');
      bodyKind = 'length';
      contentLength = cl;
    }
    if (this.hostCount === 0) {
      if (!v10) return void this.fail(400, 'missing Host header');
    } else if (this.hostCount > 1) {
      return void this.fail(400, 'duplicate Host header');
    } else if (this.hostValue !== validHost) {
      if (!isValidHost(this.hostValue, false)) return void this.fail(400, 'invalid Host header');
      validHost = this.hostValue;
    }
    if (contentLength !== null && contentLength > this.maxBody) return void this.fail(413, 'request body too large');

    const conn = this.connValue;
    let keepAlive: boolean;
    if (conn === null) keepAlive = !v10;
    else if (listHasToken(conn, 'close')) keepAlive = false;
    else keepAlive = !v10 || listHasToken(conn, 'keep-alive');
    const method = this.method;
    const expectContinue = this.expect100 && !v10 && bodyKind !== 'none';
    // RFC 9110 7.8: an Upgrade counts only when `Connection` names it (an intermediary that does
    // not know Upgrade would have forwarded it), never in HTTP/1.0; CONNECT is a switch of its
    // own, which the engine does not do.
    let upgrade: string | null = null;
    if (this.upgradeValue !== null) {
      if (!v10 && method !== 'CONNECT' && this.upgradeValue !== '' && conn !== null && listHasToken(conn, 'upgrade')) {
        upgrade = this.upgradeValue;
      }
      this.upgradeValue = null;
    }
    const ev = new Request(method, this.target, this.version, this.headers, this.spelled, this.rawList, keepAlive,
      expectContinue, bodyKind, contentLength, upgrade);
    out.push(ev);
    // Reset head state for the next request.
    this.haveLine = false;
    this.headers = [];
    this.spelled = 0;
    this.rawList = null;
    this.nFields = 0;
    this.clCount = 0;
    this.te = null;
    this.hostCount = 0;
    this.connValue = null;
    this.expect100 = false;
    this.switchProposed = upgrade !== null;
    if (bodyKind === 'none' || contentLength === 0) {
      out.push(END_EVENT);
      this.ended(RE_REQUEST);
    } else if (bodyKind === 'length') {
      this.remaining = contentLength!;
      this.go(RE_REQUEST_LENGTH);
    } else {
      this.received = 0;
      this.trailers = null;
      this.go(RE_REQUEST_CHUNKED);
    }
    this.sink.onRequest(ev);
  }

  // -------------------------------------------------------------------------------------------
  // Chunked body

  /** Scans a chunk-size line; returns its length, NEED or BAD. */
  private scanChunkLine(buf: Buffer, pos: number, end: number): number {
    const lim = pos + this.fieldSizeLimit;
    const stop = end < lim ? end : lim;
    let p = pos + this.scanOff;
    while (p < stop && FIELD_CHAR[buf[p]!] !== 0) p++;
    if (p >= end) return (this.scanOff = p - pos), NEED;
    const c = buf[p]!;
    if (c === CR) {
      if (p + 1 >= end) return (this.scanOff = p - pos), NEED;
      if (buf[p + 1] !== LF) return this.fail(400, 'bare CR in chunk-size line');
      return p - pos;
    }
    if (p === lim) return this.fail(400, 'chunk-size line too long');
    return this.fail(400, c === LF ? 'bare LF in chunk-size line' : 'invalid character in chunk-size line');
  }

  /** chunk-size [ chunk-ext ] on [s, e). */
  private parseChunkLine(buf: Buffer, s: number, e: number): boolean {
    let p = s;
    let size = 0;
    while (p < e) {
      const d = HEX_VAL[buf[p]!]!;
      if (d < 0) break;
      size = size * 16 + d;
      p++;
      if (p - s > 16 || size > MAX_SAFE) return this.failed(400, 'chunk size too large');
    }
    if (p === s) return this.failed(400, 'invalid chunk size');
    // chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
    while (p < e) {
      let q = p;
      while (q < e && (buf[q] === SP || buf[q] === HTAB)) q++;
      if (q >= e || buf[q] !== SEMI) return this.failed(400, 'invalid chunk extension');
      q++;
      while (q < e && (buf[q] === SP || buf[q] === HTAB)) q++;
      const ns = q;
      while (q < e && TOKEN[buf[q]!] !== 0) q++;
      if (q === ns) return this.failed(400, 'invalid chunk extension');
      let r = q;
      while (r < e && (buf[r] === SP || buf[r] === HTAB)) r++;
      if (r < e && buf[r] === EQUALS) {
        r++;
        while (r < e && (buf[r] === SP || buf[r] === HTAB)) r++;
        if (r < e && buf[r] === DQUOTE) {
          r++;
          for (;;) {
            if (r >= e) return this.failed(400, 'invalid chunk extension');
            const c = buf[r]!;
            if (c === DQUOTE) {
              r++;
              break;
            }
            if (c === BACKSLASH) {
              if (r + 1 >= e || QPAIR[buf[r + 1]!] === 0) return this.failed(400, 'invalid chunk extension');
              r += 2;
            } else if (QDTEXT[c] === 0) {
              return this.failed(400, 'invalid chunk extension');
            } else r++;
          }
        } else {
          const vs = r;
          while (r < e && TOKEN[buf[r]!] !== 0) r++;
          if (r === vs) return this.failed(400, 'invalid chunk extension');
        }
        q = r;
      }
      p = q; // whitespace after a name without '=' must be followed by ';' (checked on next iteration)
    }
    if (size === 0) {
      this.go(RE_LAST_CHUNK);
      this.mark1 = -1;
      return true;
    }
    const total = this.received + size;
    if (total > this.maxBody) return this.failed(413, 'request body too large');
    this.received = total;
    this.remaining = size;
    this.go(RE_CHUNK);
    return true;
  }
}
