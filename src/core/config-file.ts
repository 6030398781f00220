/**
 * Finding and loading the config file (cosmiconfig), and checking every key against the
 * settings table. Both processes read it: the master for its settings and hooks, a worker
 * for the hooks that run in it.
 */
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Loader } from 'cosmiconfig';
import { SettingError, firstLine } from './errors.js';
import { BY_NAME, parseValue, unknownSetting, type Settings } from './settings.js';

/** Raw values from one source, already typed by the table. */
export type Layer = Partial<Record<keyof Settings, unknown>>;

/** Names searched for, in this order, from the directory up to the project root. */
export const SEARCH_PLACES = [
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
  // `arbiter -c arbiter.conf.ts` is how people write it (the Gunicorn habit): found as well.
  'arbiter.conf.ts',
  'arbiter.conf.mts',
  'arbiter.conf.js',
  'arbiter.conf.mjs',
  'arbiter.conf.cjs',
  'arbiter.conf.json',
  'arbiter.conf.yaml',
  'arbiter.conf.yml',
];

/** Loads TypeScript config files without a build step (ts-import.ts). */
// Loaded with a .ts config only, as by core/app.ts with a .ts app.
const loadTs: Loader = async (filepath) => unwrapModule(await (await import('./ts-import.js')).importTs(filepath));

/**
 * Loads JavaScript config files afresh every time: cosmiconfig's own loader import()s them,
 * and Node caches a module by URL for the life of the process, so a HUP would keep reading
 * the file as it was at start. A new query string is a new module (each HUP leaves the old
 * one in the cache: config files are small); CommonJS is also dropped from require's cache.
 */
let loads = 0;
const loadJsFresh: Loader = async (filepath) => {
  const file = realpathSync(filepath);
  delete createRequire(import.meta.url).cache[file];
  const mod = await import(`${pathToFileURL(file).href}?load=${++loads}`);
  return unwrapModule(mod);
};

function unwrapModule(mod: any): unknown {
  // An ES module's default export, or a CommonJS module.exports seen through ESM interop.
  let value = mod && typeof mod === 'object' && 'default' in mod ? mod.default : mod;
  if (value && typeof value === 'object' && 'default' in value && Object.keys(value).length === 1) value = value.default;
  return value;
}

async function explorer() {
  const { cosmiconfig } = await import('cosmiconfig');
  return cosmiconfig('arbiter', {
    searchStrategy: 'project',
    loaders: { '.ts': loadTs, '.mts': loadTs, '.cts': loadTs, '.js': loadJsFresh, '.mjs': loadJsFresh, '.cjs': loadJsFresh },
    searchPlaces: SEARCH_PLACES,
  });
}

/**
 * Whether a search could find anything: a file of SEARCH_PLACES, or a package.json with an
 * `arbiter` key, in `cwd` or above it up to the project root. Most starts have no config file,
 * and this look (a few stat calls) spares them loading cosmiconfig and its YAML parser. It
 * looks at least as far as cosmiconfig's `project` strategy does; when it sees a candidate,
 * cosmiconfig searches and decides.
 */
function mayHaveConfig(cwd: string): boolean {
  for (let dir = path.resolve(cwd); ; ) {
    for (const name of SEARCH_PLACES) {
      if (name === 'package.json') continue;
      if (existsSync(path.join(dir, name))) return true;
    }
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        return Object.hasOwn(JSON.parse(readFileSync(pkg, 'utf8')) ?? {}, 'arbiter');
      } catch {
        return true; // let cosmiconfig say what is wrong with it
      }
    }
    const up = path.dirname(dir);
    if (up === dir) return false;
    dir = up;
  }
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
      result = await (await explorer()).load(file);
    } catch (err) {
      throw new SettingError(`cannot load config file ${file}: ${firstLine(err)}`);
    }
  } else if (!mayHaveConfig(cwd)) {
    result = null;
  } else {
    try {
      result = await (await explorer()).search(cwd);
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
