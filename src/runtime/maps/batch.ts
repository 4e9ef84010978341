/**
 * Map updates gathered into BPF_MAP_UPDATE_BATCH calls: a full push writes ~13,000 entries, and one syscall
 * (through koffi) per entry was the larger part of its apply. Entries are copied into two packed buffers,
 * reused from batch to batch.
 */
import type { MapAccess } from './datapath-maps.js';

/** Entries per syscall: large enough to amortise the call, small enough to slice the work between them. */
export const BATCH_ENTRIES = 2048;

export class MapBatch {
  private readonly keys: Buffer;
  private readonly values: Buffer;
  private count = 0;

  constructor(
    private readonly map: Pick<MapAccess, 'updateBatch'>,
    private readonly keySize: number,
    private readonly valueSize: number,
  ) {
    this.keys = Buffer.alloc(keySize * BATCH_ENTRIES);
    this.values = Buffer.alloc(valueSize * BATCH_ENTRIES);
  }

  get full(): boolean {
    return this.count === BATCH_ENTRIES;
  }

  /**
   * Adds one entry; `value` is copied from `from` (valueSize bytes). Returns the entry's key slot for the
   * caller to fill in place (it is sent at the next flush).
   */
  add(value: Buffer, from = 0): Buffer {
    if (this.full) this.flush();
    value.copy(this.values, this.count * this.valueSize, from, from + this.valueSize);
    const key = this.keys.subarray(this.count * this.keySize, (this.count + 1) * this.keySize);
    this.count++;
    return key;
  }

  /** Writes what was added; throws (some entries may be written) on failure. */
  flush(): void {
    const n = this.count;
    this.count = 0;
    this.map.updateBatch(this.keys.subarray(0, n * this.keySize), this.values.subarray(0, n * this.valueSize), n);
  }
}
