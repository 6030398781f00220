/**
 * `arbiter`: parse the command line, resolve the settings, validate the app, bind, and run
 * the master. Usage and config mistakes end here with one line and exit code 2.
 *
 * Exit codes: 0 clean stop, 1 runtime failure (including a bind that fails), 2 usage or
 * config error, 3 the app cannot be loaded or a worker failed to boot.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import yargs, { type Argv } from 'yargs';
import { AppLoadError } from './app.js';
import { checkApp } from './appcheck.js';
import type { WorkerSettings } from '../workers/contract.js';
import {
  applyPlatformDefaults,
  checkCombination,
  envLayer,
  loadConfigFile,
  merge,
  serializable,
  unknownEnv,
  type Layer,
  type Resolved,
} from './config.js';
import { detectCpus, detectMemoryLimit, resolveWorkers, type CpuFinding } from './cpus.js';
import { createHooks } from './hooks.js';
import { createLogger, fatalLine } from './logging.js';
import { Arbiter } from './master.js';
import { startControlServer, type ControlServer } from './control.js';
import { startMetricsServer, watchMemoryFit, type MetricsServer } from './metrics.js';
import * as sd from './notify.js';
import { ROOT } from './paths.js';
import { writePidfile, removePidfile } from './pidfile.js';
import {
  BY_NAME,
  SECTION_TITLES,
  SETTINGS,
  SettingError,
  closest,
  kebab,
  parseValue,
  type SettingSpec,
  type Settings,
} from './settings.js';
import { BindError, inheritedFromParent, openListeners, systemdListeners, type Listener } from './sockets.js';

export const VERSION: string = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version;

export const EXIT = { OK: 0, RUNTIME: 1, USAGE: 2, BOOT: 3 } as const;

const CLI_SETTINGS = SETTINGS.filter((s) => (s as SettingSpec).cli !== false) as SettingSpec[];

/** Build the yargs parser from the settings table. */
function parser(argv: string[], forHelp: boolean): Argv {
  let y = yargs(argv)
    .scriptName('arbiter')
    .usage(
      'Usage: arbiter [OPTIONS] APP_MODULE\n\n' +
        'A pre-fork process manager for Node.js: one master binds the sockets and keeps\n' +
        'N workers serving APP_MODULE (MODULE[:EXPORT], e.g. app.js:handler).\n\n' +
        'Commands: arbiter status | reload | stop | scale N | upgrade   (need controlSocket or pidfile)\n' +
        '          arbiter enqueue NAME [JSON] | dlq list|retry|purge   (task queues)',
    )
    .parserConfiguration({
      'camel-case-expansion': false,
      'strip-aliased': true,
      'boolean-negation': true,
      'parse-numbers': false,
      'parse-positional-numbers': false,
    })
    .wrap(Math.min(110, process.stdout.columns || 100))
    .exitProcess(false)
    .fail((msg, err) => {
      throw err ?? new SettingError(msg.replace(/\n.*/s, ''));
    });
  for (const s of CLI_SETTINGS) {
    const isBool = s.kind === 'boolean';
    const repeatable = s.kind === 'list' || s.kind === 'env';
    y = y.option(kebab(s.name), {
      alias: [...(s.short ? [s.short] : []), ...(s.aliases ?? [])],
      type: isBool ? 'boolean' : 'string',
      array: repeatable,
      requiresArg: !isBool,
      describe: s.doc.replace(/`/g, '') + (forHelp ? defaultNote(s) : ''),
      group: SECTION_TITLES[s.section] + ':',
    });
  }
  return y.help(false).version(false).option('help', { alias: 'h', type: 'boolean', describe: 'Show this help' }).option('version', { alias: 'v', type: 'boolean', describe: 'Show the version' });
}

function defaultNote(s: SettingSpec): string {
  const d = s.default;
  if (d === null || (Array.isArray(d) && d.length === 0) || (typeof d === 'object' && d && !Array.isArray(d) && Object.keys(d).length === 0)) return '';
  return ` [default: ${Array.isArray(d) ? d.join(', ') : String(d)}]`;
}

const KNOWN_KEYS = new Set(['_', '$0', 'help', 'version', ...CLI_SETTINGS.map((s) => kebab(s.name))]);
const ALL_FLAGS = CLI_SETTINGS.flatMap((s) => [kebab(s.name), ...(s.aliases ?? [])]);

/** Parse argv (the real one, or ARBITER_CMD_ARGS) into a layer of typed values. */
export function parseArgs(argv: string[], origin: 'cli' | 'ARBITER_CMD_ARGS'): { layer: Layer; help: boolean; version: boolean } {
  const parsed = parser(argv, false).parseSync() as Record<string, unknown>;
  for (const key of Object.keys(parsed)) {
    if (KNOWN_KEYS.has(key)) continue;
    const flag = key.length === 1 ? `-${key}` : `--${key}`;
    const near = closest(key, ALL_FLAGS);
    throw new SettingError(`unknown option ${flag}${origin === 'cli' ? '' : ` in ${origin}`}` + (near ? ` — did you mean --${near}?` : ''));
  }
  const layer: Layer = {};
  for (const s of CLI_SETTINGS) {
    const raw = parsed[kebab(s.name)];
    if (raw === undefined) continue;
    const flag = `--${kebab(s.name)}`;
    if (Array.isArray(raw) && s.kind !== 'list' && s.kind !== 'env')
      throw new SettingError(`${flag} was given ${raw.length} times; it takes one value`);
    layer[s.name as keyof Settings] = parseValue(s, raw, origin === 'cli' ? flag : `${flag} in ARBITER_CMD_ARGS`);
  }
  const positional = (parsed._ as unknown[]).map(String);
  if (positional.length > 1) throw new SettingError(`unexpected argument "${positional[1]}": give one APP_MODULE`);
  if (positional.length === 1) layer.app = parseValue(BY_NAME.get('app')!, positional[0], 'APP_MODULE');
  return { layer, help: parsed.help === true, version: parsed.version === true };
}

/** Split ARBITER_CMD_ARGS the way a shell would (quotes and backslashes, no expansion). */
export function splitArgs(text: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quote: '"' | "'" | null = null;
  let has = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote) {
      if (c === quote) quote = null;
      else if (c === '\\' && quote === '"' && i + 1 < text.length) cur += text[++i];
      else cur += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      has = true;
    } else if (c === '\\' && i + 1 < text.length) {
      cur += text[++i];
      has = true;
    } else if (/\s/.test(c)) {
      if (has || cur) out.push(cur);
      cur = '';
      has = false;
    } else cur += c;
  }
  if (quote) throw new SettingError('ARBITER_CMD_ARGS has an unclosed quote');
  if (has || cur) out.push(cur);
  return out;
}

export interface Sources {
  cli: Layer;
  env: Layer;
  cmdArgs: Layer;
  cwd: string;
}

/** Everything but the command line's flags: config file and environment, re-read on HUP. */
export async function resolveSettings(src: Sources, env: NodeJS.ProcessEnv): Promise<Resolved> {
  const named = (src.cli.config ?? src.env.config ?? src.cmdArgs.config ?? null) as string | null;
  const { layer: file, file: configFile } = await loadConfigFile(named, src.cwd);
  const merged = merge([
    { source: 'file', layer: file },
    { source: 'env', layer: src.cmdArgs },
    { source: 'env', layer: src.env },
    { source: 'cli', layer: src.cli },
  ]);
  applyPlatformDefaults(merged, env);
  checkCombination(merged.settings);
  return { ...merged, configFile };
}

export function formatConfig(r: Resolved, cpus?: { why: string }): string {
  const rows: string[] = [];
  for (const s of SETTINGS) {
    const v = (r.settings as unknown as Record<string, unknown>)[s.name];
    if (s.kind === 'hook' && v === null) continue;
    const shown = typeof v === 'function' ? '[function]' : JSON.stringify(v);
    rows.push(`${s.name.padEnd(22)} = ${shown}  (${r.sources[s.name as keyof Settings]})`);
  }
  if (r.configFile) rows.push(`# config file: ${r.configFile}`);
  if (cpus) rows.push(`# ${cpus.why}`);
  return rows.join('\n') + '\n';
}

function sizing(workers: Settings['workers']): { workers: number; why: string; finding: CpuFinding } {
  const finding = detectCpus();
  try {
    return { ...resolveWorkers(workers, finding), finding };
  } catch (err) {
    throw new SettingError(err instanceof Error ? err.message : String(err));
  }
}

/**
 * Start again, detached (a new session, no terminal, stdio on /dev/null), without --daemon,
 * from the directory we were started in. Wait until the daemon serves, so that a daemon
 * that cannot start (a live pidfile, a bind error, an app that does not boot) makes this
 * command fail with its reason and exit code instead of vanishing.
 */
function daemonize(launchCwd: string): Promise<number> {
  const args = process.argv.slice(1).filter((a) => a !== '-D' && a !== '--daemon');
  const child = spawn(process.execPath, [...process.execArgv, ...args], {
    cwd: launchCwd,
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
    env: { ...process.env, ARBITER_DAEMON: '0' },
  });
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      fatalLine(`the daemon (pid ${child.pid}) is not serving after 60 s; it keeps trying (see errorLog)`);
      resolve(EXIT.RUNTIME);
    }, 60_000);
    child.on('message', (m: { t?: string; text?: string }) => {
      if (m.t === 'stderr') process.stderr.write(String(m.text));
      else if (m.t === 'ready') {
        clearTimeout(timer);
        resolve(EXIT.OK);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code || EXIT.RUNTIME);
    });
  }).then((code) => {
    if (child.connected) child.disconnect();
    child.unref();
    return code as number;
  });
}

/** In a daemon started by daemonize(): what goes to stderr before it serves also goes to the launcher. */
const daemonLauncher = process.env.ARBITER_DAEMON === '0' && typeof process.send === 'function';
if (daemonLauncher) {
  const write = process.stderr.write.bind(process.stderr) as (chunk: unknown, ...rest: unknown[]) => boolean;
  process.stderr.write = ((chunk: unknown, ...rest: unknown[]) => {
    if (process.connected) process.send!({ t: 'stderr', text: String(chunk) }, undefined, undefined, () => {});
    return write(chunk, ...rest);
  }) as typeof process.stderr.write;
}

export async function main(argv: string[] = process.argv.slice(2)): Promise<number> {
  if (argv[0] && ['status', 'scale', 'reload', 'stop'].includes(argv[0])) {
    const { controlCommand } = await import('./control-cli.js');
    return controlCommand(argv);
  }
  if (argv[0] === 'enqueue' || argv[0] === 'dlq') {
    const { taskCommand } = await import('../workers/task/cli.js');
    return taskCommand(argv);
  }
  if (argv[0] === 'upgrade') {
    const { command } = await import('./commands.js');
    return command(argv);
  }

  const launchCwd = process.cwd();
  let resolved: Resolved;
  let src: Sources;
  try {
    const cli = parseArgs(argv, 'cli');
    if (cli.help) {
      process.stdout.write((await parser([], true).getHelp()) + '\n');
      return EXIT.OK;
    }
    if (cli.version) {
      process.stdout.write(`arbiter ${VERSION} (node ${process.version})\n`);
      return EXIT.OK;
    }
    const cmdArgs = process.env.ARBITER_CMD_ARGS ? parseArgs(splitArgs(process.env.ARBITER_CMD_ARGS), 'ARBITER_CMD_ARGS').layer : {};
    src = { cli: cli.layer, env: envLayer(process.env), cmdArgs, cwd: launchCwd };
    resolved = await resolveSettings(src, process.env);
  } catch (err) {
    return usageError(err);
  }
  for (const warning of unknownEnv(process.env)) fatalLine(`warning: ${warning}`);
  const s = resolved.settings;

  let workers: { workers: number; why: string };
  try {
    workers = sizing(s.workers);
    if (resolved.sources.workers === 'default') workers.why = `${workers.workers} worker (the default; -w N, or -w auto to size from the CPUs)`;
  } catch (err) {
    return usageError(err);
  }

  if (s.printConfig) {
    process.stdout.write(formatConfig(resolved, workers));
    return EXIT.OK;
  }

  // From here on, paths in settings (app, unix sockets) are relative to chdir.
  try {
    if (s.chdir) process.chdir(path.resolve(launchCwd, s.chdir));
  } catch {
    return usageError(new SettingError(`cannot chdir to ${s.chdir}: no such directory`));
  }
  if (s.umask !== null) process.umask(s.umask);
  Object.assign(process.env, s.env);

  // Load the app once, only to validate it, before anything is bound.
  let picked: string;
  let listens = true;
  let appFile: string | undefined;
  try {
    if (!s.app) throw new SettingError('no app given');
    ({ picked, listens, file: appFile } = await checkApp({ ...serializable(s), workers: workers.workers } as WorkerSettings, process.cwd()));
  } catch (err) {
    if (err instanceof SettingError) return usageError(err);
    fatalLine(err instanceof Error ? err.message : String(err));
    if (err instanceof AppLoadError && err.detail) process.stderr.write(indent(err.detail) + '\n');
    return s.checkConfig ? EXIT.USAGE : EXIT.BOOT;
  }
  if (s.checkConfig) {
    process.stdout.write(`config OK: ${s.app} (${picked}), ${workers.why}\n`);
    return EXIT.OK;
  }
  if (s.daemon && process.env.ARBITER_DAEMON === undefined) return daemonize(launchCwd);

  const log = createLogger({ level: s.logLevel, errorLog: s.errorLog, role: 'master' });
  const hooks = createHooks(s as unknown as Record<string, unknown>, log);
  log.info({ event: 'starting', version: VERSION, workerClass: s.workerClass, app: s.app, interface: picked }, `arbiter ${VERSION} starting: ${s.app} (${picked}), worker class ${s.workerClass}`);
  log.info({ event: 'sizing', workers: workers.workers }, workers.why);
  await hooks.run('onStarting', { settings: s });

  let listeners: Listener[] = [];
  if (listens) {
    try {
      const fromSystemd = systemdListeners(process.env);
      if (fromSystemd.length) {
        if (resolved.sources.bind !== 'default') log.warn({ event: 'bind_ignored' }, 'systemd passed listening sockets (LISTEN_FDS); the bind setting is ignored');
        listeners = fromSystemd;
      } else {
        if (s.reusePort && !supportsReusePort()) log.warn({ event: 'reuse_port_unsupported' }, `reusePort needs Node >= 22.12; ${process.version} binds without it`);
        listeners = await openListeners(s.bind, { reusePort: s.reusePort, cwd: process.cwd(), inherited: inheritedFromParent(process.env) });
      }
    } catch (err) {
      fatalLine(err instanceof Error ? err.message : String(err));
      return err instanceof BindError ? EXIT.RUNTIME : EXIT.USAGE;
    }
    log.info({ event: 'listening', listeners: listeners.map((l) => l.label) }, `listening at ${listeners.map((l) => l.label).join(', ')}`);
  }

  // A master started by USR2 claims the pidfile only once it serves, which is what
  // `arbiter upgrade` waits for before it retires the old master.
  const upgrade = process.env.ARBITER_UPGRADE_FROM;
  delete process.env.ARBITER_UPGRADE_FROM;
  const claimPidfile = (): boolean => {
    if (!s.pidfile) return true;
    try {
      writePidfile(s.pidfile, process.pid);
      return true;
    } catch (err) {
      fatalLine(err instanceof Error ? err.message : String(err));
      return false;
    }
  };
  if (!upgrade && !claimPidfile()) return EXIT.RUNTIME;

  let control: ControlServer | null = null;
  let metrics: MetricsServer | null = null;
  const arbiter = new Arbiter({
    resolved,
    listeners,
    workers: workers.workers,
    log,
    hooks,
    onSettings: async (next, prev) => {
      control = await moveServer('control socket', 'reload_control_failed', prev.controlSocket, next.controlSocket, control, log, (at) =>
        startControlServer(arbiter, at, log));
      metrics = await moveServer('metrics', 'reload_metrics_failed', prev.metricsBind, next.metricsBind, metrics, log, (at) =>
        startMetricsServer(arbiter, at, log));
    },
    reloadConfig: async () => {
      // HUP re-reads the file and the environment as they are now; the command line stays.
      const next = await resolveSettings({ ...src, env: envLayer(process.env), cwd: launchCwd }, process.env);
      const n = sizing(next.settings.workers);
      return { resolved: next, workers: n.workers, hooks: createHooks(next.settings as unknown as Record<string, unknown>, log) };
    },
    onReady: () => {
      if (upgrade) void claimPidfile();
      if (daemonLauncher && process.connected) process.send!({ t: 'ready' }, undefined, undefined, () => process.disconnect());
      void (upgrade ? sd.mainpid(process.pid) : sd.ready());
    },
    launchCwd,
    appFile,
  });
  // The master outlives its own bugs as it outlives its workers': log loudly, keep supervising.
  process.on('uncaughtException', (err) => log.error({ event: 'master_error', err }, `unexpected error in the master: ${err.message}`));
  process.on('unhandledRejection', (err) => log.error({ event: 'master_error', err }, `unhandled rejection in the master: ${String(err)}`));
  try {
    if (s.controlSocket) control = await startControlServer(arbiter, s.controlSocket, log, { takeOver: !!upgrade });
    if (s.metricsBind) metrics = await startMetricsServer(arbiter, s.metricsBind, log, { retryInUse: !!upgrade });
  } catch (err) {
    fatalLine(err instanceof Error ? err.message : String(err));
    control?.close();
    if (s.pidfile) removePidfile(s.pidfile, process.pid);
    return EXIT.RUNTIME;
  }
  arbiter.start();
  const stopMemoryWatch = watchMemoryFit(arbiter, log, detectMemoryLimit());
  const code = await arbiter.done;
  stopMemoryWatch();
  control?.close();
  metrics?.close();
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
  log: ReturnType<typeof createLogger>, open: (at: string) => Promise<T>,
): Promise<T | null> {
  if (next === prev) return current;
  try {
    const fresh = next ? await open(next) : null;
    current?.close();
    return fresh;
  } catch (err) {
    log.error({ event, err: String(err) }, `reload: ${what} stays at ${prev}: ${(err as Error).message}`);
    return current;
  }
}

function supportsReusePort(): boolean {
  const [major, minor] = process.versions.node.split('.').map(Number) as [number, number];
  return major > 22 || (major === 22 && minor >= 12);
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => '    ' + l.trim())
    .join('\n');
}

function usageError(err: unknown): number {
  if (err instanceof SettingError || (err as Error)?.name === 'YError') {
    fatalLine((err as Error).message);
    return EXIT.USAGE;
  }
  fatalLine(err instanceof Error ? err.message : String(err));
  return EXIT.USAGE;
}
