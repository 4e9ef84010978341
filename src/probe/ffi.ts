/**
 * Foreign calls only the probe needs: stats and batch lookups from libbpf, mmap for
 * the ring buffer from libc. Kept here rather than in src/runtime/libbpf.ts so the
 * two files can evolve without edit clashes; koffi.load of the same soname shares the
 * one dlopen'ed library.
 */
import koffi from 'koffi';

const lib = koffi.load('libbpf.so.1');
const c = koffi.load('libc.so.6');

export const probeLib = {
  numPossibleCpus: lib.func('int libbpf_num_possible_cpus(void)') as () => number,
  /** BPF_MAP_LOOKUP_BATCH; -ENOENT (with `count` entries filled) after the last batch. */
  mapLookupBatch: lib.func(
    'int bpf_map_lookup_batch(int fd, void *in_batch, _Out_ void *out_batch, _Out_ void *keys, _Out_ void *values, _Inout_ uint32_t *count, void *opts)',
  ) as (
    fd: number,
    inBatch: Buffer | null,
    outBatch: Buffer,
    keys: Buffer,
    values: Buffer,
    count: number[],
    opts: null,
  ) => number,
  /** BPF_ENABLE_STATS: run_cnt/run_time_ns are collected while the returned fd is open. */
  enableStats: lib.func('int bpf_enable_stats(int type)') as (type: number) => number,
};

const MAP_SHARED = 1;
const MAP_FAILED = 0xffffffffffffffffn;
const mmap = c.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)') as (
  addr: null,
  length: number,
  prot: number,
  flags: number,
  fd: number,
  offset: number,
) => unknown;

export const libc = {
  getpagesize: c.func('int getpagesize(void)') as () => number,
  /** MAP_SHARED mapping of an fd; null on failure. */
  mmapShared(length: number, prot: number, fd: number, offset: number): unknown {
    const ptr = mmap(null, length, prot, MAP_SHARED, fd, offset);
    return ptr === null || koffi.address(ptr) === MAP_FAILED ? null : ptr;
  },
  munmap: c.func('int munmap(void *addr, size_t length)') as (addr: unknown, length: number) => number,
};

/** An ArrayBuffer over mapped memory, no copy; invalid after munmap. */
export const mapView = (ptr: unknown, len: number): ArrayBuffer => koffi.view(ptr, len);
