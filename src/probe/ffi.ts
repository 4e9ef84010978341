/**
 * libbpf bindings only the probe needs (ring buffer, program info, stats). Kept here
 * rather than in src/runtime/libbpf.ts so the two can evolve without edit clashes;
 * koffi.load of the same soname shares the one dlopen'ed libbpf.so.1.
 */
import koffi from 'koffi';

const lib = koffi.load('libbpf.so.1');

/** int (*ring_buffer_sample_fn)(void *ctx, void *data, size_t size) */
export const RingBufferSampleFn = koffi.proto('int kmesh_ring_buffer_sample_fn(void *ctx, void *data, size_t size)');
const RingBufferPtr = koffi.pointer('kmesh_ring_buffer', koffi.opaque());

/** An opaque libbpf pointer as koffi hands it out. */
export type Handle = object;

export const probeLib = {
  ringBufferNew: lib.func(
    'kmesh_ring_buffer *ring_buffer__new(int map_fd, kmesh_ring_buffer_sample_fn *cb, void *ctx, void *opts)',
  ) as (mapFd: number, cb: unknown, ctx: null, opts: null) => Handle | null,
  /** Non-blocking: drains what is in the ring now; returns the count or -errno. */
  ringBufferConsume: lib.func('int ring_buffer__consume(kmesh_ring_buffer *rb)') as (rb: Handle) => number,
  ringBufferFree: lib.func('void ring_buffer__free(kmesh_ring_buffer *rb)') as (rb: Handle) => void,
  objGetInfoByFd: lib.func('int bpf_obj_get_info_by_fd(int fd, _Inout_ void *info, _Inout_ uint32_t *len)') as (
    fd: number,
    info: Buffer,
    len: number[],
  ) => number,
  numPossibleCpus: lib.func('int libbpf_num_possible_cpus(void)') as () => number,
  /** BPF_ENABLE_STATS: run_cnt/run_time_ns are collected while the returned fd is open. */
  enableStats: lib.func('int bpf_enable_stats(int type)') as (type: number) => number,
};

void RingBufferPtr;

/** Copies `size` bytes at a pointer handed to a callback (valid only during the call). */
export function copyOut(ptr: unknown, size: number): Buffer {
  return Buffer.from(koffi.view(ptr, size).slice(0));
}

export type SampleFn = (ctx: unknown, data: unknown, size: number | bigint) => number;

/** A C-callable pointer to `fn`; valid until unregisterSample. Called only on this thread, inside consume. */
export const registerSample = (fn: SampleFn): bigint => koffi.register(fn, koffi.pointer(RingBufferSampleFn));
export const unregisterSample = (cb: bigint): void => koffi.unregister(cb);
