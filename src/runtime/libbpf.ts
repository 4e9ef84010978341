/**
 * The system libbpf (libbpf.so.1), bound with koffi. Everything kernel-facing in user
 * space goes through here; libbpf 1.x returns negative errno codes directly.
 */
import koffi from 'koffi';

const lib = koffi.load('libbpf.so.1');

export const BpfObjectPtr = koffi.pointer('bpf_object', koffi.opaque());
export const BpfProgramPtr = koffi.pointer('bpf_program', koffi.opaque());
export const BpfMapPtr = koffi.pointer('bpf_map', koffi.opaque());

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
};

export const errnoNow = (): number => koffi.errno();
