/**
 * Test helpers: real arbiter processes on real loopback sockets. Every process a test starts
 * is registered and killed by pid when the test file ends, whatever happened.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after } from 'node:test';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const BIN = path.join(ROOT, 'bin', 'arbiter');
export const EXAMPLES = path.join(ROOT, 'examples');
export const FIXTURES = path.join(ROOT, 'test', 'fixtures');

const started = new Set<number>();
after(() => {
  for (const pid of started) killTree(pid);
  rmSync(RUNTIME_DIR, { recursive: true, force: true });
});

/** Also kill this process when the test file ends (one a test did not spawn itself, e.g. a USR2 master). */
export function track(pid: number): void {
  started.add(pid);
}

/** Kill a process and every descendant, by pid. */
export function killTree(pid: number): void {
  for (const child of descendants(pid)) safeKill(child, 'SIGKILL');
  safeKill(pid, 'SIGKILL');
}

export function safeKill(pid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false;
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}

/** Direct children of a process, from /proc. */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === pid && fields[0] !== 'Z') out.push(Number(name));
    } catch {
      /* gone */
    }
  }
  return out;
}

export function descendants(pid: number): number[] {
  const out: number[] = [];
  const queue = [pid];
  while (queue.length) {
    for (const c of childrenOf(queue.shift()!)) {
      out.push(c);
      queue.push(c);
    }
  }
  return out;
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** `what` may be a function, for a message that says how far things got when time ran out. */
export async function waitFor<T>(fn: () => T | Promise<T>, timeoutMs: number, what: string | (() => string)): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    await sleep(50);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}${last ? ` (last error: ${last})` : ''}`);
}

const tmpDirs: string[] = [];
// Removed when the test process exits, after every after() hook (a test's own hook may still
// read a log in one); ARBITER_TEST_KEEP_TMP=1 keeps them to look at a failure.
process.on('exit', () => {
  if (process.env.ARBITER_TEST_KEEP_TMP !== '1') for (const dir of tmpDirs) rmSync(dir, { recursive: true, force: true });
});

export function tmpDir(prefix = 'arbiter-test-'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  tmpDirs.push(dir);
  return dir;
}

/**
 * A self-signed certificate for 127.0.0.1 and localhost, valid a day, made by the openssl CLI
 * in `dir`; being its own issuer, the certificate is also the CA to trust it with.
 */
export function selfSignedCert(dir: string): { key: string; cert: string } {
  const [key, cert] = [path.join(dir, 'key.pem'), path.join(dir, 'cert.pem')];
  const made = spawnSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'],
    { encoding: 'utf8', timeout: 20_000 },
  );
  if (made.status !== 0) throw new Error(`the openssl CLI is needed for this test: ${made.error?.message ?? made.stderr}`);
  return { key, cert };
}

export function writeFiles(dir: string, files: Record<string, string>): void {
  for (const [name, text] of Object.entries(files)) {
    const file = path.join(dir, name);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, text);
  }
}

export interface LogLine {
  level: string;
  msg: string;
  event?: string;
  pid: number;
  role?: string;
  [k: string]: unknown;
}

export interface Running {
  proc: ChildProcess;
  pid: number;
  stdout(): string;
  stderr(): string;
  /** Parsed JSON log lines from stderr. */
  logs(): LogLine[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  waitLog(pred: (l: LogLine) => boolean, timeoutMs?: number, what?: string): Promise<LogLine>;
  /** Worker pids that are children of the master now. */
  workers(): number[];
  signal(sig: NodeJS.Signals): void;
}

/** Start `arbiter ARGS` (or any command given as `cmd`), non-TTY so logs are JSON. */
export function run(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; cmd?: string[]; stdio?: SpawnOptions['stdio'] } = {}): Running {
  const cmd = opts.cmd ?? [process.execPath, BIN];
  const proc = spawn(cmd[0]!, [...cmd.slice(1), ...args], {
    cwd: opts.cwd ?? ROOT,
    env: { ...cleanEnv(), ...opts.env },
    stdio: opts.stdio ?? ['ignore', 'pipe', 'pipe'],
  });
  started.add(proc.pid!);
  let out = '';
  let err = '';
  proc.stdout?.on('data', (d) => (out += d));
  proc.stderr?.on('data', (d) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const logs = (): LogLine[] =>
    err
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => {
        try {
          return JSON.parse(l) as LogLine;
        } catch {
          return null;
        }
      })
      .filter((l): l is LogLine => l !== null);
  return {
    proc,
    pid: proc.pid!,
    stdout: () => out,
    stderr: () => err,
    logs,
    exited,
    waitLog: (pred, timeoutMs = 10_000, what = 'a log line') =>
      waitFor(() => logs().find(pred), timeoutMs, `${what}; stderr so far:\n${err.slice(-3000)}`),
    workers: () => childrenOf(proc.pid!),
    signal: (sig) => void safeKill(proc.pid!, sig),
  };
}

/**
 * The runtime directory (control sockets) of every arbiter this test file starts: its own,
 * so that `arbiter status` sees this file's arbiters only, whatever else runs on the machine.
 */
export const RUNTIME_DIR = mkdtempSync(path.join(os.tmpdir(), 'arbiter-run-'));

/** The environment without anything that would change arbiter's behaviour by accident. */
export function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('ARBITER_') || k.startsWith('LISTEN_') || k === 'PORT' || k === 'WEB_CONCURRENCY' || k === 'NODE_OPTIONS') delete env[k];
  env.ARBITER_RUNTIME_DIR = RUNTIME_DIR;
  return env;
}

/**
 * Run an arbiter command (`status`, `reload`, …) to its end, asynchronously (the test process
 * stays free to reap masters meanwhile); bounded by `timeoutMs`.
 */
export async function command(args: string[], opts: Parameters<typeof run>[1] & { timeoutMs?: number } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const r = run(args, opts);
  // 'close': the process has exited and its output is all read.
  const closed = new Promise<void>((resolve) => r.proc.once('close', () => resolve()));
  let timer: NodeJS.Timeout | undefined;
  const res = await Promise.race([r.exited, new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), opts.timeoutMs ?? 60_000)))]);
  clearTimeout(timer);
  if (!res) {
    killTree(r.pid);
    throw new Error(`arbiter ${args.join(' ')} did not finish within ${opts.timeoutMs ?? 60_000} ms:\n${r.stdout()}\n${r.stderr()}`);
  }
  await closed;
  return { code: res.code, stdout: r.stdout(), stderr: r.stderr() };
}

/** Start arbiter and wait until it logs `ready`. */
export async function serve(args: string[], opts: Parameters<typeof run>[1] = {}): Promise<Running> {
  const r = run(args, opts);
  await Promise.race([
    r.waitLog((l) => l.event === 'ready', 15_000, 'arbiter ready'),
    r.exited.then(({ code }) => {
      throw new Error(`arbiter exited with ${code} before ready:\n${r.stderr()}`);
    }),
  ]);
  return r;
}

/** Stop with a signal and wait for the exit, bounded. */
export async function stop(r: Running, sig: NodeJS.Signals = 'SIGTERM', timeoutMs = 15_000) {
  r.signal(sig);
  // Unref'd: a pending bound must not keep the test file's process alive after its last test.
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), timeoutMs)).unref());
  const res = await Promise.race([r.exited, bound]);
  clearTimeout(timer);
  if (!res) {
    killTree(r.pid);
    throw new Error(`arbiter did not exit within ${timeoutMs} ms after ${sig}`);
  }
  return res;
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export function request(
  target: { port: number; host?: string; socketPath?: string },
  opts: { path?: string; method?: string; headers?: Record<string, string>; body?: string; agent?: http.Agent | false; timeoutMs?: number } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: target.socketPath ? undefined : (target.host ?? '127.0.0.1'),
        port: target.socketPath ? undefined : target.port,
        socketPath: target.socketPath,
        path: opts.path ?? '/',
        method: opts.method ?? 'GET',
        headers: opts.headers,
        agent: opts.agent ?? false,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
        res.on('error', reject);
      },
    );
    req.setTimeout(opts.timeoutMs ?? 5000, () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end(opts.body);
  });
}

export interface LoadResult {
  ok: number;
  non2xx: number;
  errors: number;
  errorKinds: Record<string, number>;
  pids: Set<string>;
}

/**
 * A bounded keep-alive load: `connections` loops, each sending requests one after another
 * on one kept-alive connection, until `stopWhen()` or `maxMs`. Loopback only.
 */
export function load(port: number, opts: { connections?: number; maxMs?: number; path?: string; until?: Promise<unknown> } = {}): Promise<LoadResult> {
  const connections = opts.connections ?? 20;
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  const result: LoadResult = { ok: 0, non2xx: 0, errors: 0, errorKinds: {}, pids: new Set() };
  let done = false;
  const deadline = setTimeout(() => (done = true), opts.maxMs ?? 10_000);
  opts.until?.then(() => (done = true), () => (done = true));
  const loop = async () => {
    while (!done) {
      try {
        const r = await request({ port }, { path: opts.path ?? '/', agent, timeoutMs: 10_000 });
        if (r.status >= 200 && r.status < 300) result.ok++;
        else result.non2xx++;
        const pid = r.headers['x-pid'];
        if (typeof pid === 'string') result.pids.add(pid);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
        // Nothing listens any more: the arbiter is gone, so the load is over.
        if (code === 'ECONNREFUSED') break;
        result.errors++;
        result.errorKinds[code] = (result.errorKinds[code] ?? 0) + 1;
      }
    }
  };
  return Promise.all(Array.from({ length: connections }, loop)).then(() => {
    clearTimeout(deadline);
    agent.destroy();
    return result;
  });
}

/**
 * A private redis-server on a free loopback port for this test file, killed by pid when the
 * file ends; returns its URL. CI installs redis-server: a missing one fails, never skips.
 */
export async function startRedis(): Promise<string> {
  if (spawnSync('redis-server', ['--version']).error)
    throw new Error('redis-server is not on PATH: these tests need it (Debian: apt-get install redis-server)');
  const port = await freePort();
  const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', os.tmpdir()], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  started.add(server.pid!);
  let log = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-server did not start on port ${port}:\n${log}`)), 10_000);
    server.stdout!.on('data', (c: Buffer) => {
      log += c.toString();
      if (log.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve();
      }
    });
    server.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited with ${code}:\n${log}`));
    });
  });
  server.stdout!.resume();
  return `redis://127.0.0.1:${port}/0`;
}
