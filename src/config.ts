/**
 * Where settings come from and in which order they win: defaults < config file <
 * `ARBITER_CMD_ARGS` < `ARBITER_*` variables < command line. Every effective value remembers
 * its source for `--print-config`. `resolve()` is the one place that order is written: the
 * server, the operator commands and `enqueue()` all go through it.
 */
import { loadConfigFile, type Layer } from './core/config-file.js';
import { ENV, RESERVED_ENV } from './core/protocol.js';
import { SettingError } from './core/errors.js';
import { BY_NAME, DEFAULTS, SETTINGS, SETTING_NAMES, envName, parseValue, type SettingName, type Settings } from './core/settings.js';

export type { Layer };

export type Source = 'default' | 'file' | 'env' | 'cli';

export interface Resolved {
  settings: Settings;
  sources: Record<keyof Settings, Source>;
  /** Absolute path of the config file that was loaded, if any. */
  configFile: string | null;
}

export interface Sources {
  /** The command line: the server's flags, a command's flags, or `enqueue()`'s options. */
  cli?: Layer;
  /** ARBITER_CMD_ARGS, already parsed (src/argv.ts). */
  cmdArgs?: Layer;
  /** The environment whose `ARBITER_*` variables are read (and PORT, WEB_CONCURRENCY). */
  env?: NodeJS.ProcessEnv;
  /** Where the config file is looked for, and what a relative `config` is relative to. */
  cwd: string;
  /**
   * `load` (the default): a named or discovered config file is read, and a broken one is an
   * error. `tolerant`: a broken file that was only discovered is ignored (commands that may
   * not need it). `skip`: no config file (the `enqueue()` API).
   */
  configFile?: 'load' | 'tolerant' | 'skip';
}

/**
 * The effective settings. With `names`, only those settings are read from the environment,
 * so that a command is not refused over a variable it does not use.
 */
export async function resolve(src: Sources, names?: readonly SettingName[]): Promise<Resolved> {
  const cli = src.cli ?? {};
  const cmdArgs = src.cmdArgs ?? {};
  const env = src.env ? envLayer(src.env, names) : {};
  const named = (cli.config ?? env.config ?? cmdArgs.config ?? null) as string | null;
  let file: Layer = {};
  let configFile: string | null = null;
  const mode = src.configFile ?? 'load';
  if (mode !== 'skip') {
    try {
      ({ layer: file, file: configFile } = await loadConfigFile(named, src.cwd));
    } catch (err) {
      if (named || mode === 'load') throw err;
    }
  }
  const merged = merge([
    { source: 'file', layer: file },
    { source: 'env', layer: cmdArgs },
    { source: 'env', layer: env },
    { source: 'cli', layer: cli },
  ]);
  if (src.env) applyPlatformDefaults(merged, src.env);
  return { ...merged, configFile };
}

/** Settings taken from `ARBITER_*` variables (not `ARBITER_CMD_ARGS`). */
export function envLayer(env: NodeJS.ProcessEnv, names?: readonly string[]): Layer {
  const layer: Layer = {};
  for (const spec of SETTINGS) {
    // Hooks, pools and schedules live in config files only.
    if ((spec as { cli?: boolean }).cli === false || (names && !names.includes(spec.name))) continue;
    const name = envName(spec.name);
    const value = env[name];
    if (value === undefined || value === '') continue;
    layer[spec.name as keyof Settings] = parseValue(spec, spec.kind === 'list' || spec.kind === 'env' ? splitEnvList(spec.kind, value) : value, name);
  }
  return layer;
}

function splitEnvList(kind: string, value: string): string[] {
  // env pairs may carry commas in their values, so they are separated by newlines or `;`.
  return kind === 'env' ? value.split(/[\n;]/).filter((x) => x !== '') : value.split(',').map((x) => x.trim()).filter((x) => x !== '');
}

/** Unknown ARBITER_* names are probably typos; they are reported, not fatal, since the environment is shared. */
export function unknownEnv(env: NodeJS.ProcessEnv): string[] {
  const known = new Set(SETTINGS.filter((s) => (s as { cli?: boolean }).cli !== false).map((s) => envName(s.name)));
  const out: string[] = [];
  for (const name of Object.keys(env)) {
    if (!name.startsWith('ARBITER_') || known.has(name) || RESERVED_ENV.has(name) || name.startsWith('ARBITER_TEST')) continue;
    const near = [...known].find((k) => k === name.replace(/S$/, '') || k + 'S' === name);
    out.push(`unknown environment variable ${name}` + (near ? ` — did you mean ${near}?` : ''));
  }
  return out;
}

/** Lay the sources over the defaults, lowest first. */
export function merge(layers: { source: Source; layer: Layer }[]): Omit<Resolved, 'configFile'> {
  const settings = cloneSettings(DEFAULTS);
  const sources = Object.fromEntries(SETTING_NAMES.map((n) => [n, 'default'])) as Record<keyof Settings, Source>;
  for (const { source, layer } of layers) {
    for (const [key, value] of Object.entries(layer)) {
      if (value === undefined) continue;
      (settings as Record<string, unknown>)[key] = value;
      sources[key as keyof Settings] = source;
    }
  }
  return { settings, sources };
}

function cloneSettings(s: Settings): Settings {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s)) out[k] = typeof v === 'function' ? v : structuredClone(v);
  return out as Settings;
}

/**
 * Platform conventions Gunicorn honours: `PORT` when nothing says where to bind, and
 * `WEB_CONCURRENCY` when nothing says how many workers.
 */
export function applyPlatformDefaults(r: Omit<Resolved, 'configFile'>, env: NodeJS.ProcessEnv): void {
  if (r.sources.bind === 'default' && env.PORT && /^\d+$/.test(env.PORT)) {
    r.settings.bind = [`0.0.0.0:${env.PORT}`];
    r.sources.bind = 'env';
  }
  if (r.sources.workers === 'default' && env.WEB_CONCURRENCY) {
    r.settings.workers = parseValue(BY_NAME.get('workers')!, env.WEB_CONCURRENCY, 'WEB_CONCURRENCY') as Settings['workers'];
    r.sources.workers = 'env';
  }
}

/** Cross-setting checks that no single row can make; for the server. */
export function checkCombination(s: Settings): void {
  if ((s.certfile === null) !== (s.keyfile === null))
    throw new SettingError(`certfile and keyfile go together: only ${s.certfile ? 'certfile' : 'keyfile'} was given`);
  if (!s.app && !s.checkConfig && !s.printConfig)
    throw new SettingError('no app given: name one as the first argument (arbiter app.js:handler) or set "app" in a config file');
  if (s.bind.length === 0) throw new SettingError('bind is empty: give at least one address');
  if (s.interface === 'listen' && s.workerClass !== 'http')
    throw new SettingError(`interface listen (script mode) needs -k http: the script's own http.Server serves, and worker class ${s.workerClass} does not run one`);
}

/** The JSON-safe part of the settings, for workers and --print-config. */
export function serializable(s: Settings): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s)) {
    if (typeof v === 'function') continue;
    out[k] = v;
  }
  return out;
}

/** `--print-config`: every setting, its effective value and where it came from; then each pool's sizing. */
export function formatConfig(r: Resolved, sizing: string[] = []): string {
  const rows: string[] = [];
  for (const s of SETTINGS) {
    const v = (r.settings as unknown as Record<string, unknown>)[s.name];
    if (s.kind === 'hook' && v === null) continue;
    rows.push(`${s.name.padEnd(22)} = ${shownValue(v)}  (${r.sources[s.name as keyof Settings]})`);
  }
  if (r.configFile) rows.push(`# config file: ${r.configFile}`);
  for (const why of sizing) rows.push(`# ${why}`);
  return rows.join('\n') + '\n';
}

function shownValue(v: unknown): string {
  if (typeof v === 'function') return '[function]';
  // Pools hold functions too (workers, hooks).
  return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'function' ? '[function]' : x));
}

/** The ARBITER_CMD_ARGS text, if any. */
export function cmdArgsText(env: NodeJS.ProcessEnv): string | undefined {
  return env[ENV.CMD_ARGS] || undefined;
}
