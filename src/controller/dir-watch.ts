/**
 * inotify on the directory that holds a path (cgroupfs reports mkdir and rmdir there): a registered
 * cgroup that is created or removed is seen at once, not at the next rescan.
 */
import { existsSync, type FSWatcher, watch } from 'node:fs';
import { dirname } from 'node:path';

/**
 * Calls onChange whenever an entry appears in or leaves the directory holding `path`. While that
 * directory does not exist, its nearest existing ancestor is watched instead, and the watch moves down
 * as the missing levels appear. Returns the unwatch.
 */
export function watchPathParent(path: string, onChange: () => void): () => void {
  const target = dirname(path);
  let watcher: FSWatcher | undefined;
  let watched = '';
  let closed = false;
  const arm = (): void => {
    watcher?.close();
    watcher = undefined;
    if (closed) return;
    watched = target;
    while (!existsSync(watched) && watched !== dirname(watched)) watched = dirname(watched);
    try {
      watcher = watch(watched, { persistent: false }, onEvent);
      watcher.on('error', arm);
    } catch {
      watcher = undefined; // unwatchable (gone meanwhile): the rescan timer still covers it
    }
  };
  const onEvent = (): void => {
    if (watched !== target || !existsSync(target)) arm();
    onChange();
  };
  arm();
  return () => {
    closed = true;
    watcher?.close();
  };
}
