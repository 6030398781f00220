// Shared helpers for the h11 engine tests (plus a self-test at the end).
import { H11Connection, toBytes } from '../workers/h11/engine/index.js';
import type { H11Event, H11Options, Output } from '../workers/h11/engine/index.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';

export type Norm =
  | {
    type: 'request'; method: string; target: string; version: string; headers: string[]; rawHeaders: string[];
    keepAlive: boolean; expectContinue: boolean; bodyKind: string; contentLength: number | null; upgrade: string | null;
  }
  | { type: 'data'; text: string }
  | { type: 'end'; trailers: string[] | null }
  | { type: 'error'; status: number };

/** Normalizes events: merges consecutive data chunks, drops error reasons, copies request fields (rawHeaders too). */
export function normalize(events: H11Event[]): Norm[] {
  const out: Norm[] = [];
  for (const e of events) {
    if (e.type === 'data') {
      const last = out[out.length - 1];
      if (last !== undefined && last.type === 'data') last.text += e.chunk.toString('latin1');
      else out.push({ type: 'data', text: e.chunk.toString('latin1') });
    } else if (e.type === 'error') out.push({ type: 'error', status: e.status });
    else if (e.type === 'end') out.push({ type: 'end', trailers: e.trailers });
    else {
      out.push({
        type: 'request', method: e.method, target: e.target, version: e.version, headers: [...e.headers],
        rawHeaders: [...e.rawHeaders], keepAlive: e.keepAlive, expectContinue: e.expectContinue, bodyKind: e.bodyKind,
        contentLength: e.contentLength, upgrade: e.upgrade,
      });
    }
  }
  return out;
}

export interface DriveResult { events: Norm[]; raw: H11Event[]; out: string; conn: H11Connection }

/**
 * Minimal driver: feeds chunks; answers every request (after its `end`) with
 * respond(200, {}, target) — which declines any Upgrade; answers errors with errorResponse when
 * possible; keeps parsing held-back pipelined bytes after each response.
 */
export function drive(chunks: (Buffer | string)[], opts: H11Options = {}, eof = false): DriveResult {
  const conn = new H11Connection(opts);
  const raw: H11Event[] = [];
  const out: Output[] = [];
  let target = '';
  let status = 200;
  const handle = (evs: H11Event[]): void => {
    for (const e of evs) {
      raw.push(e);
      if (e.type === 'request') {
        target = e.target;
        status = e.method === 'CONNECT' ? 405 : 200; // tunnels are not supported
      } else if (e.type === 'end') out.push(conn.respond(status, { 'x-t': 'y' }, target));
      else if (e.type === 'error' && !conn.responseStarted) out.push(conn.errorResponse(e.status));
    }
  };
  const pump = (): void => {
    while (!conn.shouldClose && conn.readState === 'head' && conn.bufferedBytes > 0) {
      const evs = conn.receive();
      if (evs.length === 0) break;
      handle(evs);
    }
  };
  for (const c of chunks) {
    handle(conn.receive(typeof c === 'string' ? Buffer.from(c, 'latin1') : c));
    pump();
  }
  if (eof) {
    handle(conn.receiveEOF());
    pump();
  }
  return { events: normalize(raw), raw, out: Buffer.concat(out.map(toBytes)).toString('latin1'), conn };
}

/** All the ways to feed `input`: whole, every 2-way split, and byte by byte. */
export function splits(input: string): string[][] {
  const res: string[][] = [[input]];
  for (let i = 1; i < input.length; i++) res.push([input.slice(0, i), input.slice(i)]);
  res.push(input.split(''));
  return res;
}

export function firstError(r: DriveResult): number | undefined {
  const e = r.events.find((x) => x.type === 'error');
  return e?.type === 'error' ? e.status : undefined;
}

export function requests(r: DriveResult): string[] {
  return r.events.flatMap((e) => (e.type === 'request' ? [e.target] : []));
}

/** Seeded PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Self-tests of the helpers (this file matches the test glob so it lives in the allowed namespace).
if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'))) test('helpers: prng is deterministic and splits covers every cut', () => {
  const a = prng(42), b = prng(42);
  for (let i = 0; i < 10; i++) assert.equal(a(), b());
  const s = splits('abcd');
  assert.equal(s.length, 1 + 3 + 1);
  for (const parts of s) assert.equal(parts.join(''), 'abcd');
});
