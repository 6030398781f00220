// Running the WebSocket echo load (bench/ws-client.mjs, a separate process like wrk) and
// giving its result the shape of wrk's (requests = echoed messages).
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runLoadGenerator } from './wrk.mjs';

const CLIENT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'ws-client.mjs');

export async function runWsLoad(url, { duration = 5, connections = 50, onChild } = {}) {
  const u = new URL(url);
  if (u.hostname !== '127.0.0.1') throw new Error(`refusing to load a non-loopback target: ${url}`);
  const secs = Math.max(1, Math.min(Math.round(duration), 120));
  const out = await runLoadGenerator(process.execPath, [CLIENT, `ws://127.0.0.1:${u.port}/`, String(connections), String(secs)], secs, onChild);
  const r = JSON.parse(out);
  const socketErrors = r.errors.connect + r.errors.read + r.errors.write + r.errors.timeout;
  return { requests: r.messages, seconds: r.seconds, rps: r.messages / r.seconds, errors: r.errors, socketErrors, non2xx3xx: 0, latencyMs: r.latencyMs, raw: out };
}
