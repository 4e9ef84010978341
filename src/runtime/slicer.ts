/**
 * Long work cut into turns of the event loop: between two turns timers, scrapes, D-Bus calls and incoming
 * xDS frames run, so a large apply never blocks them for long (bench/xds measures the loop's delay).
 */
import { performance } from 'node:perf_hooks';

/** Work between two turns of the event loop. */
const SLICE_MS = 10;

/** Lets everything queued on the event loop run first. */
export const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export class Slicer {
  private since = performance.now();

  /** Yields to the event loop once the current turn has run SLICE_MS; cheap to call often. */
  async next(): Promise<void> {
    if (performance.now() - this.since < SLICE_MS) return;
    await nextTurn();
    this.since = performance.now();
  }
}
