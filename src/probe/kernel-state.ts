/** Small readers/writers of the probe's own maps, by fd (no dependency on the loader). */
import type { BpfMap } from '../runtime/bpf-map.js';
import { check } from '../runtime/errors.js';
import { libbpf } from '../runtime/libbpf.js';
import { cgroupStorageKey, probeCgroup, probeConnCounts } from './event-codec.js';
import { probeLib } from './ffi.js';

let possibleCpus = 0;

/** Per-CPU map values are one 8-byte-aligned slot per possible CPU. */
export function numPossibleCpus(): number {
  if (possibleCpus === 0) {
    const n = probeLib.numPossibleCpus();
    if (n <= 0) throw new Error(`libbpf_num_possible_cpus: ${n}`);
    possibleCpus = n;
  }
  return possibleCpus;
}

/** Sum over CPUs of the u64 at `index` of a per-CPU array (kmesh_probe_drops, kmesh_l7_counters). */
export function readPerCpuCounter(map: Pick<BpfMap, 'fd' | 'name'>, index = 0): bigint {
  const cpus = numPossibleCpus();
  const value = Buffer.alloc(8 * cpus);
  const key = Buffer.alloc(4);
  key.writeUInt32LE(index);
  check(`lookup ${map.name}`, libbpf.mapLookupElem(map.fd, key, value));
  let sum = 0n;
  for (let i = 0; i < cpus; i++) sum += value.readBigUInt64LE(i * 8);
  return sum;
}

/** struct kmesh_probe_conn_counts summed over CPUs (exact below 2^53). */
export interface ConnCounts {
  opened: number;
  closed: number;
  failed: number;
  sent: number;
  received: number;
  retransmits: number;
  /** Smoothed RTT at close, µs, summed over the closed connections. */
  srttUsSum: number;
}

/** ConnCounts field → kmesh_probe_conn_counts member. */
const COUNT_FIELDS = {
  opened: 'opened',
  closed: 'closed',
  failed: 'failed',
  sent: 'bytes_sent',
  received: 'bytes_received',
  retransmits: 'retransmits',
  srttUsSum: 'srtt_us_sum',
} as const satisfies Record<keyof ConnCounts, string>;
export const COUNT_NAMES = Object.keys(COUNT_FIELDS) as Array<keyof ConnCounts>;
const COUNT_OFFSETS = Object.values(COUNT_FIELDS).map((member) => {
  const f = probeConnCounts.fields.find((x) => x.name === member);
  if (!f) throw new Error(`kmesh_probe_conn_counts has no ${member}`);
  return f.offset;
});

export const NO_COUNTS: Readonly<ConnCounts> = Object.freeze(
  Object.fromEntries(COUNT_NAMES.map((name) => [name, 0])) as unknown as ConnCounts,
);

/** Bytes per CPU of a per-CPU value: the kernel rounds each copy up to 8. */
const COUNTS_STRIDE = Math.ceil(probeConnCounts.size / 8) * 8;

/** Sums the per-CPU copies of one value at `at`. */
function sumCounts(values: Buffer, at: number, cpus: number): ConnCounts {
  const sum: ConnCounts = { ...NO_COUNTS };
  for (let cpu = 0; cpu < cpus; cpu++) {
    const base = at + cpu * COUNTS_STRIDE;
    COUNT_NAMES.forEach((name, i) => {
      const off = base + (COUNT_OFFSETS[i] ?? 0);
      sum[name] += values.readUInt32LE(off) + values.readUInt32LE(off + 4) * 2 ** 32;
    });
  }
  return sum;
}

/** The overflow slot (kmesh_probe_conns_overflow, one per-CPU entry). */
export function readOverflowCounts(map: Pick<BpfMap, 'fd' | 'name'>): ConnCounts {
  const cpus = numPossibleCpus();
  const value = Buffer.alloc(COUNTS_STRIDE * cpus);
  check(`lookup ${map.name}`, libbpf.mapLookupElem(map.fd, Buffer.alloc(4), value));
  return sumCounts(value, 0, cpus);
}

const ENOENT = 2;
/** Entries per batch; a batch must hold a whole hash bucket, far smaller than this. */
const BATCH = 1024;

/**
 * Every entry of a per-CPU hash of kmesh_probe_conn_counts (kmesh_probe_conns), summed
 * over CPUs, read with BPF_MAP_LOOKUP_BATCH: a few syscalls for the whole map where a
 * key-by-key walk takes two per entry.
 */
export function readConnCounts(
  map: Pick<BpfMap, 'fd' | 'name' | 'keySize'>,
): Array<{ key: Buffer; counts: ConnCounts }> {
  const cpus = numPossibleCpus();
  const keys = Buffer.alloc(BATCH * map.keySize);
  const values = Buffer.alloc(BATCH * COUNTS_STRIDE * cpus);
  // the batch token is the kernel's bucket cursor (a u32); 8 bytes leave room
  let inBatch: Buffer | null = null;
  const out: Array<{ key: Buffer; counts: ConnCounts }> = [];
  for (;;) {
    const outBatch = Buffer.alloc(8);
    const count = [BATCH];
    const rc = probeLib.mapLookupBatch(map.fd, inBatch, outBatch, keys, values, count, null);
    if (rc < 0 && rc !== -ENOENT) check(`batch lookup ${map.name}`, rc);
    const n = count[0] ?? 0;
    for (let i = 0; i < n; i++) {
      const key = Buffer.from(keys.subarray(i * map.keySize, (i + 1) * map.keySize));
      out.push({ key, counts: sumCounts(values, i * COUNTS_STRIDE * cpus, cpus) });
    }
    if (rc === -ENOENT) return out;
    inBatch = outBatch;
  }
}

/**
 * The kernel gives every (cgroup, attach type) the program is attached to its own
 * kmesh_probe_cgroup value, zeroed. Writing each key's cgroup id (and the switches)
 * into its value is how the program learns the registered cgroup's id (see
 * kmesh_probe.h). Idempotent and cheap (one entry per registered cgroup): call after
 * every attach and whenever `flags` change. Returns the number of entries written.
 */
export function syncCgroupIds(map: Pick<BpfMap, 'keys' | 'lookup' | 'update'>, flags: number): number {
  let written = 0;
  for (const keyBuf of map.keys()) {
    const key = cgroupStorageKey.decode(keyBuf);
    const value = map.lookup(keyBuf);
    const current = value ? probeCgroup.decode(value) : undefined;
    if (!current || BigInt(current.cgroup_id) !== BigInt(key.cgroup_inode_id) || current.flags !== flags) {
      try {
        map.update(keyBuf, probeCgroup.encode({ cgroup_id: key.cgroup_inode_id, flags }));
        written++;
      } catch {
        // the cgroup went away (detached) between keys() and update(): nothing to name
      }
    }
  }
  return written;
}
