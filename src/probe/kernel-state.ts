/** Small readers/writers of the probe's own maps, by fd (no dependency on the loader). */
import type { BpfMap } from '../runtime/bpf-map.js';
import { libbpf } from '../runtime/libbpf.js';
import { cgroupStorageKey, probeCgroup } from './event-codec.js';
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

/** Sum over CPUs of the u64 at index 0 of a per-CPU array (kmesh_probe_drops). */
export function readPerCpuCounter(map: Pick<BpfMap, 'fd' | 'name'>): bigint {
  const cpus = numPossibleCpus();
  const value = Buffer.alloc(8 * cpus);
  const rc = libbpf.mapLookupElem(map.fd, Buffer.alloc(4), value);
  if (rc < 0) throw new Error(`lookup ${map.name}: errno ${-rc}`);
  let sum = 0n;
  for (let i = 0; i < cpus; i++) sum += value.readBigUInt64LE(i * 8);
  return sum;
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
