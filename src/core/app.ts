/**
 * Loading `MODULE[:EXPORT]` and deciding how to call what it exports, or, for a module that
 * calls listen() itself, taking its servers (script mode, ./listen.ts). Used by the master
 * (to validate before it binds anything) and by every worker (to serve).
 */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { AppLoadError, SettingError, appStack, oneLine } from './errors.js';
import { FIRST_LISTEN_MS, describeAsked, pretendListening, type Asked, type ListenCapture } from './listen.js';
import { closest } from './suggest.js';

export type NodeHandler = (req: IncomingMessage, res: ServerResponse) => unknown;
export type FetchHandler = (request: Request) => Response | Promise<Response>;

export interface AppSpec {
  module: string;
  exportName: string;
}

export function parseAppSpec(text: string): AppSpec {
  // The export comes after the last colon, unless that colon is part of a scheme or a
  // Windows drive, which arbiter does not support anyway.
  const m = /^(.*?)(?::([A-Za-z_$][\w$]*))?$/.exec(text.trim())!;
  return { module: m[1]!, exportName: m[2] ?? 'default' };
}

const EXTENSIONS = ['', '.js', '.mjs', '.cjs', '.ts', '.mts', '.cts', '/index.js', '/index.mjs', '/index.ts'];
const TS = /\.(ts|mts|cts)$/;

/** A path to a file, or a package name; returns the absolute file to import. */
export function resolveModule(spec: string, cwd: string): string {
  const looksLikePath = spec.startsWith('.') || spec.startsWith('/') || /\.(m|c)?(j|t)s$/.test(spec);
  const base = path.resolve(cwd, spec);
  for (const ext of EXTENSIONS) {
    const file = base + ext;
    if (existsSync(file) && statSync(file).isFile()) return file;
  }
  if (!looksLikePath) {
    try {
      // (node:module only here: every worker runs this file, few name their app by package)
      return process.getBuiltinModule('node:module').createRequire(path.join(cwd, 'package.json')).resolve(spec);
    } catch {
      /* fall through to the one-line error */
    }
  }
  throw new AppLoadError(`cannot find app module "${spec}" (looked for ${base}[.js|.mjs|.cjs|.ts|.mts] and a package of that name from ${cwd})`);
}


/**
 * What the module may export beside its app, run in every worker (SPEC §3): `startup()`
 * before the worker serves, `shutdown()` when a graceful stop begins, `onServer(server)`
 * once the worker's server exists.
 */
export interface Lifecycle {
  startup?: () => unknown;
  shutdown?: () => unknown;
  onServer?: (server: unknown) => unknown;
}

export const LIFECYCLE_EXPORTS = ['startup', 'shutdown', 'onServer'] as const;

/**
 * A framework's own life beside its request handler, run by the HTTP classes: `start()`
 * before serving (Fastify's `ready()`, Nest's `init()`), `close()` once a graceful stop has
 * no HTTP request left (its `onClose` hooks; both refuse requests while they close), and
 * its own http.Server, where its WebSocket plugins attach: upgrades are handed to it.
 */
export interface Framework {
  name: string;
  start(): Promise<unknown>;
  close(): Promise<unknown>;
  server(): NodeJS.EventEmitter | null;
}

/** Script mode: the module's own servers, ranked by their listen() calls. */
export class ScriptApp {
  constructor(
    readonly capture: ListenCapture,
    readonly module: string,
  ) {}

  /** What each server's first listen() asked for, in rank order. */
  get asked(): Asked[] {
    const out: Asked[] = [];
    for (const c of this.capture.calls) if (out[c.index] === undefined) out[c.index] = c.asked;
    return out;
  }

  get picked(): string {
    const asked = this.asked;
    const n = asked.length;
    return `listen: the module called listen() while loading (${n === 1 ? '' : `${n} servers: `}${asked.map(describeAsked).join(', ')})`;
  }
}

export type HttpApp =
  | { kind: 'node'; handler: NodeHandler; picked: string; framework?: Framework }
  | { kind: 'fetch'; fetch: FetchHandler; picked: string }
  | { kind: 'listen'; script: ScriptApp; picked: string };

export interface LoadedApp {
  /** The export, or a ScriptApp in script mode. */
  value: unknown;
  where: string;
  file: string;
  lifecycle: Lifecycle;
  /** Something the log should say about how the module was taken. */
  note?: string;
}

export interface LoadOptions {
  interface?: 'auto' | 'node' | 'fetch' | 'listen';
  /**
   * Watch for listen() calls (HTTP classes): `capture` stands in for listen() while the module
   * loads. `pretend` (the master's check): calls bind nothing and report success. `want`: how
   * many servers to wait for (the worker's listeners). `scripts`: the class can run a script;
   * if not, a module in script mode is a usage error naming `className`.
   */
  listen?: { capture: ListenCapture; pretend: boolean; want: number; idle?: () => boolean; scripts: boolean; className: string };
}

/**
 * Load `MODULE[:EXPORT]`: its export (or, in script mode, its servers) and its lifecycle
 * exports. Throws an AppLoadError (or a SettingError) with one line.
 */
export async function loadApp(text: string, cwd: string, o: LoadOptions = {}): Promise<LoadedApp> {
  const iface = o.interface ?? 'auto';
  const watch = iface === 'auto' || iface === 'listen' ? o.listen : undefined;
  const capture = watch?.capture ?? null;
  if (capture) {
    capture.install();
    if (watch!.pretend) capture.serve(pretendListening);
  }
  try {
    const spec = parseAppSpec(text);
    if (!spec.module) throw new AppLoadError(`invalid app "${text}": expected MODULE[:EXPORT], e.g. app.js:handler`);
    const file = resolveModule(spec.module, cwd);
    const where = `${spec.module}:${spec.exportName}`;
    const mod = await importModule(file, spec.module);
    const lifecycle = lifecycleOf(mod, spec.module);
    let value = exportOf(mod, spec.exportName);
    if (value instanceof Promise) value = await value;
    const exported = iface !== 'listen' && value !== undefined && (iface !== 'auto' || !capture || httpShape(value) !== null);
    if (exported || !capture) {
      if (value === undefined) throw missingExport(mod, spec);
      const calls = capture?.calls.length ?? 0;
      capture?.uninstall();
      const note = calls
        ? `the module also called listen() while loading; arbiter serves its export ${where} and that server does not listen`
        : undefined;
      return { value, where, file, lifecycle, note };
    }
    // Script mode, or a module that may be one: wait for its servers.
    const servers = await capture.settle({ want: watch!.scripts ? watch!.want : 1, firstMs: FIRST_LISTEN_MS, idle: watch!.idle });
    if (servers === 0) {
      if (iface === 'listen') throw new AppLoadError(`app module ${spec.module} did not call listen() while loading (interface listen)`);
      if (value === undefined) throw missingExport(mod, spec, ' and did not call listen() while loading');
      throw new AppLoadError(`export ${where} is ${describe(value)}, not ${SHAPES}; and the module did not call listen() while loading`);
    }
    if (!watch!.scripts) {
      throw new SettingError(
        `app module ${spec.module} calls listen() itself (script mode, interface listen), which only -k http can run: ` +
          `${watch!.className} serves with its own engine, not the script's http.Server; export the app instead (e.g. export default app)`,
      );
    }
    return { value: new ScriptApp(capture, spec.module), where, file, lifecycle };
  } catch (err) {
    capture?.uninstall();
    throw err;
  }
}

async function importModule(file: string, name: string): Promise<Record<string, unknown>> {
  try {
    // The TypeScript loader's module (and tsx, on Node 20) only for a TypeScript app.
    if (TS.test(file)) return await (await import('./ts-import.js')).importTs(file);
    return await import(pathToFileURL(file).href);
  } catch (err) {
    throw new AppLoadError(`app module ${name} failed while loading: ${oneLine(err)}`, appStack(err));
  }
}

function exportOf(mod: Record<string, unknown>, name: string): unknown {
  const value = mod[name];
  // A CommonJS module seen through ESM: its exports live on `default`.
  if (value === undefined && name !== 'default' && mod.default && typeof mod.default === 'object') return (mod.default as Record<string, unknown>)[name];
  return value;
}

function missingExport(mod: Record<string, unknown>, spec: AppSpec, tail = ''): AppLoadError {
  const names = exportNames(mod);
  const near = closest(spec.exportName, names);
  return new AppLoadError(
    `app module ${spec.module} has no export "${spec.exportName}"` +
      (names.length ? ` (it exports: ${names.join(', ')})` : ' (it exports nothing)') +
      tail +
      (near ? ` — did you mean "${near}"?` : ''),
  );
}

/** The lifecycle exports: named exports, or (CommonJS) properties of module.exports. */
function lifecycleOf(mod: Record<string, unknown>, name: string): Lifecycle {
  const out: Lifecycle = {};
  for (const key of LIFECYCLE_EXPORTS) {
    const v = exportOf(mod, key);
    if (v === undefined) continue;
    if (typeof v !== 'function') throw new AppLoadError(`app module ${name} exports ${key}, but it is ${describe(v)}, not a function`);
    out[key] = v as () => unknown;
  }
  return out;
}

function exportNames(mod: Record<string, unknown>): string[] {
  const names = Object.keys(mod).filter((k) => k !== 'module.exports');
  if (mod.default && typeof mod.default === 'object' && !('fetch' in (mod.default as object)))
    for (const k of Object.keys(mod.default as object)) if (!names.includes(k)) names.push(k);
  return names;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'function') return `a function of ${value.length} parameter${value.length === 1 ? '' : 's'}`;
  if (typeof value === 'object') return `an object with keys ${Object.keys(value).slice(0, 6).join(', ') || '(none)'}`;
  return `${typeof value} ${JSON.stringify(value)}`;
}

const SHAPES = 'a (req, res) listener, an Express/Koa/Fastify/NestJS app, a (request) => Response function, or an object with a fetch method';

function fastify(obj: Record<string, any>): Framework {
  return { name: 'Fastify', start: () => obj.ready(), close: () => obj.close(), server: () => obj.server ?? null };
}

function nest(obj: Record<string, any>): Framework {
  return { name: 'NestJS', start: () => obj.init(), close: () => obj.close(), server: () => obj.getHttpServer?.() ?? null };
}

/**
 * How to call an HTTP app, by shape, or null for none. An object with `fetch` is a fetch app
 * (Hono, `export default { fetch }`); Koa's `callback()`, Fastify's `routing` and a NestJS
 * application's adapter give a node listener; a bare function of two or more parameters is
 * a node listener (Express's app takes three), and one of fewer is a fetch handler.
 */
function httpShape(value: unknown): HttpApp | null {
  const obj = value as Record<string, any>;
  if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return null;
  if (typeof obj.fetch === 'function') return { kind: 'fetch', fetch: obj.fetch.bind(obj) as FetchHandler, picked: 'fetch: object with a fetch method' };
  if (typeof value === 'object') {
    if (typeof obj.callback === 'function' && typeof obj.use === 'function')
      return { kind: 'node', handler: obj.callback() as NodeHandler, picked: 'node: Koa app (app.callback())' };
    if (typeof obj.routing === 'function' && typeof obj.ready === 'function')
      return { kind: 'node', handler: (req, res) => obj.routing(req, res), picked: 'node: Fastify app (app.routing)', framework: fastify(obj) };
    if (typeof obj.getHttpAdapter === 'function' && typeof obj.init === 'function' && typeof obj.close === 'function') {
      // The adapter's own app (Express's, or Fastify's) serves; Nest's init() fills it in.
      const inner = obj.getHttpAdapter().getInstance() as Record<string, any> & NodeHandler;
      const handler: NodeHandler = typeof inner.routing === 'function' ? (req, res) => inner.routing(req, res) : inner;
      return { kind: 'node', handler, picked: 'node: NestJS app (its HTTP adapter)', framework: nest(obj) };
    }
    return null;
  }
  const fn = value as (...args: unknown[]) => unknown;
  if (fn.length >= 2) return { kind: 'node', handler: fn as NodeHandler, picked: `node: a function of ${fn.length} parameters` };
  return { kind: 'fetch', fetch: fn as FetchHandler, picked: `fetch: a function of ${fn.length} parameter${fn.length === 1 ? '' : 's'}` };
}

/** Decide how to call an HTTP app, as `interface` says; an AppLoadError names what was found. */
export function asHttpApp(value: unknown, iface: 'auto' | 'node' | 'fetch' | 'listen', where: string): HttpApp {
  if (value instanceof ScriptApp) return { kind: 'listen', script: value, picked: value.picked };
  const wrong = (want: string) => new AppLoadError(`export ${where} is ${describe(value)}, not ${want}`);
  const shape = httpShape(value);
  if (iface === 'fetch') {
    if (shape?.kind === 'fetch') return shape;
    if (typeof value === 'function') return { kind: 'fetch', fetch: value as FetchHandler, picked: 'fetch: as configured' };
    throw wrong('a fetch app ((request) => Response, or an object with a fetch method)');
  }
  if (iface === 'node') {
    if (shape?.kind === 'node') return shape;
    if (typeof value === 'function') return { kind: 'node', handler: value as NodeHandler, picked: 'node: as configured' };
    throw wrong('a node (req, res) listener');
  }
  if (!shape) throw wrong(SHAPES);
  return shape;
}

/** The `adapt` step of both HTTP worker classes. */
export async function adaptHttpApp(value: unknown, settings: { interface: 'auto' | 'node' | 'fetch' | 'listen' }, where: string): Promise<{ app: HttpApp; picked: string }> {
  const app = asHttpApp(value, settings.interface, where);
  return { app, picked: app.picked };
}
