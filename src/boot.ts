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
import type { Logger } from './core/logging.js';
import { parseArgs, splitArgs } from './argv.js';
import { checkApp } from './appcheck.js';
import { formatConfig, resolve, serializable, unknownEnv, type Resolved } from './config.js';
import type { ControlServer } from './control.js';
import { openControl, wantedName } from './control-place.js';
import { AppLoadError, SettingError, errorMessage, indent } from './core/errors.js';
import { createHooks } from './core/hooks.js';
import { formatJsonLine } from './core/log-format.js';
import { createLogger, fatalLine } from './core/logging.js';
import { bindFor, type Asked } from './core/listen.js';
import { VERSION } from './core/paths.js';
import { ENV, EXIT } from './core/protocol.js';
import type { Settings, WorkerSettings } from './core/settings.js';
import { detectCpus, detectMemoryLimit } from './cpus.js';
import { daemonErrorLog, daemonize, echoStderrToLauncher, tellLauncherReady, underLauncher } from './daemon.js';
import { takeHandover, tellOldMaster } from './handover.js';
import { Arbiter, type PoolStart } from './master.js';
import { ledgerFor, startMetricsServer, watchMemoryFit, type MetricsServer } from './metrics.js';
import * as sd from './notify.js';
import { removePidfile, writePidfile } from './pidfile.js';
import { checkBinds, planPools, type PoolPlan } from './pools.js';
import type { Compiled } from './scheduler.js';
import { BindError, closeInherited, closeListeners, inheritedFromParent, openListeners, systemdListeners, type Listener } from './sockets.js';
import type { StartSignals } from './start-signals.js';
import { resolveIds } from './users.js';
import { endQuietStart } from './core/v8-at-start.js';

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
  takeHandover();
  const launchCwd = process.cwd();
  try {
    const plan = await resolveStart(argv, launchCwd);
    if (typeof plan === 'number') return plan;
    if (signals.stopBy) return EXIT.OK;
    const apps = await Promise.race([check(plan, launchCwd), signals.stopped.then(() => EXIT.OK)]);
    if (typeof apps === 'number') return apps;
    if (plan.resolved.settings.daemon && !underLauncher) return daemonize(launchCwd);
    const errorLog = daemonErrorLog(plan.resolved.settings, wantedName(plan.resolved.settings, process.env[ENV.UPGRADE_NAME]).name);
    const log = createLogger({ level: plan.resolved.settings.logLevel, errorLog, role: 'master', readable: formatJsonLine });
    const started = await bind(plan, apps, log);
    return await run(plan, apps, started, log, launchCwd, signals);
  } catch (err) {
    if (!(err instanceof StartFailure)) throw err;
    fatalLine(err.message);
    if (err.detail) process.stderr.write(indent(err.detail) + '\n');
    tellOldMaster({ t: 'failed', reason: err.message, detail: err.detail });
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
  /** One per pool (one, `main`, without `pools`), each sized. */
  pools: PoolPlan[];
  schedules: Compiled[];
}

/** The settings, or an exit code when there is nothing to serve (--help, --version, --print-config). */
async function resolveStart(argv: string[], launchCwd: string): Promise<Plan | number> {
  let plan: Plan;
  try {
    const cli = parseArgs(argv, 'cli');
    if (cli.help) {
      process.stdout.write((await import('./help.js')).mainHelp());
      return EXIT.OK;
    }
    if (cli.version) {
      process.stdout.write(`arbiter ${VERSION} (node ${process.version})\n`);
      return EXIT.OK;
    }
    const cmdText = process.env[ENV.CMD_ARGS];
    const cmdArgs = cmdText ? parseArgs(splitArgs(cmdText), 'ARBITER_CMD_ARGS').layer : {};
    const resolved = await resolveServer(cli.layer, cmdArgs, launchCwd);
    plan = { resolved, cli: cli.layer, cmdArgs, pools: planPools(resolved, detectCpus()), schedules: await schedulesOf(resolved.settings, configName(resolved)) };
  } catch (err) {
    throw usage(err);
  }
  for (const warning of unknownEnv(process.env)) fatalLine(`warning: ${warning}`);
  if (plan.resolved.settings.printConfig) {
    process.stdout.write(formatConfig(plan.resolved, plan.pools.map((p) => p.why)));
    return EXIT.OK;
  }
  return plan;
}

async function resolveServer(cli: Plan['cli'], cmdArgs: Plan['cmdArgs'], cwd: string): Promise<Resolved> {
  const resolved = await resolve({ cli, cmdArgs, env: process.env, cwd });
  try {
    resolveIds(resolved.settings.user, resolved.settings.group);
  } catch (err) {
    throw new SettingError(errorMessage(err));
  }
  return resolved;
}

function configName(r: Resolved): string {
  return r.configFile ? path.basename(r.configFile) : 'config';
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

/**
 * The process as the settings want it (chdir, umask, env), then every pool's app, loaded
 * once each before anything is bound: a pool that cannot load stops the start, named.
 */
async function check(plan: Plan, launchCwd: string): Promise<CheckedApp[] | number> {
  const s = plan.resolved.settings;
  // From here on, paths in settings (app, unix sockets) are relative to chdir.
  try {
    if (s.chdir) process.chdir(path.resolve(launchCwd, s.chdir));
  } catch {
    throw usage(`cannot chdir to ${s.chdir}: no such directory`);
  }
  if (s.umask !== null) process.umask(s.umask);
  Object.assign(process.env, s.env);
  const named = s.pools !== null;
  const apps: CheckedApp[] = [];
  for (const pool of plan.pools) {
    const where = named ? `pool ${pool.name}: ` : '';
    const ps = pool.settings;
    try {
      if (!ps.app) throw new SettingError('no app given');
      const checked = await checkApp(workerSettings(ps, pool.workers), process.cwd());
      if (checked.asked && (ps.certfile || ps.keyfile))
        throw new SettingError(`certfile and keyfile do not apply to a script-mode app: its own server decides TLS (https.createServer in the script)`);
      // With no bind given, a script is served where its own listen() calls asked.
      const binds = checked.asked && bindIsDefault(plan, ps) ? scriptBinds(checked.asked) : null;
      if (binds) ps.bind = binds;
      apps.push({ ...checked, binds });
      if (checked.note) fatalLine(`warning: ${where}${checked.note}`);
    } catch (err) {
      if (err instanceof SettingError) throw usage(where + errorMessage(err));
      throw new StartFailure(s.checkConfig ? EXIT.USAGE : EXIT.BOOT, where + errorMessage(err), err instanceof AppLoadError ? err.detail : undefined);
    }
  }
  try {
    checkBinds(plan.pools.map((p, i) => ({ name: p.name, settings: p.settings, listens: apps[i]!.listens })), process.cwd());
  } catch (err) {
    throw usage(err);
  }
  if (s.checkConfig) {
    for (const [i, pool] of plan.pools.entries())
      process.stdout.write(`config OK: ${named ? `pool ${pool.name}: ` : ''}${pool.settings.app} (${apps[i]!.picked}), ${pool.why.replace(`pool ${pool.name}: `, '')}\n`);
    return EXIT.OK;
  }
  return apps;
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

/** Nothing set `bind` for this pool: neither the command line, env, file, nor the pool. */
function bindIsDefault(plan: Plan, ps: Settings): boolean {
  return plan.resolved.sources.bind === 'default' && ps.bind.join('\n') === plan.resolved.settings.bind.join('\n');
}

function workerSettings(s: Settings, workers: number): WorkerSettings {
  return { ...serializable(s), workers } as WorkerSettings;
}

// ---------------------------------------------------------------------------------------
// bind

interface Started {
  /** Per pool, in plan order; empty for a pool whose class binds nothing. */
  listeners: Listener[][];
  /** Set in a master started by USR2: it claims the pidfile and control socket once it serves. */
  upgradeFrom: string | undefined;
  /** The name of the master it replaces. */
  upgradeName: string | undefined;
  /** The master-wide hooks (onStarting, onReload, whenReady, preExec, onExit). */
  hooks: ReturnType<typeof createHooks>;
}

async function bind(plan: Plan, apps: CheckedApp[], log: Logger): Promise<Started> {
  const s = plan.resolved.settings;
  const hooks = createHooks(s as unknown as Record<string, unknown>, log);
  const named = s.pools !== null;
  for (const [i, pool] of plan.pools.entries()) {
    const ps = pool.settings;
    const fields = { event: 'starting', version: VERSION, pool: pool.name, workerClass: ps.workerClass, app: ps.app, interface: apps[i]!.picked };
    log.info(fields, `arbiter ${VERSION} starting: ${named ? `pool ${pool.name}: ` : ''}${ps.app} (${apps[i]!.picked}), worker class ${ps.workerClass}`);
    log.info({ event: 'sizing', pool: pool.name, workers: pool.workers }, pool.why);
  }
  await hooks.run('onStarting', { settings: s });

  const listeners: Listener[][] = [];
  const inherited = inheritedFromParent(process.env);
  // systemd passes sockets without saying which pool they are for: they go to a lone pool.
  const fromSystemd = systemdListeners(process.env);
  if (fromSystemd.length && plan.pools.length > 1) {
    closeUnused(fromSystemd);
    throw new StartFailure(EXIT.USAGE, 'systemd passed listening sockets (LISTEN_FDS), but the config has several pools: socket activation needs a single pool');
  }
  try {
    for (const [i, pool] of plan.pools.entries()) {
      const ps = pool.settings;
      if (!apps[i]!.listens) {
        listeners.push([]);
        continue;
      }
      let mine: Listener[];
      if (fromSystemd.length) {
        if (plan.resolved.sources.bind !== 'default') log.warn({ event: 'bind_ignored' }, 'systemd passed listening sockets (LISTEN_FDS); the bind setting is ignored');
        mine = fromSystemd;
      } else {
        if (ps.reusePort && !supportsReusePort()) log.warn({ event: 'reuse_port_unsupported' }, `reusePort needs Node >= 22.12; ${process.version} binds without it`);
        mine = await openListeners(ps.bind, { reusePort: ps.reusePort, cwd: process.cwd(), owner: resolveIds(ps.user, ps.group), inherited });
      }
      listeners.push(mine);
      log.info({ event: 'listening', pool: pool.name, listeners: mine.map((l) => l.label) }, `${named ? `pool ${pool.name}: ` : ''}listening at ${mine.map((l) => l.label).join(', ')}`);
    }
  } catch (err) {
    for (const l of listeners) closeUnused(l);
    throw new StartFailure(err instanceof BindError ? EXIT.RUNTIME : EXIT.USAGE, errorMessage(err));
  }
  closeInherited(inherited);

  // A master started by USR2 claims the pidfile only once it serves, which is what
  // `arbiter upgrade` waits for before it retires the old master.
  const upgradeFrom = process.env[ENV.UPGRADE_FROM];
  const upgradeName = process.env[ENV.UPGRADE_NAME];
  delete process.env[ENV.UPGRADE_FROM];
  delete process.env[ENV.UPGRADE_NAME];
  if (!upgradeFrom) {
    try {
      claimPidfile(s);
    } catch (err) {
      throw new StartFailure(EXIT.RUNTIME, errorMessage(err));
    }
  }
  return { listeners, upgradeFrom, upgradeName, hooks };
}

function closeUnused(listeners: Listener[]): void {
  closeListeners(listeners, { unlink: true });
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

async function run(plan: Plan, apps: CheckedApp[], started: Started, log: Logger, launchCwd: string, signals: StartSignals): Promise<number> {
  const s = plan.resolved.settings;
  let control: ControlServer | null = null;
  let metrics: MetricsServer | null = null;
  const wanted = wantedName(s, started.upgradeName);
  const scriptBindsOf = new Map(plan.pools.flatMap((p, i) => (apps[i]!.binds ? [[p.name, apps[i]!.binds!] as const] : [])));
  const pools: PoolStart[] = plan.pools.map((p, i) => ({
    name: p.name,
    settings: p.settings,
    listeners: started.listeners[i]!,
    target: p.workers,
    listens: apps[i]!.listens,
    appFile: apps[i]!.file,
  }));
  const arbiter = new Arbiter({
    resolved: plan.resolved,
    pools,
    schedules: plan.schedules,
    log,
    bootAtOnce: detectCpus().cpus,
    hooks: started.hooks,
    onSettings: async (next, prev) => {
      control = await moveServer('control socket', 'reload_control_failed', prev.controlSocket, next.controlSocket, control, log, async () =>
        (await openControl(arbiter, next, log, { name: arbiter.name, explicit: true, upgrading: false })).server);
      metrics = await moveServer('metrics', 'reload_metrics_failed', prev.metricsBind, next.metricsBind, metrics, log, async (at) =>
        at ? startMetricsServer(arbiter, at, log) : null);
    },
    reloadConfig: async () => {
      // HUP re-reads the file and the environment as they are now; the command line stays.
      const resolved = await resolveServer(plan.cli, plan.cmdArgs, launchCwd);
      const pools = planPools(resolved, detectCpus());
      // A script's own addresses stay where they were found at start (its code is not checked again).
      for (const p of pools) {
        const binds = scriptBindsOf.get(p.name);
        if (binds) p.settings.bind = binds;
      }
      const schedules = await schedulesOf(resolved.settings, configName(resolved));
      return { resolved, pools, schedules, hooks: createHooks(resolved.settings as unknown as Record<string, unknown>, log) };
    },
    launchCwd,
    name: wanted.name,
  });
  const allListeners = started.listeners.flat();
  // Counters of workers that exit from now on are kept, whenever the metrics endpoint opens.
  ledgerFor(arbiter);
  // Loaded only for task pools, as the scheduler only for schedules (SPEC §11).
  const taskBrokers = [...arbiter.groups.values()].some((g) => g.settings.workerClass === 'task')
    ? (await import('./task-brokers.js')).taskBrokersFor(arbiter, log)
    : null;
  arbiter.brokers = taskBrokers;
  arbiter.events.once('ready', async () => {
    endQuietStart();
    // What the start allocated and no longer needs goes back, as in every worker
    // (src/core/settle.ts); half a second on, so that it is not in front of the first requests.
    void import('./core/settle.js').then((m) => m.settleWhenIdle(() => 0));
    if (started.upgradeFrom) {
      try {
        claimPidfile(s);
      } catch (err) {
        fatalLine(errorMessage(err));
      }
      try {
        await control?.takeOver();
      } catch (err) {
        log.error({ event: 'control_takeover_failed', err: errorMessage(err) }, `cannot take over the control socket: ${errorMessage(err)}`);
      }
      tellOldMaster({ t: 'ready' });
    }
    tellLauncherReady();
    void (started.upgradeFrom ? sd.mainpid(process.pid) : sd.ready());
  });
  // The master outlives its own bugs as it outlives its workers': log loudly, keep supervising.
  process.on('uncaughtException', (err) => log.error({ event: 'master_error', err }, `unexpected error in the master: ${err.message}`));
  process.on('unhandledRejection', (err) => log.error({ event: 'master_error', err }, `unhandled rejection in the master: ${String(err)}`));
  // A new master started by USR2 that died took its socket with it: point the path back here.
  arbiter.events.on('upgradeEnded', () => void control?.reclaim().catch(() => {}));
  try {
    const placed = await openControl(arbiter, s, log, { ...wanted, upgrading: !!started.upgradeFrom });
    control = placed.server;
    arbiter.name = placed.name;
    process.title = `arbiter master [${placed.name}]`;
    if (s.metricsBind) metrics = await startMetricsServer(arbiter, s.metricsBind, log, { retryInUse: !!started.upgradeFrom });
  } catch (err) {
    control?.close();
    closeListeners(allListeners, { unlink: true });
    if (s.pidfile) removePidfile(s.pidfile, process.pid);
    throw new StartFailure(EXIT.RUNTIME, errorMessage(err));
  }
  for (const sig of signals.ignored) log.warn({ event: 'signal_ignored', signal: sig }, `${sig} came while starting; ignored`);
  if (signals.stopBy) {
    // Stopped before any worker existed: undo what the start did.
    log.info({ event: 'stopped_while_starting', signal: signals.stopBy }, `${signals.stopBy} while starting: stopping`);
    (control as ControlServer | null)?.close();
    (metrics as MetricsServer | null)?.close();
    closeListeners(allListeners, { unlink: true });
    if (s.pidfile) removePidfile(s.pidfile, process.pid);
    return EXIT.OK;
  }
  await taskBrokers?.start();
  arbiter.start();
  signals.remove();
  const stopMemoryWatch = watchMemoryFit(arbiter, log, detectMemoryLimit());
  const code = await arbiter.done;
  if (code !== 0 && arbiter.haltReason) tellOldMaster({ t: 'failed', ...arbiter.haltReason });
  stopMemoryWatch();
  await taskBrokers?.close();
  (control as ControlServer | null)?.close();
  (metrics as MetricsServer | null)?.close();
  if (s.pidfile) removePidfile(s.pidfile, process.pid);
  log.info({ event: 'exit', code }, `arbiter exiting with code ${code}`);
  return code;
}

/** The config's schedules, compiled; the scheduler's module is loaded only when there are some. */
async function schedulesOf(settings: Settings, origin: string): Promise<Compiled[]> {
  if (!settings.schedule.length) return [];
  return (await import('./scheduler.js')).compileSchedules(settings, origin);
}

/**
 * HUP moves the control socket and the metrics endpoint as it moves listeners: the server at
 * the new address opens before the old one closes; if it cannot, the old one stays (logged).
 */
async function moveServer<T extends { close(): void }>(
  what: string, event: string, prev: string | null, next: string | null, current: T | null,
  log: Logger, open: (at: string | null) => Promise<T | null>,
): Promise<T | null> {
  if (next === prev) return current;
  try {
    const fresh = await open(next);
    current?.close();
    return fresh;
  } catch (err) {
    log.error({ event, err: String(err) }, `reload: ${what} stays at ${prev}: ${errorMessage(err)}`);
    return current;
  }
}
