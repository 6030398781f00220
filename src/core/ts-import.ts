/**
 * Importing a TypeScript file (an app, a config file) without a build step. Node that
 * strips types itself (>= 22.18, 23.6) imports an ES module written in TypeScript natively
 * (a `.mts`, or a `.ts` in a `"type": "module"` package); where that fails for a reason of
 * loading, never of running (syntax only the TypeScript compiler knows, `./x.js` naming a
 * `x.ts`, a `.ts` file under node_modules), and on Node 20, tsx's loader does it. Load
 * failures happen before any module of the graph runs, so trying again runs nothing twice.
 * A `.ts` file of a CommonJS package goes to tsx at once: Node would load it as CommonJS,
 * and the `import` lines TypeScript users write would not parse.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const NATIVE = typeof (process.features as { typescript?: unknown }).typescript === 'string';

/** Codes of a native import that tsx may still load. */
const TSX_MAY_LOAD = new Set([
  'ERR_UNSUPPORTED_TYPESCRIPT_SYNTAX',
  'ERR_INVALID_TYPESCRIPT_SYNTAX',
  'ERR_MODULE_NOT_FOUND',
  'ERR_UNSUPPORTED_DIR_IMPORT',
  'ERR_UNKNOWN_FILE_EXTENSION',
  'ERR_UNSUPPORTED_NODE_MODULES_TYPE_STRIPPING',
  'ERR_REQUIRE_ESM',
]);

/** Which loader imports TypeScript here: `node` (native type stripping) or `tsx`. */
export const tsLoader: 'node' | 'tsx' = NATIVE ? 'node' : 'tsx';

/** The `type` of the package.json nearest to `dir`. */
function packageType(dir: string): string {
  for (let d = dir; ; d = path.dirname(d)) {
    const pkg = path.join(d, 'package.json');
    if (existsSync(pkg)) {
      try {
        return String(JSON.parse(readFileSync(pkg, 'utf8')).type ?? 'commonjs');
      } catch {
        return 'commonjs';
      }
    }
    if (path.dirname(d) === d) return 'commonjs';
  }
}

/** Node would load this file as an ES module. */
function nativeEsm(file: string): boolean {
  return file.endsWith('.mts') || (file.endsWith('.ts') && packageType(path.dirname(file)) === 'module');
}

export async function importTs(file: string): Promise<Record<string, unknown>> {
  const url = pathToFileURL(file).href;
  if (NATIVE && nativeEsm(file)) {
    try {
      return await import(url);
    } catch (err) {
      if (!TSX_MAY_LOAD.has((err as NodeJS.ErrnoException)?.code ?? '')) throw err;
    }
  }
  let tsx: typeof import('tsx/esm/api');
  try {
    tsx = await import('tsx/esm/api');
  } catch {
    throw new Error(`loading ${file} needs TypeScript support: Node >= 22.18, or the tsx package (npm install tsx)`);
  }
  return tsx.tsImport(url, import.meta.url);
}
