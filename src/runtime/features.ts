/**
 * Kernel feature detection for the daemon's start-up: which program types, attach
 * types, map types and helpers the running kernel has, probed (never guessed from the
 * version string) through libbpf's probes and tiny test programs. Nothing is attached.
 *
 * `detectFeatures()` answers by feature name; `planObject()` turns that into
 * the programs to leave out of an object's load, and whether the object can be used at
 * all, each with the reason to log (src/datapath/ acts on it).
 *
 * Versions in `since` are upstream's; the measured matrix is in docs/compat.md.
 */
import { existsSync, readFileSync } from 'node:fs';
import type { FeatureStatus } from '../contracts/control.js';
import { EBADF, EPERM, errnoName } from './errno.js';
import { libbpf, libc, loadProgram } from './libbpf.js';

// uapi enum values (include/uapi/linux/bpf.h); stable ABI.
const PROG = { SOCK_OPS: 13, SK_SKB: 14, SK_MSG: 16, CGROUP_SOCK_ADDR: 18 } as const;
const ATTACH = {
  INET4_CONNECT: 10,
  INET6_CONNECT: 11,
  UDP4_SENDMSG: 14,
  UDP6_SENDMSG: 15,
  UDP4_RECVMSG: 19,
  UDP6_RECVMSG: 20,
  INET4_GETPEERNAME: 29,
  INET6_GETPEERNAME: 30,
} as const;
const MAP = { LRU_HASH: 9, SOCKHASH: 18, CGROUP_STORAGE: 19, SK_STORAGE: 24, RINGBUF: 27 } as const;
/** Helpers a supported kernel may lack (or lack for the program type), by bpf_func_id. */
const HELPER = {
  get_socket_cookie: 46,
  get_current_cgroup_id: 80,
  spin_lock: 93,
  sk_storage_get: 107,
  ringbuf_reserve: 131,
} as const;

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
  const logBuf = Buffer.alloc(64 * 1024);
  const fd = loadProgram(progType, 'kmesh_feature', insns, {
    expected_attach_type: attachType,
    log_level: 1,
    log_size: logBuf.length,
    log_buf: logBuf,
  });
  if (fd >= 0) {
    libc.close(fd);
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
/** What a helper feature asks of the kernel: checked against the objects by test/unit/feature-needs.test.ts. */
export interface HelperProbe extends Probe {
  progType: number;
  helperId: number;
}
const helper = (type: number, id: number, since: string, what: string): HelperProbe => ({
  progType: type,
  helperId: id,
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
      const fd = libbpf.btfLoad(TINY_BTF, TINY_BTF.length, null);
      if (fd >= 0) {
        libc.close(fd);
        return { enabled: true };
      }
      return { enabled: false, reason: `kernel refuses BTF (BPF_BTF_LOAD): ${errnoName(-fd)}` };
    },
  },
  vmlinux_btf: {
    since: '5.4',
    what: 'kernel BTF (/sys/kernel/btf/vmlinux: CO-RE reads of kernel structs need it)',
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
  prog_sk_skb: progType(PROG.SK_SKB, '4.14', 'BPF_PROG_TYPE_SK_SKB'),
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
  helper_sk_storage_sock_addr: helper(
    PROG.CGROUP_SOCK_ADDR,
    HELPER.sk_storage_get,
    '<= 5.10',
    'bpf_sk_storage_get in cgroup/connect*',
  ),
  helper_sk_storage_sock_ops: helper(PROG.SOCK_OPS, HELPER.sk_storage_get, '5.3', 'bpf_sk_storage_get in sockops'),
  helper_spin_lock_sock_ops: helper(PROG.SOCK_OPS, HELPER.spin_lock, '5.1', 'bpf_spin_lock in sockops'),
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
        reason: `kernel lacks BPF_LINK_CREATE for cgroups (upstream 5.7): ${errnoName(-rc)}; programs are attached and pinned only as links`,
      };
    },
  },
  // Needed by no program (the build uses -mcpu=v2 because of it): probed so the kernel
  // matrix shows the probes tell kernels apart (off on 5.10, on from 5.12).
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
export function detectFeatures(env: NodeJS.ProcessEnv = process.env): Record<string, FeatureStatus> {
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

/** Helper features by name, for the check against what the objects call. */
export const HELPER_PROBES: Readonly<Record<string, HelperProbe>> = Object.fromEntries(
  Object.entries(PROBES).filter((e): e is [string, HelperProbe] => 'helperId' in e[1]),
);

const SOCK_ADDR_BASE = ['prog_cgroup_sock_addr', 'helper_socket_cookie_sock_addr'];
const CONNECT = ['helper_cgroup_id_sock_addr', 'helper_spin_lock_sock_addr', 'helper_sk_storage_sock_addr'];

/**
 * What a program needs of the kernel beyond its object's maps, by its SEC() name: the
 * program type, the attach type, the helpers a supported kernel may lack for it.
 * test/unit/feature-needs.test.ts holds the helper lists equal to what each program calls.
 */
export const SECTION_REQUIREMENTS: Record<string, readonly string[]> = {
  'cgroup/connect4': [...SOCK_ADDR_BASE, 'attach_connect4', ...CONNECT],
  'cgroup/connect6': [...SOCK_ADDR_BASE, 'attach_connect6', ...CONNECT],
  'cgroup/sendmsg4': [...SOCK_ADDR_BASE, 'attach_sendmsg4', 'helper_cgroup_id_sock_addr', 'helper_spin_lock_sock_addr'],
  'cgroup/sendmsg6': [...SOCK_ADDR_BASE, 'attach_sendmsg6', 'helper_cgroup_id_sock_addr', 'helper_spin_lock_sock_addr'],
  'cgroup/recvmsg4': [...SOCK_ADDR_BASE, 'attach_recvmsg4'],
  'cgroup/recvmsg6': [...SOCK_ADDR_BASE, 'attach_recvmsg6'],
  'cgroup/getpeername4': [...SOCK_ADDR_BASE, 'attach_getpeername4', 'helper_sk_storage_sock_addr'],
  'cgroup/getpeername6': [...SOCK_ADDR_BASE, 'attach_getpeername6', 'helper_sk_storage_sock_addr'],
  // vmlinux_btf: the probe reads tcp_sock fields with CO-RE
  sockops: [
    'prog_sock_ops',
    'vmlinux_btf',
    'helper_sk_storage_sock_ops',
    'helper_ringbuf_sock_ops',
    'helper_socket_cookie_sock_ops',
    // the L4 object's sockops program (outlier detection state)
    'helper_spin_lock_sock_ops',
  ],
  // The L7 object (loaded by src/l7/, not planned here): "<object>:<section>" where a section name is shared.
  'kmesh_l7.bpf.o:sockops': ['prog_sock_ops', 'map_sockhash', 'helper_sk_storage_sock_ops'],
  sk_msg: ['prog_sk_msg', 'map_sockhash'],
  'sk_skb/stream_parser': ['prog_sk_skb', 'map_sockhash'],
  'sk_skb/stream_verdict': ['prog_sk_skb', 'map_sockhash'],
};

/** Map types a supported kernel may lack → the feature that says it has them. */
const MAP_TYPE_FEATURES: Record<number, string> = {
  [MAP.LRU_HASH]: 'map_lru_hash',
  [MAP.SOCKHASH]: 'map_sockhash',
  [MAP.CGROUP_STORAGE]: 'map_cgroup_storage',
  [MAP.SK_STORAGE]: 'map_sk_storage',
  [MAP.RINGBUF]: 'map_ringbuf',
};

/** Every object defines its maps with BTF; the daemon pins maps and attaches through links. */
const OBJECT_BASE = ['btf'];
/** Without these the daemon has nothing to offer: it refuses to start. */
const BASE_REQUIREMENTS: readonly string[] = ['cgroup2', 'bpffs', 'link_cgroup'];
/** Sections whose program the data path cannot do without. */
const CORE_SECTIONS: readonly string[] = ['cgroup/connect4'];

/** An object as the plan sees it: opened, not loaded. */
export interface ObjectShape {
  /** Program name → SEC() name. */
  sections(): Record<string, string>;
  /** enum bpf_map_type of every map the object defines. */
  mapTypes(): number[];
}

const missingOf = (needs: readonly string[], features: Record<string, FeatureStatus>): string[] =>
  needs
    .filter((need) => features[need]?.enabled === false)
    .map((m) => `${m} (${features[m]?.reason ?? 'not available'})`);

/** Features an object needs whatever programs it loads: BTF, and the types of its maps. */
export function objectRequirements(mapTypes: readonly number[]): string[] {
  const maps = new Set(mapTypes.flatMap((t) => MAP_TYPE_FEATURES[t] ?? []));
  return [...OBJECT_BASE, ...[...maps].sort()];
}

/**
 * Programs to leave out of a load, name → reason, given their sections
 * (name → SEC() name) and the probed features. Sections without an entry in
 * SECTION_REQUIREMENTS are kept (the verifier then has the last word).
 */
export function disabledProgramsFor(
  sections: Record<string, string>,
  features: Record<string, FeatureStatus>,
): Map<string, string> {
  const off = new Map<string, string>();
  for (const [prog, section] of Object.entries(sections)) {
    const missing = missingOf(SECTION_REQUIREMENTS[section] ?? [], features);
    if (missing.length > 0) off.set(prog, `${section} needs ${missing.join(', ')}`);
  }
  return off;
}

export interface ObjectPlan {
  /** Programs to skip, name → why; the rest of the object keeps working. */
  disabled: Map<string, string>;
  /**
   * Non-empty: the object cannot be used on this kernel (a base or object-level need
   * is missing, or a core program cannot load). A required object makes this fatal;
   * an optional one is switched off with these reasons.
   */
  unusable: string[];
}

/**
 * The start-up decision for one object: which programs to load, which to leave out
 * (and why), and whether it can be used at all. Never half-attached: a core program
 * (connect4) the kernel lacks makes the object unusable.
 */
export function planObject(obj: ObjectShape, features: Record<string, FeatureStatus>): ObjectPlan {
  const sections = obj.sections();
  const disabled = disabledProgramsFor(sections, features);
  const unusable = [
    ...missingOf(BASE_REQUIREMENTS, features),
    ...missingOf(objectRequirements(obj.mapTypes()), features),
  ];
  for (const [prog, section] of Object.entries(sections)) {
    const why = disabled.get(prog);
    if (why && CORE_SECTIONS.includes(section)) unusable.push(`program ${prog}: ${why}`);
  }
  if (unusable.length === 0 && disabled.size === Object.keys(sections).length) {
    unusable.push(`no program can load: ${[...disabled.values()].join('; ')}`);
  }
  return { disabled, unusable };
}
