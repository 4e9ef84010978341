/**
 * Memory back to the system after a large config goes. V8 returns its own pages when it shrinks the heap, but
 * the buffers of a config (endpoint sets, map entries, decoded responses) live in glibc's malloc heap, which
 * keeps freed memory mapped: after a 131,000-endpoint config was replaced by a 3-endpoint one, 44 MB of it
 * stayed resident. malloc_trim(0) hands the free pages back (a few ms for a heap that size). V8 frees those
 * buffers when a full collection finds their objects dead, on its own schedule (its memory reducer runs ~8 s
 * after the allocation stops), so the heap is trimmed after each full collection for a minute after an apply,
 * and once 2 s after it.
 */
import { constants, PerformanceObserver } from 'node:perf_hooks';
import { libc } from '../runtime/libbpf.js';

/** How long after an apply full collections are followed by a trim. */
const WATCH_MS = 60_000;
/** Trims this close together would return nothing new. */
const MIN_GAP_MS = 1000;

export class MemoryReturn {
  private lastApply = Number.NEGATIVE_INFINITY;
  private timer: NodeJS.Timeout | undefined;
  private observer: PerformanceObserver | undefined;

  constructor(
    private readonly trim: ((pad: number) => number) | null = libc.mallocTrim,
    private readonly firstTrimMs = 2000,
  ) {}

  /** An apply happened: trim 2 s from now, and after the full collections of the next minute. */
  applied(): void {
    if (!this.trim) return;
    this.lastApply = performance.now();
    clearTimeout(this.timer);
    this.timer = undefined;
    this.schedule(this.firstTrimMs);
    this.observer ??= this.watchCollections();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.observer?.disconnect();
    this.observer = undefined;
  }

  private watchCollections(): PerformanceObserver {
    const observer = new PerformanceObserver((list) => {
      const major = list
        .getEntries()
        .some((e) => (e as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR);
      if (major) this.schedule(100);
    });
    observer.observe({ entryTypes: ['gc'] });
    return observer;
  }

  private schedule(ms: number): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.trim?.(0);
      this.timer = setTimeout(() => {
        this.timer = undefined;
        if (performance.now() - this.lastApply > WATCH_MS) {
          this.observer?.disconnect();
          this.observer = undefined;
        }
      }, MIN_GAP_MS);
      this.timer.unref();
    }, ms);
    this.timer.unref();
  }
}
