/**
 * The system libbpf (libbpf.so.1) and the few libc calls next to it, bound with koffi
 * once for the whole process. Everything kernel-facing in user space goes through
 * here; libbpf 1.x returns negative errno codes directly.
 */
import koffi from 'koffi';

const lib = koffi.load('libbpf.so.1');
const c = koffi.load('libc.so.6');

const ProgLoadOpts = koffi.struct('kmesh_bpf_prog_load_opts', {
  sz: 'size_t',
  attempts: 'int',
  expected_attach_type: 'int',
  prog_btf_fd: 'uint32_t',
  prog_flags: 'uint32_t',
  prog_ifindex: 'uint32_t',
  kern_version: 'uint32_t',
  attach_btf_id: 'uint32_t',
  attach_prog_fd: 'uint32_t',
  attach_btf_obj_fd: 'uint32_t',
  fd_array: 'void *',
  func_info: 'void *',
  func_info_cnt: 'uint32_t',
  func_info_rec_size: 'uint32_t',
  line_info: 'void *',
  line_info_cnt: 'uint32_t',
  line_info_rec_size: 'uint32_t',
  log_level: 'uint32_t',
  log_size: 'uint32_t',
  log_buf: 'void *',
});

/** struct bpf_prog_load_opts as koffi takes it (only what the feature checks set). */
export interface ProgLoadOptions {
  expected_attach_type: number;
  log_level: number;
  log_size: number;
  log_buf: Buffer;
}

// the opaque pointer types the signatures below name
koffi.pointer('bpf_object', koffi.opaque());
koffi.pointer('bpf_program', koffi.opaque());
koffi.pointer('bpf_map', koffi.opaque());

/** An opaque libbpf pointer as koffi hands it out. */
export type Handle = object;

export const libbpf = {
  majorVersion: lib.func('int libbpf_major_version(void)') as () => number,
  minorVersion: lib.func('int libbpf_minor_version(void)') as () => number,
  objectOpenFile: lib.func('bpf_object *bpf_object__open_file(const char *path, void *opts)') as (
    path: string,
    opts: null,
  ) => Handle | null,
  objectLoad: lib.func('int bpf_object__load(bpf_object *obj)') as (obj: Handle) => number,
  objectClose: lib.func('void bpf_object__close(bpf_object *obj)') as (obj: Handle) => void,
  objectNextProgram: lib.func('bpf_program *bpf_object__next_program(bpf_object *obj, bpf_program *prev)') as (
    obj: Handle,
    prev: Handle | null,
  ) => Handle | null,
  objectNextMap: lib.func('bpf_map *bpf_object__next_map(bpf_object *obj, bpf_map *prev)') as (
    obj: Handle,
    prev: Handle | null,
  ) => Handle | null,
  programName: lib.func('const char *bpf_program__name(bpf_program *prog)') as (prog: Handle) => string,
  programFd: lib.func('int bpf_program__fd(bpf_program *prog)') as (prog: Handle) => number,
  programExpectedAttachType: lib.func('int bpf_program__expected_attach_type(bpf_program *prog)') as (
    prog: Handle,
  ) => number,
  programSectionName: lib.func('const char *bpf_program__section_name(bpf_program *prog)') as (prog: Handle) => string,
  programSetAutoload: lib.func('int bpf_program__set_autoload(bpf_program *prog, bool autoload)') as (
    prog: Handle,
    autoload: boolean,
  ) => number,
  mapName: lib.func('const char *bpf_map__name(bpf_map *map)') as (map: Handle) => string,
  mapType: lib.func('int bpf_map__type(bpf_map *map)') as (map: Handle) => number,
  mapFlags: lib.func('uint32_t bpf_map__map_flags(bpf_map *map)') as (map: Handle) => number,
  mapFd: lib.func('int bpf_map__fd(bpf_map *map)') as (map: Handle) => number,
  mapKeySize: lib.func('uint32_t bpf_map__key_size(bpf_map *map)') as (map: Handle) => number,
  mapValueSize: lib.func('uint32_t bpf_map__value_size(bpf_map *map)') as (map: Handle) => number,
  mapMaxEntries: lib.func('uint32_t bpf_map__max_entries(bpf_map *map)') as (map: Handle) => number,
  mapSetPinPath: lib.func('int bpf_map__set_pin_path(bpf_map *map, const char *path)') as (
    map: Handle,
    path: string,
  ) => number,
  mapIsInternal: lib.func('bool bpf_map__is_internal(bpf_map *map)') as (map: Handle) => boolean,

  mapUpdateElem: lib.func('int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags)') as (
    fd: number,
    key: Buffer,
    value: Buffer,
    flags: number,
  ) => number,
  mapLookupElem: lib.func('int bpf_map_lookup_elem(int fd, const void *key, _Out_ void *value)') as (
    fd: number,
    key: Buffer,
    value: Buffer,
  ) => number,
  mapDeleteElem: lib.func('int bpf_map_delete_elem(int fd, const void *key)') as (fd: number, key: Buffer) => number,
  mapGetNextKey: lib.func('int bpf_map_get_next_key(int fd, const void *key, _Out_ void *next_key)') as (
    fd: number,
    key: Buffer | null,
    next: Buffer,
  ) => number,

  objPin: lib.func('int bpf_obj_pin(int fd, const char *pathname)') as (fd: number, path: string) => number,
  objGet: lib.func('int bpf_obj_get(const char *pathname)') as (path: string) => number,
  /** bpf_prog_info / bpf_map_info of an fd; `len` in: buffer size, out: bytes the kernel filled. */
  objGetInfoByFd: lib.func('int bpf_obj_get_info_by_fd(int fd, _Inout_ void *info, _Inout_ uint32_t *len)') as (
    fd: number,
    info: Buffer,
    len: number[],
  ) => number,
  /** Programs on a sockmap/sockhash (sk_msg, sk_skb): attached to the map, they live as long as it does. */
  progAttach: lib.func('int bpf_prog_attach(int prog_fd, int attachable_fd, int type, unsigned int flags)') as (
    progFd: number,
    targetFd: number,
    attachType: number,
    flags: number,
  ) => number,
  linkCreate: lib.func('int bpf_link_create(int prog_fd, int target_fd, int attach_type, void *opts)') as (
    progFd: number,
    targetFd: number,
    attachType: number,
    opts: null,
  ) => number,
  linkUpdate: lib.func('int bpf_link_update(int link_fd, int new_prog_fd, void *opts)') as (
    linkFd: number,
    newProgFd: number,
    opts: null,
  ) => number,
  linkDetach: lib.func('int bpf_link_detach(int link_fd)') as (linkFd: number) => number,
  probeProgType: lib.func('int libbpf_probe_bpf_prog_type(int prog_type, const void *opts)') as (
    progType: number,
    opts: null,
  ) => number,
  probeMapType: lib.func('int libbpf_probe_bpf_map_type(int map_type, const void *opts)') as (
    mapType: number,
    opts: null,
  ) => number,
  probeHelper: lib.func('int libbpf_probe_bpf_helper(int prog_type, int helper_id, const void *opts)') as (
    progType: number,
    helperId: number,
    opts: null,
  ) => number,
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
  /** BPF_MAP_UPDATE_BATCH (5.6+); `count` in: entries, out: entries written (also on failure). */
  mapUpdateBatch: lib.func(
    'int bpf_map_update_batch(int fd, const void *keys, const void *values, _Inout_ uint32_t *count, void *opts)',
  ) as (fd: number, keys: Buffer, values: Buffer, count: number[], opts: null) => number,
  /** BPF_ENABLE_STATS: run_cnt/run_time_ns are collected while the returned fd is open. */
  enableStats: lib.func('int bpf_enable_stats(int type)') as (type: number) => number,
  btfLoad: lib.func('int bpf_btf_load(const void *data, size_t size, void *opts)') as (
    data: Buffer,
    size: number,
    opts: null,
  ) => number,
};

const progLoad = lib.func(
  'int bpf_prog_load(int prog_type, const char *name, const char *license, const void *insns, size_t insn_cnt, kmesh_bpf_prog_load_opts *opts)',
) as (type: number, name: string, license: string, insns: Buffer, cnt: number, opts: unknown) => number;

/** bpf_prog_load with the given options (the rest zero); the fd or -errno. */
export function loadProgram(progType: number, name: string, insns: Buffer[], opts: ProgLoadOptions): number {
  const full = {
    sz: koffi.sizeof(ProgLoadOpts),
    attempts: 0,
    prog_btf_fd: 0,
    prog_flags: 0,
    prog_ifindex: 0,
    kern_version: 0,
    attach_btf_id: 0,
    attach_prog_fd: 0,
    attach_btf_obj_fd: 0,
    fd_array: null,
    func_info: null,
    func_info_cnt: 0,
    func_info_rec_size: 0,
    line_info: null,
    line_info_cnt: 0,
    line_info_rec_size: 0,
    ...opts,
  };
  return progLoad(progType, name, 'GPL', Buffer.concat(insns), insns.length, full);
}

export const errnoNow = (): number => koffi.errno();

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

/** A libc function that not every C library has (null there). */
function optional<T>(bind: () => T): T | null {
  try {
    return bind();
  } catch {
    return null;
  }
}

export const libc = {
  /** Gives the free pages inside malloc's heap back to the kernel (glibc only: null elsewhere). */
  mallocTrim: optional(() => c.func('int malloc_trim(size_t pad)') as (pad: number) => number),
  close: c.func('int close(int fd)') as (fd: number) => number,
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
