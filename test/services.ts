/**
 * Helpers for the tests of the services people run (script mode, WebSockets, lifecycle
 * exports, frameworks): a WebSocket echo with the real `ws` client, HUPs under a keep-alive
 * load, and the marker files the fixtures leave. Loopback only, every wait bounded.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import http from 'node:http';
import WebSocket from 'ws';
import { alive, load, sleep, waitFor, type LoadResult, type Running } from './helpers.ts';

export const SERVICES = new URL('./fixtures/services/', import.meta.url).pathname;

/** Open a WebSocket, send `message`, wait for the echo; `pid` is the x-pid header of the 101, if any. */
export function wsEcho(port: number, message = 'ping', path = '/'): Promise<{ reply: string; pid: string | undefined }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`);
    let pid: string | undefined;
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error('WebSocket echo timed out'));
    }, 5000);
    ws.on('upgrade', (res) => (pid = res.headers['x-pid'] as string | undefined));
    ws.on('open', () => ws.send(message));
    ws.on('message', (data) => {
      clearTimeout(timer);
      ws.close();
      resolve({ reply: String(data), pid });
    });
    ws.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** An open WebSocket, for tests that watch it across a stop. */
export function wsOpen(port: number, path = '/'): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`);
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

/** Call `probe` (new connections each time) until it has answered from `want` distinct pids. */
export async function fromEveryWorker(probe: () => Promise<string | undefined>, want: number, what: string): Promise<Set<string>> {
  const pids = new Set<string>();
  await waitFor(async () => {
    const pid = await probe();
    if (pid) pids.add(pid);
    return pids.size >= want;
  }, 15_000, `${what} from ${want} workers (saw ${[...pids].join(', ') || 'none'})`);
  return pids;
}

/**
 * `times` HUPs under a keep-alive load of `connections` clients, each waiting until every
 * worker was replaced; the load's result (the caller asserts on it).
 */
export async function hupsUnderLoad(r: Running, port: number, o: { times: number; workers: number; connections?: number; path?: string }): Promise<LoadResult> {
  let end!: () => void;
  const until = new Promise<void>((resolve) => (end = resolve));
  const result = load(port, { connections: o.connections ?? 10, maxMs: 90_000, until, path: o.path });
  try {
    await sleep(300);
    for (let i = 1; i <= o.times; i++) {
      const before = r.workers();
      r.signal('SIGHUP');
      await waitFor(() => {
        const now = r.workers();
        return now.length === o.workers && now.every((p) => !before.includes(p)) && before.every((p) => !alive(p));
      }, 20_000, `every worker replaced after HUP ${i}`);
      await sleep(200);
    }
  } finally {
    end();
  }
  return result;
}

export function assertNoErrors(res: LoadResult, min = 50): void {
  assert.equal(res.errors, 0, `load errors: ${JSON.stringify(res.errorKinds)}`);
  assert.equal(res.non2xx, 0, 'non-2xx answers under load');
  assert.ok(res.ok >= min, `only ${res.ok} requests answered`);
}

/** Pids of the `kind-PID` marker files in `dir`. */
export function markers(dir: string, kind: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.startsWith(`${kind}-`))
    .map((f) => f.slice(kind.length + 1));
}

/** A server-sent events stream: what has arrived so far, and when it ended. */
export function sseOpen(port: number, path: string): Promise<{ text: () => string; ended: Promise<number> }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      const ended = new Promise<number>((done) => {
        res.once('close', () => done(Date.now()));
        res.on('error', () => {});
      });
      res.on('data', (d: string) => {
        const first = text === '';
        text += d;
        if (first) resolve({ text: () => text, ended });
      });
    });
    req.on('error', reject);
  });
}
