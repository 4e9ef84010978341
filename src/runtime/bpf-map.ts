import { closeSync } from 'node:fs';
import { basename } from 'node:path';
import { EINVAL, ENOENT, ENOTSUPP, EOPNOTSUPP } from './errno.js';
import { check } from './errors.js';
import { libbpf } from './libbpf.js';

export const BPF_ANY = 0;
export const BPF_NOEXIST = 1;

/** enum bpf_map_type values whose lookups return one value per possible CPU (linux/bpf.h, stable UAPI). */
const PER_CPU_TYPES = new Set([
  5, // PERCPU_HASH
  6, // PERCPU_ARRAY
  10, // LRU_PERCPU_HASH
  21, // PERCPU_CGROUP_STORAGE
]);

let possibleCpus = 0;

/** CPUs a per-CPU value has a copy for (possible, not online: the kernel sizes by possible). */
export function numPossibleCpus(): number {
  if (possibleCpus === 0) possibleCpus = check('libbpf_num_possible_cpus', libbpf.numPossibleCpus());
  return possibleCpus;
}

/** Offsets in struct bpf_map_info (linux/bpf.h, stable UAPI); test/unit/probe-btf.test.ts checks them. */
export const MAP_INFO = { size: 80, type: 0, keySize: 8, valueSize: 12, maxEntries: 16, mapFlags: 20 } as const;

/** errnos of a kernel without BPF_MAP_UPDATE_BATCH for a map (EINVAL: no such command, before 5.6; ENOTSUPP). */
const NO_BATCH_UPDATE = new Set([EINVAL, EOPNOTSUPP, ENOTSUPP]);

/** Entries per batch; a batch must hold a whole hash bucket, far smaller than this. */
const BATCH = 1024;

/** What a map is, as libbpf reports it after the load. */
export interface MapDefinition {
  name: string;
  fd: number;
  /** enum bpf_map_type */
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
}

/**
 * A BPF map by fd: raw key/value buffers; the codecs in maps/ give them meaning. For
 * per-CPU maps a looked-up value holds every CPU's copy, each `valueStride` bytes apart.
 */
export class BpfMap {
  readonly name: string;
  readonly fd: number;
  readonly type: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly perCpu: boolean;
  /** Bytes from one CPU's copy of a value to the next: the kernel rounds each copy up to 8. */
  readonly valueStride: number;
  /** Bytes a lookup returns: valueSize, or a stride per possible CPU for per-CPU maps. */
  readonly valueBytes: number;
  /** Cleared when the kernel turns BPF_MAP_UPDATE_BATCH down for this map: entry by entry from then on. */
  private batchUpdates = true;

  constructor(
    def: MapDefinition,
    /** Opened by this object (openPinned): close() releases the fd. */
    private readonly ownsFd = false,
  ) {
    this.name = def.name;
    this.fd = def.fd;
    this.type = def.type;
    this.keySize = def.keySize;
    this.valueSize = def.valueSize;
    this.maxEntries = def.maxEntries;
    this.perCpu = PER_CPU_TYPES.has(def.type);
    this.valueStride = this.perCpu ? Math.ceil(def.valueSize / 8) * 8 : def.valueSize;
    this.valueBytes = this.perCpu ? this.valueStride * numPossibleCpus() : def.valueSize;
  }

  /** A pinned map opened by path, its definition read from the kernel; close() releases the fd. */
  static openPinned(path: string): BpfMap {
    const fd = check(`open ${path}`, libbpf.objGet(path));
    try {
      const info = Buffer.alloc(MAP_INFO.size);
      check(`info ${path}`, libbpf.objGetInfoByFd(fd, info, [info.length]));
      const def = {
        name: basename(path),
        fd,
        type: info.readUInt32LE(MAP_INFO.type),
        keySize: info.readUInt32LE(MAP_INFO.keySize),
        valueSize: info.readUInt32LE(MAP_INFO.valueSize),
        maxEntries: info.readUInt32LE(MAP_INFO.maxEntries),
      };
      return new BpfMap(def, true);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  close(): void {
    if (this.ownsFd) closeSync(this.fd);
  }

  update(key: Buffer, value: Buffer, flags = BPF_ANY): void {
    check(`update ${this.name}`, libbpf.mapUpdateElem(this.fd, key, value, flags));
  }

  /**
   * `count` entries packed back to back in `keys` and `values`, in one BPF_MAP_UPDATE_BATCH syscall (one
   * update per entry on kernels without it). On failure some of the entries may be written: the caller undoes
   * them all (deleting an entry that is not there is harmless).
   */
  updateBatch(keys: Buffer, values: Buffer, count: number): void {
    if (count === 0) return;
    if (this.batchUpdates && !this.perCpu) {
      const done = [count];
      const rc = libbpf.mapUpdateBatch(this.fd, keys, values, done, null);
      if (rc === 0) return;
      if (done[0] !== 0 || !NO_BATCH_UPDATE.has(-rc)) check(`batch update ${this.name}`, rc);
      this.batchUpdates = false;
    }
    for (let i = 0; i < count; i++) {
      this.update(
        keys.subarray(i * this.keySize, (i + 1) * this.keySize),
        values.subarray(i * this.valueSize, (i + 1) * this.valueSize),
      );
    }
  }

  lookup(key: Buffer): Buffer | null {
    const value = Buffer.alloc(this.valueBytes);
    const rc = libbpf.mapLookupElem(this.fd, key, value);
    if (rc === -ENOENT) return null;
    check(`lookup ${this.name}`, rc);
    return value;
  }

  /** Returns false when the key was not there. */
  delete(key: Buffer): boolean {
    const rc = libbpf.mapDeleteElem(this.fd, key);
    if (rc === -ENOENT) return false;
    check(`delete ${this.name}`, rc);
    return true;
  }

  *keys(): Generator<Buffer> {
    let prev: Buffer | null = null;
    for (;;) {
      const next = Buffer.alloc(this.keySize);
      const rc = libbpf.mapGetNextKey(this.fd, prev, next);
      if (rc === -ENOENT) return;
      check(`iterate ${this.name}`, rc);
      yield next;
      prev = next;
    }
  }

  /** Every entry; entries deleted during the walk are skipped. */
  entries(): Array<[Buffer, Buffer]> {
    const out: Array<[Buffer, Buffer]> = [];
    for (const key of this.keys()) {
      const value = this.lookup(key);
      if (value) out.push([key, value]);
    }
    return out;
  }

  /**
   * Every entry of a hash map read with BPF_MAP_LOOKUP_BATCH: a few syscalls for the
   * whole map where a key-by-key walk takes two per entry. `each` gets views into the
   * batch buffers (copy what is kept).
   */
  forEachBatched(each: (key: Buffer, value: Buffer) => void): void {
    const keys = Buffer.alloc(BATCH * this.keySize);
    const values = Buffer.alloc(BATCH * this.valueBytes);
    // the batch token is the kernel's bucket cursor (a u32); 8 bytes leave room
    let inBatch: Buffer | null = null;
    for (;;) {
      const outBatch = Buffer.alloc(8);
      const count = [BATCH];
      const rc = libbpf.mapLookupBatch(this.fd, inBatch, outBatch, keys, values, count, null);
      if (rc < 0 && rc !== -ENOENT) check(`batch lookup ${this.name}`, rc);
      const n = count[0] ?? 0;
      for (let i = 0; i < n; i++) {
        each(
          keys.subarray(i * this.keySize, (i + 1) * this.keySize),
          values.subarray(i * this.valueBytes, (i + 1) * this.valueBytes),
        );
      }
      if (rc === -ENOENT) return;
      inBatch = outBatch;
    }
  }
}
