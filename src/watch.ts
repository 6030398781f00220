/**
 * `reload` (development): watch the app's source tree and `reloadExtraFiles`, and call back
 * once a burst of writes has settled. chokidar is loaded only when this is on.
 */
import path from 'node:path';
import type { Logger } from './core/logging.js';

/** Writes closer together than this make one reload. */
const SETTLE_MS = 200;
const IGNORED_DIRS = /(^|[/\\])(node_modules|\.git|dist)([/\\]|$)/;
const IGNORED_FILES = ['.log', '.pid', '.sock'];

export interface Watcher {
  close(): Promise<void>;
}

export async function watchCode(roots: string[], log: Logger, onChange: (files: string[]) => void): Promise<Watcher> {
  const { watch } = await import('chokidar');
  const watcher = watch(roots, {
    ignoreInitial: true,
    ignored: (p: string) => IGNORED_DIRS.test(p) || IGNORED_FILES.some((ext) => p.endsWith(ext)),
  });
  let timer: NodeJS.Timeout | null = null;
  const changed = new Set<string>();
  watcher.on('all', (_event: string, file: string) => {
    changed.add(path.relative(process.cwd(), file));
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      const files = [...changed];
      changed.clear();
      onChange(files);
    }, SETTLE_MS);
  });
  watcher.once('ready', () => log.info({ event: 'watching', roots }, `reload: watching ${roots.join(', ')}`));
  return {
    close: async () => {
      if (timer) clearTimeout(timer);
      await watcher.close();
    },
  };
}
