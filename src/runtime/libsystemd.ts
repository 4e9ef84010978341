/**
 * libsystemd.so.0 through koffi, loaded once for everything that talks to systemd's notify socket (states,
 * the file-descriptor store). Present wherever systemd is PID 1; null when it cannot be loaded.
 */
import koffi, { type LibraryHandle } from 'koffi';

let handle: LibraryHandle | null | undefined;

export function libsystemd(): LibraryHandle | null {
  if (handle === undefined) {
    try {
      handle = koffi.load('libsystemd.so.0');
    } catch {
      handle = null;
    }
  }
  return handle;
}
