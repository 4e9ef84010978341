/** Small readers/writers of the probe's own maps (per-CPU values summed over CPUs). */
import type { BpfMap } from '../runtime/bpf-map.js';
import { cgroupStorageKey, probeCgroup, probeConnCounts } from './event-codec.js';

type PerCpuMap = Pick<BpfMap, 'name' | 'lookup' | 'valueStride' | 'valueBytes'>;

const ZERO_KEY = Buffer.alloc(4);

function lookupSlot(map: PerCpuMap): Buffer {
  const value = map.lookup(ZERO_KEY);
  if (!value) throw new Error(`${map.name}: no entry 0`);
  return value;
}

/** Sum over CPUs of the u64 at index 0 of a per-CPU array (kmesh_probe_drops). */
export function readPerCpuCounter(map: PerCpuMap): bigint {
  const value = lookupSlot(map);
  let sum = 0n;
  for (let at = 0; at < map.valueBytes; at += map.valueStride) sum += value.readBigUInt64LE(at);
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
const COUNT_OFFSETS = Object.values(COUNT_FIELDS).map((member) => probeConnCounts.offsetOf(member));

export const NO_COUNTS: Readonly<ConnCounts> = Object.freeze(
  Object.fromEntries(COUNT_NAMES.map((name) => [name, 0])) as unknown as ConnCounts,
);

/** Sums the per-CPU copies of one value. */
function sumCounts(value: Buffer, stride: number): ConnCounts {
  const sum: ConnCounts = { ...NO_COUNTS };
  for (let base = 0; base + stride <= value.length; base += stride) {
    COUNT_NAMES.forEach((name, i) => {
      const off = base + (COUNT_OFFSETS[i] ?? 0);
      sum[name] += value.readUInt32LE(off) + value.readUInt32LE(off + 4) * 2 ** 32;
    });
  }
  return sum;
}

/** The overflow slot (kmesh_probe_conns_overflow, one per-CPU entry). */
export function readOverflowCounts(map: PerCpuMap): ConnCounts {
  return sumCounts(lookupSlot(map), map.valueStride);
}

/** Every entry of a per-CPU hash of kmesh_probe_conn_counts (kmesh_probe_conns), summed over CPUs. */
export function readConnCounts(
  map: Pick<BpfMap, 'forEachBatched' | 'valueStride'>,
): Array<{ key: Buffer; counts: ConnCounts }> {
  const out: Array<{ key: Buffer; counts: ConnCounts }> = [];
  map.forEachBatched((key, value) => out.push({ key: Buffer.from(key), counts: sumCounts(value, map.valueStride) }));
  return out;
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
