/**
 * The worker process. The master spawns `node [nodeArgs] runtime.js` with the listening
 * sockets on descriptors WORKER_FD_BASE.. and a JSON boot description in ARBITER_WORKER
 * (src/core/protocol.ts). This file is the part every worker class shares: boot,
 * heartbeats, recycling, signals and stop.
 */
import { loadApp, type Lifecycle } from '../src/core/app.js';
import { AppLoadError, appStack, oneLine } from '../src/core/errors.js';
import { createHooks } from '../src/core/hooks.js';
import { ListenCapture } from '../src/core/listen.js';
import { createLogger } from '../src/core/logging.js';
import { ENV, EXIT, MAIN_POOL, type CurrentWork, type MasterMessage, type RetireReason, type WorkerBoot, type WorkerMessage } from '../src/core/protocol.js';
import { endQuietStart, quietStart } from '../src/core/v8-at-start.js';
import { setAccessLogStdout } from './accesslog.js';
import { loadWorkerClass } from './classes.js';
import { LoopDelay } from './loop-delay.js';
import type { AppLifecycle, WorkerContext, WorkerInstance } from './contract.js';

const boot: WorkerBoot = JSON.parse(process.env[ENV.WORKER] ?? 'null');
if (!boot) {
  process.stderr.write('arbiter: workers/runtime.js is started by the arbiter master, not by hand\n');
  process.exit(EXIT.USAGE);
}
delete process.env[ENV.WORKER];
// The class and the app load without TurboFan, as the master starts (src/core/v8-at-start.ts):
// the module loader's path helpers it would optimise are not run again once the worker
// serves, and the compiler's code would stay mapped in every worker. Back to V8's defaults
// as the worker reports booted.
quietStart();

const settings = boot.settings;
process.title = `arbiter worker [${boot.pool === MAIN_POOL ? '' : `${boot.pool}: `}${settings.procName ?? settings.app ?? settings.workerClass}]`;
// JSON lines to stderr, a pipe the master reads into the one log (src/core/logging.ts).
const log = createLogger({ level: settings.logLevel, errorLog: '-', role: 'worker', fields: { pool: boot.pool } });
if (boot.stdoutFd !== undefined) setAccessLogStdout(boot.stdoutFd);
// Lines written just before a crash or process.exit() must reach the master: block on the
// pipes rather than queue in memory that exit throws away.
for (const stream of [process.stdout, process.stderr]) (stream as unknown as { _handle?: { setBlocking?: (b: boolean) => void } })._handle?.setBlocking?.(true);

function send(msg: WorkerMessage): void {
  if (process.connected) process.send!(msg, undefined, undefined, () => {});
}

let instance: WorkerInstance | null = null;
let stopping: Promise<void> | null = null;
let served = 0;
let retireAt = Infinity;
let retiring = false;

if (settings.maxRequests > 0) {
  retireAt = settings.maxRequests + Math.floor(Math.random() * (settings.maxRequestsJitter + 1));
}

function retire(reason: RetireReason, detail: string): void {
  if (retiring) return;
  retiring = true;
  log.info({ event: 'worker_retiring', reason, detail }, `worker retiring: ${detail}`);
  send({ t: 'retire', reason, detail });
}

/**
 * The global slot the worker classes fill with the work in hand (WorkerContext.working): the
 * master reads it through the inspector when the worker is stuck (src/stack-capture.ts).
 */
const CURRENT = Symbol.for('arbiter.current');
const slot = globalThis as unknown as Record<symbol, unknown>;

function describeCurrent(): CurrentWork | undefined {
  const c = slot[CURRENT] as string | { method?: string; url?: string } | null | undefined;
  if (c == null) return undefined;
  return { what: typeof c === 'string' ? c : `${c.method} ${c.url}`, since: 0 };
}

/** The module's lifecycle exports, once loaded. */
let lifecycle: Lifecycle = {};
let shutdownRun: Promise<void> | null = null;

const appLifecycle: AppLifecycle = {
  async onServer(server) {
    if (!lifecycle.onServer) return;
    try {
      await lifecycle.onServer(server);
    } catch (err) {
      throw new AppLoadError(`onServer() failed: ${oneLine(err)}`, appStack(err));
    }
  },
  shutdown() {
    return (shutdownRun ??= (async () => {
      if (!lifecycle.shutdown) return;
      try {
        await lifecycle.shutdown();
      } catch (err) {
        log.error({ event: 'shutdown_failed', err }, `shutdown() failed: ${oneLine(err)}`);
      }
    })());
  },
};

/** Listener copies asked of the master (ctx.listener), by index. */
const wanted = new Map<number, ((handle: object) => void)[]>();

const ctx: WorkerContext = {
  settings,
  listeners: boot.listeners,
  log,
  hooks: createHooks({}, log),
  age: boot.age,
  done() {
    if (++served >= retireAt) retire('max-requests', `served ${served} of maxRequests ${retireAt}`);
  },
  working(what) {
    slot[CURRENT] = what;
  },
  listener(index) {
    return new Promise((resolve) => {
      const waiting = wanted.get(index);
      if (waiting) waiting.push(resolve);
      else {
        wanted.set(index, [resolve]);
        send({ t: 'listener', index });
      }
    });
  },
  app: appLifecycle,
};

// Event-loop delay for `arbiter top` and status: sampled every 20 ms, reported and reset with
// each heartbeat (workers/loop-delay.ts).
const loop = new LoopDelay(20);

function heartbeat(): void {
  const rss = process.memoryUsage.rss();
  const loopDelay = loop.read();
  const counters = { ...(instance?.counters() ?? { requests: 0, active: 0 }), rss, loopDelay };
  send({ t: 'heartbeat', counters, current: describeCurrent() });
  if (settings.maxWorkerMemory > 0 && rss > settings.maxWorkerMemory && !stopping)
    retire('memory', `RSS ${rss} bytes is over maxWorkerMemory ${settings.maxWorkerMemory}`);
}

async function stop(graceful: boolean, keepAccepting = false): Promise<void> {
  if (stopping) {
    if (graceful) return stopping;
    // A quick stop overrides a graceful one already under way.
  }
  const work = (async () => {
    log.debug({ event: 'worker_stopping', graceful }, graceful ? 'worker stopping gracefully' : 'worker stopping now');
    // The master kills us after gracefulTimeout anyway; leaving on our own first is tidier.
    const deadline = setTimeout(() => finish(0), Math.max(0, settings.gracefulTimeout * 1000 - 100));
    deadline.unref();
    try {
      await instance?.stop(graceful, { keepAccepting });
      // A class that did not call it at the moment it stopped accepting.
      if (graceful && instance) await appLifecycle.shutdown();
    } catch (err) {
      log.error({ err }, 'error while stopping');
    }
    // What the app counted outlives the worker: the master keeps its counters.
    await reportMetrics(0, true);
    await finish(0);
  })();
  stopping = work;
  return work;
}

let finishing = false;
async function finish(code: number): Promise<void> {
  if (finishing) return;
  finishing = true;
  await ctx.hooks.run('workerExit', workerInfo());
  process.exit(code);
}

function workerInfo() {
  return { pid: process.pid, age: boot.age, settings };
}

process.on('message', (msg: MasterMessage, handle: unknown) => {
  if (msg.t === 'stop') void stop(msg.graceful, msg.keepAccepting);
  else if (msg.t === 'reopenLogs') instance?.reopenLogs?.();
  else if (msg.t === 'closeInspector') void import('node:inspector').then((i) => i.close()).catch(() => {});
  else if (msg.t === 'metrics') void reportMetrics(msg.id);
  else if (msg.t === 'listener' && handle) {
    const waiting = wanted.get(msg.index) ?? [];
    wanted.delete(msg.index);
    for (const resolve of waiting) resolve(handle as object);
  }
});

/** The app's prom-client metrics, with metricsBind only (app-metrics.ts). */
let appMetrics: import('./app-metrics.js').AppMetricsSource | null = null;

/** Answer a metrics request; `final`: the last report of a stopping worker (nothing when there is nothing). */
async function reportMetrics(id: number, final = false): Promise<void> {
  let metrics: Awaited<ReturnType<NonNullable<typeof appMetrics>['read']>> = null;
  try {
    metrics = (await appMetrics?.read()) ?? null;
  } catch (err) {
    log.warn({ event: 'app_metrics_failed', err: String(err) }, `cannot read the app's prom-client metrics: ${oneLine(err)}`);
  }
  if (final && metrics === null) return;
  await new Promise<void>((resolve) => {
    if (!process.connected) return resolve();
    const timer = setTimeout(resolve, 500);
    process.send!({ t: 'metrics', id, metrics, final } satisfies WorkerMessage, undefined, undefined, () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
// The master, or a process-group signal such as a terminal's Ctrl-C.
process.on('SIGTERM', () => void stop(true));
for (const sig of ['SIGINT', 'SIGQUIT'] as const)
  process.on(sig, () => void ctx.hooks.run('workerInt', workerInfo()).then(() => stop(false)));
// Handled by the master; a worker must not die of them. With a timeout, SIGUSR1 is left to
// Node: it opens the inspector, which is how the master reads where a stuck worker is stuck
// (the flags the master started it with keep that on a free loopback port).
const armed = process.execArgv.includes('--inspect-publish-uid=stderr');
for (const sig of ['SIGHUP', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH', 'SIGTTIN', 'SIGTTOU'] as const) if (!(sig === 'SIGUSR1' && armed)) process.on(sig, () => {});
// The master is gone (SIGKILL, crash): nobody will replace us or stop us, so stop now.
process.on('disconnect', () => void stop(true));
// The event loop ran while this module's imports loaded: a master that died then closed the
// channel before anyone listened for it.
if (!process.connected) void stop(true);

process.on('uncaughtException', (err) => {
  log.error({ event: 'worker_crashed', err }, `uncaught exception in worker: ${oneLine(err)}`);
  process.exit(1);
});
process.on('unhandledRejection', (err) => {
  log.error({ event: 'unhandled_rejection', err }, `unhandled rejection in worker: ${oneLine(err)}`);
});

async function main(): Promise<void> {
  const cwd = process.cwd();
  try {
    if (boot.configFile) {
      // Only with a config file (for its worker-side hooks): the settings table that checks it is not small.
      const [{ loadConfigFile }, { overlayPool }] = await Promise.all([import('../src/core/config-file.js'), import('../src/core/settings.js')]);
      const { layer } = await loadConfigFile(boot.configFile, cwd);
      const own = (layer.pools as Record<string, Record<string, unknown>> | null | undefined)?.[boot.pool] ?? {};
      ctx.hooks = createHooks(overlayPool(layer as Record<string, unknown>, own), log);
    }
    await ctx.hooks.run('postFork', workerInfo());
    const cls = await loadWorkerClass(settings.workerClass, cwd);
    // HTTP classes: a module that calls listen() itself gets the inherited listeners, in order.
    const listen = cls.scripts
      ? { capture: new ListenCapture(), pretend: false, want: boot.listeners.length, scripts: cls.scripts === 'run', className: cls.name }
      : undefined;
    const loaded = await loadApp(settings.app!, cwd, { interface: settings.interface, listen });
    lifecycle = loaded.lifecycle;
    if (settings.metricsBind) appMetrics = new (await import('./app-metrics.js')).AppMetricsSource(loaded.file);
    const { app } = await cls.adapt(loaded.value, settings, loaded.where);
    instance = cls.create(ctx, app);
    if (lifecycle.startup) {
      try {
        await lifecycle.startup();
      } catch (err) {
        throw new AppLoadError(`startup() failed: ${oneLine(err)}`, appStack(err));
      }
    }
    await instance.start();
  } catch (err) {
    const message = err instanceof AppLoadError || (err as Error)?.name === 'SettingError' ? (err as Error).message : `worker failed to boot: ${oneLine(err)}`;
    const detail = err instanceof AppLoadError ? err.detail : appStack(err);
    send({ t: 'bootError', message, detail });
    log.error({ event: 'worker_boot_failed', detail }, message);
    // Let the message reach the master before the exit code does.
    setTimeout(() => process.exit(EXIT.BOOT), 50);
    return;
  }
  heartbeat();
  const interval = setInterval(heartbeat, settings.heartbeatInterval * 1000);
  interval.unref();
  endQuietStart();
  send({ t: 'booted', pid: process.pid, appKind: settings.workerClass === 'task' ? 'task' : 'node' });
  await ctx.hooks.run('postWorkerInit', workerInfo());
  // No memory-reducing collection here, unlike the master (src/core/settle.ts): measured, it
  // left a -k http worker answering ~18% fewer requests per CPU-second for as long as it ran
  // (bench/README.md, "Footprint"), a price no idle saving is worth.
}

void main();
