// Spawning servers, waiting for them to answer, and stopping them (and everything they
// started) by pid. Every pid we start is registered so Ctrl-C or a crash still cleans up.
import { spawn } from 'node:child_process';
import { openSync, closeSync, readFileSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import http from 'node:http';
import path from 'node:path';
import { descendants, isAlive } from './cpu.mjs';

const live = new Map(); // root pid -> { name, known: Set<pid> }

/** Remember a root pid (and later its descendants) for emergency cleanup. */
export function track(pid, name) {
  live.set(pid, { name, known: new Set([pid]) });
}

/** Refresh the known descendants of every tracked root (call while it is running). */
export function refreshTracked() {
  for (const [root, t] of live) for (const p of descendants(root)) t.known.add(p);
}

const cleanups = new Set();
/** Register a synchronous cleanup for killAllTracked; returns a function that unregisters it. */
export function onCleanup(fn) {
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}

/** SIGKILL everything still tracked, synchronously (exit / signal handlers). */
export function killAllTracked() {
  for (const fn of cleanups) {
    try {
      fn();
    } catch {}
  }
  cleanups.clear();
  for (const [root, t] of live) {
    for (const p of [root, ...descendants(root)]) t.known.add(p);
    for (const p of t.known) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {}
    }
  }
  live.clear();
}

/** A free TCP port on 127.0.0.1 (the OS picks it; we release it right away). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Start a server process. Its stdout/stderr go to logFile. detached: it gets its own process
 * group, so a Ctrl-C in the terminal reaches only this script, which then stops it by pid.
 */
export function startProcess(name, cmd, args, { logFile, env = {}, cwd } = {}) {
  mkdirSync(path.dirname(logFile), { recursive: true });
  const fd = openSync(logFile, 'w');
  const child = spawn(cmd, args, {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', fd, fd],
    detached: true,
  });
  closeSync(fd);
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', (err) => resolve({ code: null, signal: null, error: err }));
  });
  if (child.pid) track(child.pid, name);
  return { pid: child.pid, child, exited, logFile };
}

export function tail(file, lines = 6) {
  try {
    const text = readFileSync(file, 'utf8').trimEnd();
    return text.split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

function getOnce(port, pathName = '/') {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: pathName, agent: false, timeout: 1000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
      res.on('error', () => resolve(0));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

/** Wait until GET / answers 2xx; reject if the process exits or the time runs out. */
export async function waitUntilAnswers(proc, port, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  let exited = null;
  proc.exited.then((e) => (exited = e));
  while (Date.now() < deadline) {
    if (exited) {
      const how = exited.error ? exited.error.message : exited.signal ? `signal ${exited.signal}` : `code ${exited.code}`;
      throw new Error(`exited during startup (${how})`);
    }
    const status = await getOnce(port);
    if (status >= 200 && status < 300) return;
    await sleep(100);
  }
  throw new Error(`did not answer on 127.0.0.1:${port} within ${timeoutMs / 1000}s`);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Stop a process tree: SIGTERM the root by pid, wait up to graceMs for the root and every
 * descendant seen before or during the wait to be gone, then SIGKILL whatever is left.
 * Returns { graceful, leftovers } where leftovers are pids that needed SIGKILL.
 */
export async function stopTree(rootPid, { graceMs = 10000, signal = 'SIGTERM' } = {}) {
  const t = live.get(rootPid);
  const known = new Set(t ? t.known : [rootPid]);
  for (const p of descendants(rootPid)) known.add(p);
  try {
    process.kill(rootPid, signal);
  } catch {}
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    for (const p of descendants(rootPid)) known.add(p);
    if (![...known].some(isAlive)) break;
    await sleep(50);
  }
  const leftovers = [...known].filter(isAlive);
  for (const p of leftovers) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {}
  }
  if (leftovers.length) {
    const until = Date.now() + 3000;
    while (Date.now() < until && leftovers.some(isAlive)) await sleep(50);
  }
  live.delete(rootPid);
  return { graceful: leftovers.length === 0, leftovers };
}
