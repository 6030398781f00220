// The bench rows, as data. Each row is
//   { name, group, requires?, start(port, ctx) → Promise<{ pid, stop(), info? }>, loads: [load...] }
// and each load is one of LOADS below, or { ...LOADS.x, during(server, seconds) } for work
// that runs while wrk is loading the server (signals, reloads). Ratios are taken per group
// and per load against the group's baseline row (GROUPS[group].baseline).
//
// To add a row later (for example `-k h11` or a HUP-under-load row), push another object:
//   arbiterRow('arbiter -k h11 -w 1', 'plain', 'examples/hello.js:handler', ['-k', 'h11', '-w', '1'],
//              [LOADS.keepalive, LOADS.close, LOADS.pipeline8], { requires: 'h11' })
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startProcess, stopTree, track, onCleanup, sleep } from './proc.mjs';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BENCH = path.join(ROOT, 'bench');
const ARBITER = path.join(ROOT, 'bin', 'arbiter');
const PM2 = path.join(ROOT, 'node_modules', 'pm2', 'bin', 'pm2');
const NODE = process.execPath;

export const N = Math.max(1, Number(process.env.BENCH_WORKERS) || 2);

export const LOADS = {
  keepalive: { name: 'keep-alive' },
  // A new TCP connection for every request: the server answers with Connection: close.
  close: { name: 'new conn', headers: ['Connection: close'] },
  // 8 requests per write on keep-alive connections (bench/pipeline.lua).
  pipeline8: { name: 'pipeline 8', script: path.join(BENCH, 'pipeline.lua'), scriptArgs: ['8'] },
  // WebSocket echo (bench/ws-client.mjs): each connection sends a 16-byte message and the
  // next as soon as the echo is back; "requests" are echoed messages.
  wsEcho: { name: 'ws echo', ws: true },
};

export const GROUPS = {
  plain: { title: 'plain hello handler (examples/hello.js)', baseline: 'bare node:http' },
  body: { title: 'hello handler reading its empty body via data/end (bench/servers/body-app.mjs)', baseline: 'bare node:http' },
  express: { title: 'Express app (examples/bench-express.js)', baseline: 'express on node:http' },
  hono: { title: 'Hono app (examples/bench-hono.js)', baseline: '@hono/node-server' },
  ws: { title: 'WebSocket echo, `ws` through onServer (examples/bench-ws.js); req = messages', baseline: 'ws on node:http' },
  replace: { title: 'replacement under load (errors are what matter; CPU includes the restarts)', baseline: null },
};

const logFile = (name) => path.join(BENCH, 'results', 'logs', name.replace(/[^\w.-]+/g, '_') + '.log');

/** A row whose server is one node process (or a tree rooted at one). */
export function nodeRow(name, group, script, args, loads, extra = {}) {
  return {
    name,
    group,
    loads,
    ...extra,
    async start(port) {
      const p = startProcess(name, NODE, [path.join(BENCH, 'servers', script), String(port), ...args], {
        logFile: logFile(name),
        env: extra.env,
        cwd: ROOT,
      });
      return { ...p, stop: () => stopTree(p.pid) };
    },
  };
}

/** A row that runs `node bin/arbiter APP ARGS -b 127.0.0.1:PORT` (the root pid is the master). */
export function arbiterRow(name, group, app, args, loads, extra = {}) {
  return {
    name,
    group,
    loads,
    ...extra,
    async start(port) {
      const p = startProcess(name, NODE, [ARBITER, app, ...args, '-b', `127.0.0.1:${port}`], {
        logFile: logFile(name),
        env: extra.env,
        cwd: ROOT,
      });
      return { ...p, stop: () => stopTree(p.pid, { graceMs: 15000 }) };
    },
  };
}

function runPm2(args, env, timeoutMs = 30000) {
  return new Promise((resolve) => {
    const child = spawn(NODE, [PM2, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const guard = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(guard);
      resolve({ code, out });
    });
    child.on('error', (e) => {
      clearTimeout(guard);
      resolve({ code: -1, out: String(e) });
    });
  });
}

/**
 * PM2 cluster mode, N instances of bench/servers/bare.mjs (the hello handler, app unchanged:
 * no graceful-shutdown code, as most apps run under PM2). PM2_HOME is a fresh temp dir so the
 * bench never touches a user's PM2; the God daemon's pid (PM2_HOME/pm2.pid) is the tree root
 * and is stopped by pid at the end.
 */
export function pm2Row(name, group, loads, extra = {}, instances = N) {
  return {
    name,
    group,
    loads,
    ...extra,
    async start(port) {
      const home = mkdtempSync(path.join(os.tmpdir(), 'bench-pm2-'));
      const pidFile = path.join(home, 'pm2.pid');
      const killDaemon = () => {
        try {
          process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL');
        } catch {}
      };
      const cleanupHome = () => rmSync(home, { recursive: true, force: true });
      // If we are interrupted (Ctrl-C) before stop(): kill the daemon by pid, remove PM2_HOME.
      const unregister = onCleanup(() => {
        killDaemon();
        cleanupHome();
      });
      const env = { PM2_HOME: home, PORT: String(port), NODE_CLUSTER_SCHED_POLICY: '' };
      const r = await runPm2(['start', path.join(BENCH, 'servers', 'bare.mjs'), '-i', String(instances), '--name', 'bench-hello'], env);
      const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8')) : 0;
      if (r.code !== 0 || !pid) {
        if (pid) await stopTree(pid);
        killDaemon();
        unregister();
        cleanupHome();
        throw new Error(`pm2 start failed: ${r.out.trim().split('\n').pop()}`);
      }
      track(pid, name);
      const exited = new Promise(() => {}); // not our child: startup failure shows as "no answer"
      return {
        pid,
        exited,
        logFile: path.join(home, 'pm2.log'),
        reload: () => runPm2(['reload', 'bench-hello'], env),
        async stop() {
          const res = await stopTree(pid);
          unregister();
          cleanupHome();
          return res;
        },
      };
    },
  };
}

/**
 * `pm2 reload` twice during the measured window, at 20% and 55% of it (the load asks for a
 * window of at least 8 s: one reload of 2 instances takes 1-2.5 s on a 2-core machine).
 */
async function pm2ReloadTwice(server, seconds) {
  const events = [];
  const t0 = Date.now();
  for (const at of [0.2, 0.55]) {
    await sleep(Math.max(0, t0 + at * seconds * 1000 - Date.now()));
    const started = Date.now();
    const r = await server.reload();
    events.push({ action: 'pm2 reload', ok: r.code === 0, atMs: started - t0, tookMs: Date.now() - started });
  }
  return events;
}

export const HELLO = 'examples/hello.js:handler';
const BODY = 'bench/servers/body-app.mjs:handler';

/** Send the server's master `signal` at these fractions of the measured window. */
function signalEvery(signal, fractions) {
  return async (server, seconds) => {
    const events = [];
    const t0 = Date.now();
    for (const at of fractions) {
      await sleep(Math.max(0, t0 + at * seconds * 1000 - Date.now()));
      try {
        process.kill(server.pid, signal);
        events.push({ action: signal, ok: true, atMs: Date.now() - t0, tookMs: 0 });
      } catch (e) {
        events.push({ action: signal, ok: false, error: String(e) });
      }
    }
    return events;
  };
}

/**
 * `arbiter upgrade` (USR2, wait for the new master to serve, retire the old one) at 30% of
 * the window. The new master outlives the row's root pid, so it is found and stopped through
 * the pidfile; the CPU column covers the old master's tree only.
 */
function upgradeRow(name) {
  const pidfile = path.join(mkdtempSync(path.join(os.tmpdir(), 'bench-usr2-')), 'arbiter.pid');
  const row = arbiterRow(name, 'replace', HELLO, ['-k', 'http', '-w', String(N), '-p', pidfile], [
    {
      ...LOADS.keepalive,
      minDuration: 8,
      during: async (server, seconds) => {
        await sleep(seconds * 300);
        const t = Date.now();
        const r = await new Promise((resolve) => {
          const child = spawn(NODE, [ARBITER, 'upgrade', '-p', pidfile], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
          track(child.pid);
          let out = '';
          child.stdout.on('data', (d) => (out += d));
          child.stderr.on('data', (d) => (out += d));
          child.on('exit', (code) => resolve({ code, out }));
        });
        return [{ action: 'arbiter upgrade', ok: r.code === 0, atMs: seconds * 300, tookMs: Date.now() - t, detail: r.out.trim().split('\n').pop() }];
      },
    },
  ]);
  row.rootMayExit = true;
  const start = row.start;
  row.start = async (port) => {
    const server = await start(port);
    return {
      ...server,
      stop: async () => {
        let next = null;
        try {
          next = Number(readFileSync(pidfile, 'utf8').trim());
        } catch {}
        const first = await server.stop();
        const second = next && next !== server.pid ? await stopTree(next, { graceMs: 15000 }) : null;
        rmSync(path.dirname(pidfile), { recursive: true, force: true });
        return second ?? first;
      },
    };
  };
  return row;
}

export const ROWS = [
  // --- plain hello handler ---
  nodeRow('bare node:http', 'plain', 'bare.mjs', [], [LOADS.keepalive, LOADS.close, LOADS.pipeline8]),
  nodeRow(`node cluster -w ${N} (RR)`, 'plain', 'cluster.mjs', [String(N)], [LOADS.keepalive, LOADS.close], {
    env: { NODE_CLUSTER_SCHED_POLICY: '' }, // Node's default on Linux: SCHED_RR
  }),
  arbiterRow('arbiter http -w 1', 'plain', HELLO, ['-k', 'http', '-w', '1'], [LOADS.keepalive, LOADS.close, LOADS.pipeline8]),
  // The same handler in a script that calls listen() itself (script mode).
  arbiterRow('arbiter http -w 1 (script)', 'plain', 'examples/hello-script.js', ['-k', 'http', '-w', '1'], [LOADS.keepalive, LOADS.close, LOADS.pipeline8]),
  arbiterRow(`arbiter http -w ${N}`, 'plain', HELLO, ['-k', 'http', '-w', String(N)], [LOADS.keepalive, LOADS.close]),
  arbiterRow('arbiter h11 -w 1', 'plain', HELLO, ['-k', 'h11', '-w', '1'], [LOADS.keepalive, LOADS.close, LOADS.pipeline8], { requires: 'h11' }),
  pm2Row(`pm2 cluster -i ${N}`, 'plain', [LOADS.keepalive, LOADS.close]),
  // Fixed bytes per request head, no HTTP parsing, on net.Socket's stream API (servers/raw-net.mjs).
  nodeRow('raw net', 'plain', 'raw-net.mjs', [], [LOADS.keepalive, LOADS.close, LOADS.pipeline8]),
  // The same below net.Socket, reading and writing through the socket's handle as h11 does.
  nodeRow('raw handle (ceiling)', 'plain', 'raw-handle.mjs', [], [LOADS.keepalive, LOADS.close, LOADS.pipeline8]),

  // --- the same, with a handler that reads its (empty) body through 'data'/'end' ---
  nodeRow('bare node:http', 'body', 'bare.mjs', ['body-app.mjs'], [LOADS.keepalive]),
  arbiterRow('arbiter http -w 1', 'body', BODY, ['-k', 'http', '-w', '1'], [LOADS.keepalive]),
  arbiterRow('arbiter h11 -w 1', 'body', BODY, ['-k', 'h11', '-w', '1'], [LOADS.keepalive], { requires: 'h11' }),

  // --- Express ---
  nodeRow('express on node:http', 'express', 'express.mjs', [], [LOADS.keepalive, LOADS.close]),
  arbiterRow('arbiter http -w 1', 'express', 'examples/bench-express.js', ['-k', 'http', '-w', '1'], [LOADS.keepalive, LOADS.close]),
  arbiterRow('arbiter h11 -w 1', 'express', 'examples/bench-express.js', ['-k', 'h11', '-w', '1'], [LOADS.keepalive, LOADS.close], { requires: 'h11' }),

  // --- Hono (fetch interface: the default export is the Hono app, arbiter detects .fetch) ---
  nodeRow('@hono/node-server', 'hono', 'hono.mjs', [], [LOADS.keepalive, LOADS.close]),
  arbiterRow('arbiter http -w 1', 'hono', 'examples/bench-hono.js', ['-k', 'http', '-w', '1'], [LOADS.keepalive, LOADS.close]),
  arbiterRow('arbiter h11 -w 1', 'hono', 'examples/bench-hono.js', ['-k', 'h11', '-w', '1'], [LOADS.keepalive, LOADS.close], { requires: 'h11' }),

  // --- WebSocket echo ---
  nodeRow('ws on node:http', 'ws', 'ws.mjs', [], [LOADS.wsEcho]),
  arbiterRow('arbiter http -w 1', 'ws', 'examples/bench-ws.js', ['-k', 'http', '-w', '1'], [LOADS.wsEcho]),
  arbiterRow('arbiter h11 -w 1', 'ws', 'examples/bench-ws.js', ['-k', 'h11', '-w', '1'], [LOADS.wsEcho], { requires: 'h11' }),

  // --- replacement under load: errors and non-2xx are what matter ---
  arbiterRow(`arbiter http -w ${N}: HUP x4`, 'replace', HELLO, ['-k', 'http', '-w', String(N)], [
    { ...LOADS.keepalive, during: signalEvery('SIGHUP', [0.15, 0.35, 0.55, 0.75]), minDuration: 8 },
  ]),
  upgradeRow(`arbiter http -w ${N}: arbiter upgrade (USR2)`),
  arbiterRow(`arbiter http -w ${N}: maxRequests 200±50`, 'replace', HELLO, ['-k', 'http', '-w', String(N), '--max-requests', '200', '--max-requests-jitter', '50'], [
    { ...LOADS.keepalive, minDuration: 8 },
  ]),
  pm2Row(`pm2 cluster -i ${N}: reload x2`, 'replace', [{ ...LOADS.keepalive, during: pm2ReloadTwice, minDuration: 8 }]),
];
