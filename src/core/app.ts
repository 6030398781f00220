/**
 * Loading `MODULE[:EXPORT]` and deciding how to call what it exports. Used by the master (to
 * validate before it binds anything) and by every worker (to serve).
 */
import { existsSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { AppLoadError, appStack, oneLine } from './errors.js';
import { closest } from './settings.js';
import { importTs } from './ts-import.js';

export type NodeHandler = (req: IncomingMessage, res: ServerResponse) => unknown;
export type FetchHandler = (request: Request) => Response | Promise<Response>;

export type HttpApp =
  | { kind: 'node'; handler: NodeHandler; picked: string }
  | { kind: 'fetch'; fetch: FetchHandler; picked: string };

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
      return createRequire(path.join(cwd, 'package.json')).resolve(spec);
    } catch {
      /* fall through to the one-line error */
    }
  }
  throw new AppLoadError(`cannot find app module "${spec}" (looked for ${base}[.js|.mjs|.cjs|.ts|.mts] and a package of that name from ${cwd})`);
}

/** Import the app module and take the named export. Throws AppLoadError with one line. */
export async function importApp(text: string, cwd: string): Promise<{ value: unknown; where: string; file: string }> {
  const spec = parseAppSpec(text);
  if (!spec.module) throw new AppLoadError(`invalid app "${text}": expected MODULE[:EXPORT], e.g. app.js:handler`);
  const file = resolveModule(spec.module, cwd);
  const where = `${spec.module}:${spec.exportName}`;
  let mod: Record<string, unknown>;
  try {
    if (TS.test(file)) {
      mod = await importTs(file);
    } else {
      mod = await import(pathToFileURL(file).href);
    }
  } catch (err) {
    throw new AppLoadError(`app module ${spec.module} failed while loading: ${oneLine(err)}`, appStack(err));
  }
  let value = mod[spec.exportName];
  // A CommonJS module seen through ESM: its exports live on `default`.
  if (value === undefined && spec.exportName !== 'default' && mod.default && typeof mod.default === 'object')
    value = (mod.default as Record<string, unknown>)[spec.exportName];
  if (value === undefined) {
    const names = exportNames(mod);
    const near = closest(spec.exportName, names);
    throw new AppLoadError(
      `app module ${spec.module} has no export "${spec.exportName}"` +
        (names.length ? ` (it exports: ${names.join(', ')})` : ' (it exports nothing)') +
        (near ? ` — did you mean "${near}"?` : ''),
    );
  }
  if (value instanceof Promise) value = await value;
  return { value, where, file };
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

const SHAPES = 'a (req, res) listener, an Express/Koa/Fastify app, a (request) => Response function, or an object with a fetch method';

/**
 * Decide how to call an HTTP app. `auto` goes by shape: an object with `fetch` is a fetch
 * app (Hono, `export default { fetch }`); Koa's `callback()` and Fastify's `routing` give a
 * node listener; a bare function of two or more parameters is a node listener (Express's
 * app takes three), and one of fewer is a fetch handler.
 */
export async function asHttpApp(value: unknown, iface: 'auto' | 'node' | 'fetch', where: string): Promise<HttpApp> {
  const wrong = (want: string) => new AppLoadError(`export ${where} is ${describe(value)}, not ${want}`);
  const obj = value as Record<string, any>;
  const hasFetch = value !== null && (typeof value === 'object' || typeof value === 'function') && typeof obj.fetch === 'function';
  if (hasFetch && iface !== 'node') {
    const fetch = obj.fetch.bind(obj) as FetchHandler;
    return { kind: 'fetch', fetch, picked: 'fetch: object with a fetch method' };
  }
  if (iface === 'fetch') {
    if (typeof value === 'function') return { kind: 'fetch', fetch: value as FetchHandler, picked: 'fetch: as configured' };
    throw wrong('a fetch app ((request) => Response, or an object with a fetch method)');
  }
  if (value && typeof value === 'object') {
    if (typeof obj.callback === 'function' && typeof obj.use === 'function')
      return { kind: 'node', handler: obj.callback() as NodeHandler, picked: 'node: Koa app (app.callback())' };
    if (typeof obj.routing === 'function' && typeof obj.ready === 'function') {
      await obj.ready();
      return { kind: 'node', handler: (req, res) => obj.routing(req, res), picked: 'node: Fastify app (app.routing)' };
    }
    throw wrong(iface === 'node' ? 'a node (req, res) listener' : SHAPES);
  }
  if (typeof value !== 'function') throw wrong(iface === 'node' ? 'a node (req, res) listener' : SHAPES);
  if (iface === 'node') return { kind: 'node', handler: value as NodeHandler, picked: 'node: as configured' };
  const fn = value as (...args: unknown[]) => unknown;
  if (fn.length >= 2) return { kind: 'node', handler: fn as NodeHandler, picked: `node: a function of ${fn.length} parameters` };
  return { kind: 'fetch', fetch: fn as FetchHandler, picked: `fetch: a function of ${fn.length} parameter${fn.length === 1 ? '' : 's'}` };
}

/** The `adapt` step of both HTTP worker classes. */
export async function adaptHttpApp(value: unknown, settings: { interface: 'auto' | 'node' | 'fetch' }, where: string): Promise<{ app: HttpApp; picked: string }> {
  const app = await asHttpApp(value, settings.interface, where);
  return { app, picked: app.picked };
}
