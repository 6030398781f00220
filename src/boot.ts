/**
 * `arbiter [OPTIONS] APP_MODULE`: the server's start, in SPEC §4's order:
 *
 *   resolve  the settings (defaults < file < env < CLI) and the worker count
 *   check    the app, loaded once in a thread of the master (--check-config stops here)
 *   bind     every listener, then the pidfile
 *   run      the master until it stops, with its control socket and metrics endpoint
 *
 * Each step either hands the next what it needs or throws a StartFailure: one line for the
 * user, and the exit code (2 usage or config, 3 the app, 1 anything at run time).
 */
import os from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import { helpText, parseArgs, splitArgs } from './argv.js';
import { checkApp } from './appcheck.js';
import { checkCombination, formatConfig, resolve, serializable, unknownEnv, type Resolved } from './config.js';
import { startControlServer, type ControlServer } from './control.js';
import { AppLoadError, SettingError, errorMessage, indent } from './core/errors.js';
import { createHooks } from './core/hooks.js';
import { createLogger, fatalLine } from './core/logging.js';
import { bindFor, type Asked } from './core/listen.js';
import { VERSION } from './core/paths.js';
import { ENV, EXIT } from './core/protocol.js';
import type { Settings, WorkerSettings } from './core/settings.js';
import { detectCpus, detectMemoryLimit, resolveWorkers } from './cpus.js';
import { daemonize, echoStderrToLauncher, tellLauncherReady, underLauncher } from './daemon.js';
import { Arbiter } from './master.js';
import { ledgerFor, startMetricsServer, watchMemoryFit, type MetricsServer } from './metrics.js';
import * as sd from './notify.js';
import { removePidfile, writePidfile } from './pidfile.js';
import { BindError, closeListeners, inheritedFromParent, openListeners, systemdListeners, type Listener } from './sockets.js';
import type { StartSignals } from './start-signals.js';
import { taskBrokersFor } from './task-brokers.js';
import { resolveIds } from './users.js';

/** A start that cannot go on: the line to print and the exit code. */
class StartFailure extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly detail?: string,
  ) {
    super(message);
  }
}

function usage(err: unknown): StartFailure {
  return new StartFailure(EXIT.USAGE, errorMessage(err));
}

export async function serve(argv: string[], signals: StartSignals): Promise<number> {
  echoStderrToLauncher();
  const launchCwd = process.cwd();
  try {
    const plan = await resolveStart(argv, launchCwd);
    if (typeof plan === 'number') return plan;
    if (signals.stopBy) return EXIT.OK;
    const app = await Promise.race([check(plan, launchCwd), signals.stopped.then(() => EXIT.OK)]);
    if (typeof app === 'number') return app;
    if (plan.resolved.settings.daemon && !underLauncher) return daemonize(launchCwd);
    const log = createLogger({ level: plan.resolved.settings.logLevel, errorLog: plan.resolved.settings.errorLog, role: 'master' });
    const started = await bind(plan, app, log);
    return await run(plan, app, started, log, launchCwd, signals);
  } catch (err) {
    if (!(err instanceof StartFailure)) throw err;
    fatalLine(err.message);
    if (err.detail) process.stderr.write(indent(err.detail) + '\n');
    return err.code;
  }
}

// ---------------------------------------------------------------------------------------
// resolve

interface Plan {
  resolved: Resolved;
  /** What produced `resolved`, kept to re-resolve on HUP (the command line stays as it was). */
  cli: ReturnType<typeof parseArgs>['layer'];
  cmdArgs: ReturnType<typeof parseArgs>['layer'];
  workers: { workers: number; why: string };
}

/** The settings, or an exit code when there is nothing to serve (--help, --version, --print-config). */
async function resolveStart(argv: string[], launchCwd: string): Promise<Plan | number> {
  let plan: Plan;
  try {
    const cli = parseArgs(argv, 'cli');
    if (cli.help) {
      process.stdout.write((await helpText()) + '\n');
      return EXIT.OK;
    }
    if (cli.version) {
      process.stdout.write(`arbiter ${VERSION} (node ${process.version})\n`);
      return EXIT.OK;
    }
    const cmdText = process.env[ENV.CMD_ARGS];
    const cmdArgs = cmdText ? parseArgs(splitArgs(cmdText), 'ARBITER_CMD_ARGS').layer : {};
    const resolved = await resolveServer(cli.layer, cmdArgs, launchCwd);
    plan = { resolved, cli: cli.layer, cmdArgs, workers: sizing(resolved) };
  } catch (err) {
    throw usage(err);
  }
  for (const warning of unknownEnv(process.env)) fatalLine(`warning: ${warning}`);
  if (plan.resolved.settings.printConfig) {
    process.stdout.write(formatConfig(plan.resolved, plan.workers));
    return EXIT.OK;
  }
  return plan;
}

async function resolveServer(cli: Plan['cli'], cmdArgs: Plan['cmdArgs'], cwd: string): Promise<Resolved> {
  const resolved = await resolve({ cli, cmdArgs, env: process.env, cwd });
  checkCombination(resolved.settings);
  try {
    resolveIds(resolved.settings.user, resolved.settings.group);
  } catch (err) {
    throw new SettingError(errorMessage(err));
  }
  return resolved;
}

function sizing(r: Resolved): { workers: number; why: string } {
  try {
    const sized = resolveWorkers(r.settings.workers, detectCpus());
    if (r.sources.workers === 'default') sized.why = `${sized.workers} worker (the default; -w N, or -w auto to size from the CPUs)`;
    return sized;
  } catch (err) {
    throw new SettingError(errorMessage(err));
  }
}

// ---------------------------------------------------------------------------------------
// check

interface CheckedApp {
  picked: string;
  listens: boolean;
  file: string;
  /** Script mode with no bind given: what the script's listen() calls asked for. */
  binds: string[] | null;
}

/** The process as the settings want it (chdir, umask, env), then the app, loaded once. */
async function check(plan: Plan, launchCwd: string): Promise<CheckedApp | number> {
  const s = plan.resolved.settings;
  // From here on, paths in settings (app, unix sockets) are relative to chdir.
  try {
    if (s.chdir) process.chdir(path.resolve(launchCwd, s.chdir));
  } catch {
    throw usage(`cannot chdir to ${s.chdir}: no such directory`);
  }
  if (s.umask !== null) process.umask(s.umask);
  Object.assign(process.env, s.env);
  let app: CheckedApp;
  try {
    if (!s.app) throw new SettingError('no app given');
    const checked = await checkApp(workerSettings(s, plan.workers.workers), process.cwd());
    if (checked.asked && (s.certfile || s.keyfile))
      throw new SettingError(`certfile and keyfile do not apply to a script-mode app: its own server decides TLS (https.createServer in the script)`);
    app = { ...checked, binds: checked.asked && plan.resolved.sources.bind === 'default' ? scriptBinds(checked.asked) : null };
    if (checked.note) fatalLine(`warning: ${checked.note}`);
  } catch (err) {
    if (err instanceof SettingError) throw usage(err);
    throw new StartFailure(s.checkConfig ? EXIT.USAGE : EXIT.BOOT, errorMessage(err), err instanceof AppLoadError ? err.detail : undefined);
  }
  if (app.binds) s.bind = app.binds;
  if (s.checkConfig) {
    process.stdout.write(`config OK: ${s.app} (${app.picked}), ${plan.workers.why}\n`);
    return EXIT.OK;
  }
  return app;
}

/**
 * With no bind given, a script is served where `node script.js` would serve it: at what its
 * servers' listen() calls asked for, in order.
 */
function scriptBinds(asked: Asked[]): string[] {
  const ipv6 = Object.values(os.networkInterfaces()).some((list) => list?.some((a) => a.family === 'IPv6'));
  return asked.map((a, i) => {
    const bind = bindFor(a, ipv6);
    if (bind === null) throw new SettingError(`the script's server ${i + 1} listens on a handle or descriptor: give bind (-b) for it`);
    return bind;
  });
}

function workerSettings(s: Settings, workers: number): WorkerSettings {
  return { ...serializable(s), workers } as WorkerSettings;
}

// ---------------------------------------------------------------------------------------
// bind

interface Started {
  listeners: Listener[];
  /** Set in a master started by USR2: it claims the pidfile once it serves. */
  upgradeFrom: string | undefined;
  hooks: ReturnType<typeof createHooks>;
}

async function bind(plan: Plan, app: CheckedApp, log: Logger): Promise<Started> {
  const s = plan.resolved.settings;
  const hooks = createHooks(s as unknown as Record<string, unknown>, log);
  log.info({ event: 'starting', version: VERSION, workerClass: s.workerClass, app: s.app, interface: app.picked }, `arbiter ${VERSION} starting: ${s.app} (${app.picked}), worker class ${s.workerClass}`);
  log.info({ event: 'sizing', workers: plan.workers.workers }, plan.workers.why);
  await hooks.run('onStarting', { settings: s });

  let listeners: Listener[] = [];
  if (app.listens) {
    try {
      const fromSystemd = systemdListeners(process.env);
      if (fromSystemd.length) {
        if (plan.resolved.sources.bind !== 'default') log.warn({ event: 'bind_ignored' }, 'systemd passed listening sockets (LISTEN_FDS); the bind setting is ignored');
        listeners = fromSystemd;
      } else {
        if (s.reusePort && !supportsReusePort()) log.warn({ event: 'reuse_port_unsupported' }, `reusePort needs Node >= 22.12; ${process.version} binds without it`);
        listeners = await openListeners(s.bind, { reusePort: s.reusePort, cwd: process.cwd(), owner: resolveIds(s.user, s.group), inherited: inheritedFromParent(process.env) });
      }
    } catch (err) {
      throw new StartFailure(err instanceof BindError ? EXIT.RUNTIME : EXIT.USAGE, errorMessage(err));
    }
    log.info({ event: 'listening', listeners: listeners.map((l) => l.label) }, `listening at ${listeners.map((l) => l.label).join(', ')}`);
  }

  // A master started by USR2 claims the pidfile only once it serves, which is what
  // `arbiter upgrade` waits for before it retires the old master.
  const upgradeFrom = process.env[ENV.UPGRADE_FROM];
  delete process.env[ENV.UPGRADE_FROM];
  if (!upgradeFrom) {
    try {
      claimPidfile(s);
    } catch (err) {
      throw new StartFailure(EXIT.RUNTIME, errorMessage(err));
    }
  }
  return { listeners, upgradeFrom, hooks };
}

function claimPidfile(s: Settings): void {
  if (s.pidfile) writePidfile(s.pidfile, process.pid);
}

function supportsReusePort(): boolean {
  const [major, minor] = process.versions.node.split('.').map(Number) as [number, number];
  return major > 22 || (major === 22 && minor >= 12);
}

// ---------------------------------------------------------------------------------------
// run

async function run(plan: Plan, app: CheckedApp, started: Started, log: Logger, launchCwd: string, signals: StartSignals): Promise<number> {
  const s = plan.resolved.settings;
  let control: ControlServer | null = null;
  let metrics: MetricsServer | null = null;
  const arbiter = new Arbiter({
    resolved: plan.resolved,
    listeners: started.listeners,
    workers: plan.workers.workers,
    log,
    hooks: started.hooks,
    onSettings: async (next, prev) => {
      control = await moveServer('control socket', 'reload_control_failed', prev.controlSocket, next.controlSocket, control, log, (at) =>
        startControlServer(arbiter, at, log));
      metrics = await moveServer('metrics', 'reload_metrics_failed', prev.metricsBind, next.metricsBind, metrics, log, (at) =>
        startMetricsServer(arbiter, at, log));
    },
    reloadConfig: async () => {
      // HUP re-reads the file and the environment as they are now; the command line stays.
      const resolved = await resolveServer(plan.cli, plan.cmdArgs, launchCwd);
      // A script's own addresses stay where they were found at start (its code is not checked again).
      if (app.binds && resolved.sources.bind === 'default') resolved.settings.bind = app.binds;
      const { workers } = sizing(resolved);
      return { resolved, workers, hooks: createHooks(resolved.settings as unknown as Record<string, unknown>, log) };
    },
    launchCwd,
    appFile: app.file,
  });
  // Counters of workers that exit from now on are kept, whenever the metrics endpoint opens.
  ledgerFor(arbiter);
  const taskBrokers = [...arbiter.groups.values()].some((g) => g.settings.workerClass === 'task') ? taskBrokersFor(arbiter, log) : null;
  arbiter.events.once('ready', () => {
    if (started.upgradeFrom) {
      try {
        claimPidfile(s);
      } catch (err) {
        fatalLine(errorMessage(err));
      }
    }
    tellLauncherReady();
    void (started.upgradeFrom ? sd.mainpid(process.pid) : sd.ready());
  });
  // The master outlives its own bugs as it outlives its workers': log loudly, keep supervising.
  process.on('uncaughtException', (err) => log.error({ event: 'master_error', err }, `unexpected error in the master: ${err.message}`));
  process.on('unhandledRejection', (err) => log.error({ event: 'master_error', err }, `unhandled rejection in the master: ${String(err)}`));
  try {
    if (s.controlSocket) control = await startControlServer(arbiter, s.controlSocket, log, { takeOver: !!started.upgradeFrom });
    if (s.metricsBind) metrics = await startMetricsServer(arbiter, s.metricsBind, log, { retryInUse: !!started.upgradeFrom });
  } catch (err) {
    control?.close();
    closeListeners(started.listeners, { unlink: true });
    if (s.pidfile) removePidfile(s.pidfile, process.pid);
    throw new StartFailure(EXIT.RUNTIME, errorMessage(err));
  }
  for (const sig of signals.ignored) log.warn({ event: 'signal_ignored', signal: sig }, `${sig} came while starting; ignored`);
  if (signals.stopBy) {
    // Stopped before any worker existed: undo what the start did.
    log.info({ event: 'stopped_while_starting', signal: signals.stopBy }, `${signals.stopBy} while starting: stopping`);
    (control as ControlServer | null)?.close();
    (metrics as MetricsServer | null)?.close();
    closeListeners(started.listeners, { unlink: true });
    if (s.pidfile) removePidfile(s.pidfile, process.pid);
    return EXIT.OK;
  }
  await taskBrokers?.start();
  signals.remove();
  arbiter.start();
  const stopMemoryWatch = watchMemoryFit(arbiter, log, detectMemoryLimit());
  const code = await arbiter.done;
  stopMemoryWatch();
  await taskBrokers?.close();
  (control as ControlServer | null)?.close();
  (metrics as MetricsServer | null)?.close();
  if (s.pidfile) removePidfile(s.pidfile, process.pid);
  log.info({ event: 'exit', code }, `arbiter exiting with code ${code}`);
  return code;
}

/**
 * HUP moves the control socket and the metrics endpoint as it moves listeners: the server at
 * the new address opens before the old one closes; if it cannot, the old one stays (logged).
 */
async function moveServer<T extends { close(): void }>(
  what: string, event: string, prev: string | null, next: string | null, current: T | null,
  log: Logger, open: (at: string) => Promise<T>,
): Promise<T | null> {
  if (next === prev) return current;
  try {
    const fresh = next ? await open(next) : null;
    current?.close();
    return fresh;
  } catch (err) {
    log.error({ event, err: String(err) }, `reload: ${what} stays at ${prev}: ${errorMessage(err)}`);
    return current;
  }
}
