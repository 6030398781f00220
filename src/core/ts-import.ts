/**
 * Importing a TypeScript file (an app, a config file) without a build step. Node that
 * strips types itself (>= 22.18, 23.6) imports it natively; where that fails for a reason
 * of loading, never of running (syntax only the TypeScript compiler knows, `./x.js` naming a
 * `x.ts`, a `.ts` file under node_modules), and on Node 20, tsx's loader does it. Load
 * failures happen before any module of the graph runs, so trying again runs nothing twice.
 */
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

export async function importTs(file: string): Promise<Record<string, unknown>> {
  const url = pathToFileURL(file).href;
  if (NATIVE) {
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
