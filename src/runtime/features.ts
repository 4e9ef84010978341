/**
 * Kernel feature detection for the daemon's start-up: which program types, attach
 * types, map types and helpers the running kernel has, probed (never guessed from the
 * version string) through libbpf's probes and tiny test programs. Nothing is attached.
 *
 * `probeFeatures()` answers by feature name; `disabledProgramsFor()` turns that into
 * the programs to leave out of a load (BpfObject OpenOptions.skipPrograms / the
 * daemon's disabledPrograms), each with the reason to log.
 *
 * Versions in `since` are upstream's; the measured matrix is in docs/compat.md.
 */
import { existsSync, readFileSync } from 'node:fs';
import { constants } from 'node:os';
import koffi from 'koffi';
import { libbpf } from './libbpf.js';

export interface FeatureStatus {
  enabled: boolean;
  reason?: string;
}

const lib = koffi.load('libbpf.so.1');

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

const progLoad = lib.func(
  'int bpf_prog_load(int prog_type, const char *name, const char *license, const void *insns, size_t insn_cnt, kmesh_bpf_prog_load_opts *opts)',
) as (type: number, name: string, license: string, insns: Buffer, cnt: number, opts: unknown) => number;
const btfLoad = lib.func('int bpf_btf_load(const void *data, size_t size, void *opts)') as (
  data: Buffer,
  size: number,
  opts: null,
) => number;
const libc = koffi.load('libc.so.6');
const closeFd = libc.func('int close(int fd)') as (fd: number) => number;

// uapi enum values (include/uapi/linux/bpf.h); stable ABI.
const PROG = { SOCKET_FILTER: 1, SOCK_OPS: 13, SK_SKB: 14, SK_MSG: 16, CGROUP_SOCK_ADDR: 18 } as const;
const ATTACH = {
  CGROUP_SOCK_OPS: 3,
  SK_SKB_STREAM_VERDICT: 5,
  SK_MSG_VERDICT: 7,
  INET4_CONNECT: 10,
  INET6_CONNECT: 11,
  UDP4_SENDMSG: 14,
  UDP6_SENDMSG: 15,
  UDP4_RECVMSG: 19,
  UDP6_RECVMSG: 20,
  INET4_GETPEERNAME: 29,
  INET6_GETPEERNAME: 30,
} as const;
const MAP = { HASH: 1, LRU_HASH: 9, SOCKHASH: 18, CGROUP_STORAGE: 19, SK_STORAGE: 24, RINGBUF: 27 } as const;
const HELPER = {
  get_socket_cookie: 46,
  get_current_cgroup_id: 80,
  spin_lock: 93,
  sk_storage_get: 107,
  get_netns_cookie: 122,
  ringbuf_output: 130,
  ringbuf_reserve: 131,
} as const;

const EBADF = 9;
const EPERM = 1;

/** One BPF instruction: code, dst/src registers, offset, immediate. */
function insn(code: number, dst: number, src: number, off: number, imm: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt8(code, 0);
  b.writeUInt8((src << 4) | dst, 1);
  b.writeInt16LE(off, 2);
  b.writeInt32LE(imm, 4);
  return b;
}
const MOV64_IMM = 0xb7;
const EXIT = 0x95;
const STX_DW_MEM = 0x7b;
const STX_DW_ATOMIC = 0xdb;
/** The smallest useful BTF: header, one 32-bit "int", the string table. */
const TINY_BTF = (() => {
  const types = Buffer.alloc(16);
  types.writeUInt32LE(1, 0); // name_off -> "int"
  types.writeUInt32LE(1 << 24, 4); // info: kind INT
  types.writeUInt32LE(4, 8); // size
  types.writeUInt32LE(32, 12); // encoding: 32 bits, unsigned, offset 0
  const strings = Buffer.from('\0int\0', 'latin1');
  const hdr = Buffer.alloc(24);
  hdr.writeUInt16LE(0xeb9f, 0);
  hdr.writeUInt8(1, 2); // version
  hdr.writeUInt32LE(24, 4); // hdr_len
  hdr.writeUInt32LE(0, 8); // type_off
  hdr.writeUInt32LE(types.length, 12);
  hdr.writeUInt32LE(types.length, 16); // str_off
  hdr.writeUInt32LE(strings.length, 20);
  return Buffer.concat([hdr, types, strings]);
})();
const RETURN_1 = [insn(MOV64_IMM, 0, 0, 0, 1), insn(EXIT, 0, 0, 0, 0)];

/** Loads a tiny program; the verdict and the verifier's last line on refusal. */
function tryLoad(progType: number, attachType: number, insns: Buffer[]): { ok: boolean; errno: number; log: string } {
  const code = Buffer.concat(insns);
  const logBuf = Buffer.alloc(64 * 1024);
  const opts = {
    sz: koffi.sizeof(ProgLoadOpts),
    attempts: 0,
    expected_attach_type: attachType,
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
    log_level: 1,
    log_size: logBuf.length,
    log_buf: logBuf,
  };
  const fd = progLoad(progType, 'kmesh_probe', 'GPL', code, insns.length, opts);
  if (fd >= 0) {
    closeFd(fd);
    return { ok: true, errno: 0, log: '' };
  }
  const end = logBuf.indexOf(0);
  const log = logBuf
    .subarray(0, end < 0 ? logBuf.length : end)
    .toString('utf8')
    .trim()
    .split('\n')
    .filter((l) => l.length > 0 && !l.startsWith('processed '));
  return { ok: false, errno: -fd, log: log.slice(-2).join(' | ') };
}

const ERRNO_NAMES = new Map<number, string>(Object.entries(constants.errno).map(([name, num]) => [num, name]));
ERRNO_NAMES.set(524, 'ENOTSUPP');
const errnoName = (e: number): string => ERRNO_NAMES.get(e) ?? `errno ${e}`;

interface Probe {
  /** Upstream kernel that introduced it. */
  since: string;
  what: string;
  run: () => FeatureStatus;
}

const fromLibbpfProbe = (rc: number, since: string, what: string): FeatureStatus => {
  if (rc === 1) return { enabled: true };
  if (rc === 0) return { enabled: false, reason: `kernel lacks ${what} (upstream ${since})` };
  return { enabled: false, reason: `probing ${what} failed: ${errnoName(-rc)}` };
};

const progType = (type: number, since: string, what: string): Probe => ({
  since,
  what,
  run: () => fromLibbpfProbe(libbpf.probeProgType(type, null), since, what),
});
const mapType = (type: number, since: string, what: string): Probe => ({
  since,
  what,
  run: () => fromLibbpfProbe(libbpf.probeMapType(type, null), since, what),
});
const helper = (type: number, id: number, since: string, what: string): Probe => ({
  since,
  what,
  run: () => fromLibbpfProbe(libbpf.probeHelper(type, id, null), since, what),
});
/** An attach type exists when a program with that expected_attach_type loads. */
const attachType = (type: number, attach: number, since: string, what: string): Probe => ({
  since,
  what,
  run: () => {
    const r = tryLoad(type, attach, RETURN_1);
    if (r.ok) return { enabled: true };
    if (r.errno === EPERM) return { enabled: false, reason: `cannot load BPF programs: EPERM (not root / no CAP_BPF)` };
    return {
      enabled: false,
      reason: `kernel refuses ${what} (upstream ${since}): ${errnoName(r.errno)}${r.log ? `: ${r.log}` : ''}`,
    };
  },
});

const PROBES: Record<string, Probe> = {
  btf: {
    since: '5.1',
    what: 'BTF (typed maps: bpf_spin_lock needs it)',
    run: () => {
      const fd = btfLoad(TINY_BTF, TINY_BTF.length, null);
      if (fd >= 0) {
        closeFd(fd);
        return { enabled: true };
      }
      return { enabled: false, reason: `kernel refuses BTF (BPF_BTF_LOAD): ${errnoName(-fd)}` };
    },
  },
  vmlinux_btf: {
    since: '5.4',
    what: 'kernel BTF (/sys/kernel/btf/vmlinux, needed only for CO-RE)',
    run: () =>
      existsSync('/sys/kernel/btf/vmlinux')
        ? { enabled: true }
        : { enabled: false, reason: 'no /sys/kernel/btf/vmlinux: kernel built without CONFIG_DEBUG_INFO_BTF' },
  },
  cgroup2: {
    since: '4.5',
    what: 'cgroup v2',
    run: () =>
      kernelFilesystems().includes('cgroup2')
        ? { enabled: true }
        : { enabled: false, reason: 'kernel has no cgroup2 file system (not in /proc/filesystems)' },
  },
  bpffs: {
    since: '4.4',
    what: 'bpffs',
    run: () =>
      kernelFilesystems().includes('bpf')
        ? { enabled: true }
        : { enabled: false, reason: 'kernel has no bpf file system (not in /proc/filesystems): nothing can be pinned' },
  },
  prog_cgroup_sock_addr: progType(PROG.CGROUP_SOCK_ADDR, '4.17', 'BPF_PROG_TYPE_CGROUP_SOCK_ADDR'),
  attach_connect4: attachType(PROG.CGROUP_SOCK_ADDR, ATTACH.INET4_CONNECT, '4.17', 'cgroup/connect4'),
  attach_connect6: attachType(PROG.CGROUP_SOCK_ADDR, ATTACH.INET6_CONNECT, '4.17', 'cgroup/connect6'),
  attach_sendmsg4: attachType(PROG.CGROUP_SOCK_ADDR, ATTACH.UDP4_SENDMSG, '4.18', 'cgroup/sendmsg4'),
  attach_sendmsg6: attachType(PROG.CGROUP_SOCK_ADDR, ATTACH.UDP6_SENDMSG, '4.18', 'cgroup/sendmsg6'),
  attach_recvmsg4: attachType(PROG.CGROUP_SOCK_ADDR, ATTACH.UDP4_RECVMSG, '5.2', 'cgroup/recvmsg4'),
  attach_recvmsg6: attachType(PROG.CGROUP_SOCK_ADDR, ATTACH.UDP6_RECVMSG, '5.2', 'cgroup/recvmsg6'),
  attach_getpeername4: attachType(PROG.CGROUP_SOCK_ADDR, ATTACH.INET4_GETPEERNAME, '5.8', 'cgroup/getpeername4'),
  attach_getpeername6: attachType(PROG.CGROUP_SOCK_ADDR, ATTACH.INET6_GETPEERNAME, '5.8', 'cgroup/getpeername6'),
  prog_sock_ops: progType(PROG.SOCK_OPS, '4.13', 'BPF_PROG_TYPE_SOCK_OPS'),
  prog_sk_msg: progType(PROG.SK_MSG, '4.17', 'BPF_PROG_TYPE_SK_MSG'),
  map_lru_hash: mapType(MAP.LRU_HASH, '4.10', 'BPF_MAP_TYPE_LRU_HASH'),
  map_sockhash: mapType(MAP.SOCKHASH, '4.18', 'BPF_MAP_TYPE_SOCKHASH'),
  map_cgroup_storage: mapType(MAP.CGROUP_STORAGE, '4.19', 'BPF_MAP_TYPE_CGROUP_STORAGE'),
  map_sk_storage: mapType(MAP.SK_STORAGE, '5.2', 'BPF_MAP_TYPE_SK_STORAGE'),
  map_ringbuf: mapType(MAP.RINGBUF, '5.8', 'BPF_MAP_TYPE_RINGBUF'),
  helper_spin_lock_sock_addr: helper(
    PROG.CGROUP_SOCK_ADDR,
    HELPER.spin_lock,
    '5.1',
    'bpf_spin_lock in cgroup/connect*',
  ),
  helper_socket_cookie_sock_addr: helper(
    PROG.CGROUP_SOCK_ADDR,
    HELPER.get_socket_cookie,
    '5.0',
    'bpf_get_socket_cookie in cgroup/connect*',
  ),
  helper_cgroup_id_sock_addr: helper(
    PROG.CGROUP_SOCK_ADDR,
    HELPER.get_current_cgroup_id,
    '4.18',
    'bpf_get_current_cgroup_id in cgroup/connect*',
  ),
  helper_netns_cookie_sock_addr: helper(
    PROG.CGROUP_SOCK_ADDR,
    HELPER.get_netns_cookie,
    '5.7',
    'bpf_get_netns_cookie in cgroup/connect*',
  ),
  helper_sk_storage_sock_addr: helper(
    PROG.CGROUP_SOCK_ADDR,
    HELPER.sk_storage_get,
    '<= 5.10',
    'bpf_sk_storage_get in cgroup/connect*',
  ),
  helper_sk_storage_sock_ops: helper(PROG.SOCK_OPS, HELPER.sk_storage_get, '5.3', 'bpf_sk_storage_get in sockops'),
  helper_ringbuf_sock_ops: helper(PROG.SOCK_OPS, HELPER.ringbuf_reserve, '5.8', 'bpf_ringbuf_reserve in sockops'),
  helper_socket_cookie_sock_ops: helper(
    PROG.SOCK_OPS,
    HELPER.get_socket_cookie,
    '5.0',
    'bpf_get_socket_cookie in sockops',
  ),
  link_cgroup: {
    since: '5.7',
    what: 'bpf_link for cgroup programs (BPF_LINK_CREATE)',
    run: () => {
      // Invalid fds on purpose: a kernel with BPF_LINK_CREATE rejects the fd (EBADF),
      // one without it rejects the command (EINVAL). Nothing is attached either way.
      const rc = libbpf.linkCreate(-1, -1, ATTACH.INET4_CONNECT, null);
      if (rc === -EBADF) return { enabled: true };
      return {
        enabled: false,
        reason: `kernel lacks BPF_LINK_CREATE for cgroups (upstream 5.7): ${errnoName(-rc)}; programs would need bpf_prog_attach and are not pinned across restarts`,
      };
    },
  },
  atomic_fetch: {
    since: '5.12',
    what: 'BPF atomic fetch instructions (__sync_fetch_and_add with a used result, -mcpu=v3)',
    run: () => {
      const r = tryLoad(PROG.CGROUP_SOCK_ADDR, ATTACH.INET4_CONNECT, [
        insn(MOV64_IMM, 1, 0, 0, 0),
        insn(STX_DW_MEM, 10, 1, -8, 0),
        insn(MOV64_IMM, 1, 0, 0, 1),
        insn(STX_DW_ATOMIC, 10, 1, -8, 0x01), // r1 = atomic_fetch_add((u64 *)(r10 - 8), r1)
        ...RETURN_1,
      ]);
      return r.ok
        ? { enabled: true }
        : {
            enabled: false,
            reason: `verifier refuses BPF_ATOMIC|BPF_FETCH (upstream 5.12): ${errnoName(r.errno)}${r.log ? `: ${r.log}` : ''}`,
          };
    },
  },
};

function kernelFilesystems(): string[] {
  try {
    return readFileSync('/proc/filesystems', 'utf8')
      .split('\n')
      .map((l) => l.split('\t').pop()?.trim() ?? '');
  } catch {
    return [];
  }
}

/** Names of every probed feature. */
export const FEATURE_NAMES: readonly string[] = Object.keys(PROBES);

/**
 * Every feature the project's programs may need, probed on the running kernel.
 * KMESH_DISABLE_FEATURES=a,b (feature names) turns features off without probing:
 * an operator's escape hatch, and how the kernel tests act out an older kernel.
 */
export function probeFeatures(env: NodeJS.ProcessEnv = process.env): Record<string, FeatureStatus> {
  const forcedOff = new Set(
    (env.KMESH_DISABLE_FEATURES ?? '')
      .split(',')
      .map((f) => f.trim())
      .filter((f) => f.length > 0),
  );
  const out: Record<string, FeatureStatus> = {};
  for (const [name, probe] of Object.entries(PROBES)) {
    if (forcedOff.has(name)) {
      out[name] = { enabled: false, reason: `${probe.what}: turned off by KMESH_DISABLE_FEATURES` };
      continue;
    }
    try {
      out[name] = probe.run();
    } catch (err) {
      out[name] = { enabled: false, reason: `probe ${probe.what} threw: ${(err as Error).message}` };
    }
  }
  return out;
}

const SOCK_ADDR_BASE = ['prog_cgroup_sock_addr', 'btf', 'map_lru_hash', 'helper_socket_cookie_sock_addr'];

/** What the kernel must have for a program, by its SEC() name. */
export const SECTION_REQUIREMENTS: Record<string, readonly string[]> = {
  'cgroup/connect4': [...SOCK_ADDR_BASE, 'attach_connect4', 'helper_cgroup_id_sock_addr', 'helper_spin_lock_sock_addr'],
  'cgroup/connect6': [...SOCK_ADDR_BASE, 'attach_connect6', 'helper_cgroup_id_sock_addr', 'helper_spin_lock_sock_addr'],
  'cgroup/sendmsg4': [...SOCK_ADDR_BASE, 'attach_sendmsg4', 'helper_spin_lock_sock_addr'],
  'cgroup/sendmsg6': [...SOCK_ADDR_BASE, 'attach_sendmsg6', 'helper_spin_lock_sock_addr'],
  'cgroup/recvmsg4': [...SOCK_ADDR_BASE, 'attach_recvmsg4'],
  'cgroup/recvmsg6': [...SOCK_ADDR_BASE, 'attach_recvmsg6'],
  'cgroup/getpeername4': [...SOCK_ADDR_BASE, 'attach_getpeername4'],
  'cgroup/getpeername6': [...SOCK_ADDR_BASE, 'attach_getpeername6'],
  sockops: [
    'prog_sock_ops',
    'btf',
    'map_ringbuf',
    'map_sk_storage',
    'map_cgroup_storage',
    'helper_sk_storage_sock_ops',
    'helper_ringbuf_sock_ops',
    'helper_socket_cookie_sock_ops',
  ],
};

/** Without these the daemon has nothing to offer: it refuses to start. */
export const BASE_REQUIREMENTS: readonly string[] = ['cgroup2', 'bpffs'];
/** Sections whose program the data path cannot do without. */
export const CORE_SECTIONS: readonly string[] = ['cgroup/connect4'];

/**
 * Programs to leave out of a load, name → reason, given their sections
 * (name → SEC() name) and the probed features. Sections without an entry in
 * SECTION_REQUIREMENTS are kept (the verifier then has the last word).
 */
export function disabledProgramsFor(
  sections: Record<string, string>,
  features: Record<string, FeatureStatus> = probeFeatures(),
): Map<string, string> {
  const off = new Map<string, string>();
  for (const [prog, section] of Object.entries(sections)) {
    const missing = (SECTION_REQUIREMENTS[section] ?? []).filter((need) => features[need]?.enabled === false);
    if (missing.length > 0) {
      off.set(
        prog,
        `${section} needs ${missing.map((m) => `${m} (${features[m]?.reason ?? 'not available'})`).join(', ')}`,
      );
    }
  }
  return off;
}

/** Program name → SEC() name of every program in a BPF object file (opened, not loaded). */
export function programSections(objectPath: string): Record<string, string> {
  const obj = libbpf.objectOpenFile(objectPath, null);
  if (!obj) throw new Error(`cannot open ${objectPath}: errno ${koffi.errno()}`);
  const out: Record<string, string> = {};
  try {
    for (let p = libbpf.objectNextProgram(obj, null); p; p = libbpf.objectNextProgram(obj, p)) {
      out[libbpf.programName(p)] = programSectionName(p);
    }
  } finally {
    libbpf.objectClose(obj);
  }
  return out;
}
const programSectionName = lib.func('const char *bpf_program__section_name(bpf_program *prog)') as (
  prog: object,
) => string;

export interface ProgramPlan {
  /** Every probed feature (for status/D-Bus). */
  features: Record<string, FeatureStatus>;
  /** Programs to skip, name → why; the rest of the data path keeps working. */
  disabled: Map<string, string>;
  /** Non-empty: the kernel cannot run the data path at all; exit non-zero with these. */
  fatal: string[];
}

/**
 * The start-up decision for one object: which programs to load, which to leave
 * out (and why), and whether to refuse to start. A core program (connect4) or a
 * base requirement (cgroup2, bpffs) that the kernel lacks is fatal: never half-attached.
 */
export function planPrograms(
  objectPath: string,
  features: Record<string, FeatureStatus> = probeFeatures(),
): ProgramPlan {
  const sections = programSections(objectPath);
  const disabled = disabledProgramsFor(sections, features);
  const fatal: string[] = [];
  for (const need of BASE_REQUIREMENTS) {
    const f = features[need];
    if (f && !f.enabled) fatal.push(`${need}: ${f.reason ?? 'not available'}`);
  }
  for (const [prog, section] of Object.entries(sections)) {
    const why = disabled.get(prog);
    if (why && CORE_SECTIONS.includes(section)) fatal.push(`program ${prog}: ${why}`);
  }
  return { features, disabled, fatal };
}
