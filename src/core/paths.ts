/** Where arbiter's own files are (running from dist/ or from the sources under tsx), and its version. */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(dir: string): string {
  while (!existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return dir;
}

export const ROOT = findRoot(path.dirname(fileURLToPath(import.meta.url)));

/** arbiter's version, from its package.json. */
export const VERSION: string = (() => {
  try {
    return String(JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version);
  } catch {
    return 'unknown';
  }
})();
