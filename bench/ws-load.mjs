// Running the WebSocket echo load (bench/ws-client.mjs, a separate process like wrk) and
// giving its result the shape of wrk's (requests = echoed messages).
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const CLIENT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'ws-client.mjs');

export function runWsLoad(url, { duration = 5, connections = 50, onChild } = {}) {
  const u = new URL(url);
  if (u.hostname !== '127.0.0.1') throw new Error(`refusing to load a non-loopback target: ${url}`);
  const secs = Math.max(1, Math.min(Math.round(duration), 120));
  const target = `ws://127.0.0.1:${u.port}/`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLIENT, target, String(connections), String(secs)], { stdio: ['ignore', 'pipe', 'pipe'] });
    onChild?.(child);
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const guard = setTimeout(() => child.kill('SIGKILL'), (secs + 15) * 1000);
    child.on('error', (e) => {
      clearTimeout(guard);
      reject(e);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(guard);
      if (code !== 0) return reject(new Error(`ws-client exited with ${signal ?? code}: ${(err || out).trim().split('\n').pop()}`));
      const r = JSON.parse(out);
      const socketErrors = r.errors.connect + r.errors.read + r.errors.write + r.errors.timeout;
      resolve({ requests: r.messages, seconds: r.seconds, rps: r.messages / r.seconds, errors: r.errors, socketErrors, non2xx3xx: 0, latencyMs: r.latencyMs, raw: out });
    });
  });
}
