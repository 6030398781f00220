/**
 * Where settings come from and in which order they win: defaults < config file <
 * environment (`ARBITER_CMD_ARGS`, then `ARBITER_*`) < command line. Every effective value
 * remembers its source for `--print-config`.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { cosmiconfig, type Loader } from 'cosmiconfig';
import {
  BY_NAME,
  DEFAULTS,
  SETTINGS,
  SETTING_NAMES,
  SettingError,
  envName,
  parseValue,
  unknownSetting,
  type Settings,
} from './settings.js';

export type Source = 'default' | 'file' | 'env' | 'cli';

export interface Resolved {
  settings: Settings;
  sources: Record<keyof Settings, Source>;
  /** Absolute path of the config file that was loaded, if any. */
  configFile: string | null;
}

/** Raw values from one source, already typed by the table. */
export type Layer = Partial<Record<keyof Settings, unknown>>;

/** Loads TypeScript config files on Node 20 without a build step (tsx's loader). */
const loadTs: Loader = async (filepath) => {
  const { tsImport } = await import('tsx/esm/api');
  const mod = await tsImport(pathToFileURL(filepath).href, import.meta.url);
  return unwrapModule(mod);
};

function unwrapModule(mod: any): unknown {
  // An ES module's default export, or a CommonJS module.exports seen through ESM interop.
  let value = mod && typeof mod === 'object' && 'default' in mod ? mod.default : mod;
  if (value && typeof value === 'object' && 'default' in value && Object.keys(value).length === 1) value = value.default;
  return value;
}

function explorer() {
  return cosmiconfig('arbiter', {
    searchStrategy: 'project',
    loaders: { '.ts': loadTs, '.mts': loadTs, '.cts': loadTs },
    searchPlaces: [
      'package.json',
      '.arbiterrc',
      '.arbiterrc.json',
      '.arbiterrc.yaml',
      '.arbiterrc.yml',
      '.arbiterrc.js',
      '.arbiterrc.mjs',
      '.arbiterrc.cjs',
      '.arbiterrc.ts',
      'arbiter.config.ts',
      'arbiter.config.mts',
      'arbiter.config.js',
      'arbiter.config.mjs',
      'arbiter.config.cjs',
      'arbiter.config.json',
      'arbiter.config.yaml',
      'arbiter.config.yml',
    ],
  });
}

/**
 * Load and validate a config file: the one named, or the first one found from `cwd` up to
 * the project root. Returns the typed layer and the file's absolute path.
 */
export async function loadConfigFile(named: string | null, cwd: string): Promise<{ layer: Layer; file: string | null }> {
  let result: { config: unknown; filepath: string } | null;
  if (named) {
    const file = path.resolve(cwd, named);
    if (!existsSync(file)) throw new SettingError(`config file not found: ${file}`);
    try {
      result = await explorer().load(file);
    } catch (err) {
      throw new SettingError(`cannot load config file ${file}: ${firstLine(err)}`);
    }
  } else {
    try {
      result = await explorer().search(cwd);
    } catch (err) {
      throw new SettingError(`cannot load config file: ${firstLine(err)}`);
    }
  }
  if (!result) return { layer: {}, file: null };
  const file = result.filepath;
  let raw = result.config;
  if (typeof raw === 'function') raw = await (raw as () => unknown)();
  if (raw === undefined || raw === null) return { layer: {}, file };
  if (typeof raw !== 'object' || Array.isArray(raw))
    throw new SettingError(`config file ${file} must export an object of settings (found ${typeof raw})`);
  const origin = path.basename(file);
  const layer: Layer = {};
  for (const [key, value] of Object.entries(raw as Record<string, unknown>)) {
    const spec = BY_NAME.get(key);
    if (!spec) throw unknownSetting(key, origin);
    if (value === undefined) continue;
    layer[key as keyof Settings] = parseValue(spec, value, origin);
  }
  return { layer, file };
}

export function firstLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split('\n').map((l) => l.trim()).find((l) => l !== '') ?? text;
}

/** Settings taken from `ARBITER_*` variables (not `ARBITER_CMD_ARGS`). */
export function envLayer(env: NodeJS.ProcessEnv): Layer {
  const layer: Layer = {};
  for (const spec of SETTINGS) {
    if (spec.kind === 'hook') continue;
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

/** ARBITER_* variables that are not settings: arbiter's own plumbing. */
const RESERVED_ENV = new Set(['ARBITER_CMD_ARGS', 'ARBITER_FDS', 'ARBITER_WORKER', 'ARBITER_UPGRADE_FROM', 'ARBITER_DAEMON', 'ARBITER_TASK_BACKOFF_MS', 'ARBITER_TASK_LEASE_MS', 'ARBITER_NATIVE_RESPONSE']);

/** Unknown ARBITER_* names are probably typos; they are reported, not fatal, since the environment is shared. */
export function unknownEnv(env: NodeJS.ProcessEnv): string[] {
  const known = new Set(SETTINGS.map((s) => envName(s.name)));
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
  const settings = structuredCloneSettings(DEFAULTS);
  const sources = Object.fromEntries(SETTING_NAMES.map((n) => [n, 'default'])) as Record<keyof Settings, Source>;
  for (const { source, layer } of layers) {
    for (const [key, value] of Object.entries(layer)) {
      if (value === undefined) continue;
      (settings as any)[key] = value;
      sources[key as keyof Settings] = source;
    }
  }
  return { settings, sources };
}

function structuredCloneSettings(s: Settings): Settings {
  const out: any = {};
  for (const [k, v] of Object.entries(s)) out[k] = typeof v === 'function' ? v : structuredClone(v);
  return out;
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

/** Cross-setting checks that no single row can make. */
export function checkCombination(s: Settings): void {
  if ((s.certfile === null) !== (s.keyfile === null))
    throw new SettingError(`certfile and keyfile go together: only ${s.certfile ? 'certfile' : 'keyfile'} was given`);
  if (!s.app && !s.checkConfig && !s.printConfig)
    throw new SettingError('no app given: name one as the first argument (arbiter app.js:handler) or set "app" in a config file');
  if (s.bind.length === 0) throw new SettingError('bind is empty: give at least one address');
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
