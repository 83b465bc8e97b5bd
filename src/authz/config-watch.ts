/**
 * Notices when a config file or a file it names changes. Directories are watched, not files:
 * an editor's save, `mv` over the file and Kubernetes' ConfigMap update (a new `..2026_…`
 * directory, then the `..data` symlink renamed over, so every file's inode changes at once)
 * all show up as events in the file's directory, where a watch on the old inode would go
 * silent. A symbolic link's target directory is watched too. Events are coalesced: one call
 * after things have been quiet for `quietMs`.
 */

import { watch, realpathSync, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Logger } from '../telemetry/log.js';

export interface FileWatch {
  close(): void;
}

export function watchFiles(paths: readonly string[], onChange: () => void, log: Logger, quietMs = 100): FileWatch {
  // Directory → the names in it that matter.
  const directories = new Map<string, Set<string>>();
  const add = (path: string) => {
    const dir = dirname(path);
    let names = directories.get(dir);
    if (!names) directories.set(dir, (names = new Set()));
    names.add(basename(path));
  };
  for (const path of paths) {
    add(path);
    try {
      const real = realpathSync(path);
      if (real !== path) add(real);
    } catch {
      // Not there (yet): its directory is watched for it.
    }
  }
  let timer: NodeJS.Timeout | undefined;
  const changed = () => {
    clearTimeout(timer);
    timer = setTimeout(onChange, quietMs);
  };
  const watchers: FSWatcher[] = [];
  for (const [dir, names] of directories) {
    try {
      const watcher = watch(dir, { persistent: false }, (_event, name) => {
        // `..data`, `..2026_…`, `..data_tmp`: a ConfigMap update swapping every file at once.
        if (name === null || names.has(name) || name.startsWith('..')) changed();
      });
      watcher.on('error', () => log.warn('config_watch_failed', { directory: dir }));
      watchers.push(watcher);
    } catch {
      log.warn('config_watch_failed', { directory: dir });
    }
  }
  return {
    close() {
      clearTimeout(timer);
      for (const watcher of watchers) watcher.close();
    },
  };
}
