/**
 * Consistent-hash lookup tables, built here and read by cgroup/connect* through kmesh_lb_table: the kernel
 * hashes the connection's key (bpf/kmesh_l4.bpf.c hash_of) and reads one slot. Slots hold the endpoint's
 * position in the list given here; a host is named by a stable string, so the same host keeps its slots
 * when others come and go.
 *  - maglev: Maglev's permutation fill (Eisenbud et al., NSDI 2016) into a prime-sized table, each host
 *    taking turns in proportion to its weight;
 *  - ring_hash: a ring of points (256 per host at the smallest weight, more in proportion to weight; a
 *    host's count does not depend on the others, so they keep their points) over the 32-bit hash space,
 *    sampled at 65,536 evenly spaced positions: slot b belongs to the first point at or after b << 16.
 * Removing one of N hosts moves only the slots that host held (ring) or about 1/N of them (maglev).
 */
import { createHash } from 'node:crypto';

export interface TableHost {
  /** Stable across endpoint-set changes (address and port). */
  name: string;
  weight: number;
}

function hash64(text: string): bigint {
  return createHash('sha256').update(text).digest().readBigUInt64LE(0);
}

export function maglevTable(hosts: TableHost[], size: number): Uint32Array {
  const table = new Uint32Array(size).fill(0xffffffff);
  if (hosts.length === 0) return table.fill(0);
  const big = BigInt(size);
  const offset = hosts.map((h) => Number(hash64(`${h.name}#offset`) % big));
  const skip = hosts.map((h) => Number(hash64(`${h.name}#skip`) % (big - 1n)) + 1);
  const next = new Array<number>(hosts.length).fill(0);
  const maxWeight = Math.max(...hosts.map((h) => h.weight));
  const credit = new Array<number>(hosts.length).fill(0);
  let filled = 0;
  while (filled < size) {
    for (let i = 0; i < hosts.length && filled < size; i++) {
      credit[i] = (credit[i] as number) + (hosts[i] as TableHost).weight / maxWeight;
      while ((credit[i] as number) >= 1 && filled < size) {
        credit[i] = (credit[i] as number) - 1;
        let slot: number;
        do {
          // next × skip stays far below 2^53 for tables of this size
          slot = ((offset[i] as number) + (next[i] as number) * (skip[i] as number)) % size;
          next[i] = (next[i] as number) + 1;
        } while (table[slot] !== 0xffffffff);
        table[slot] = i;
        filled++;
      }
    }
  }
  return table;
}

const POINTS_PER_HOST = 256;
/** Heavy weight ratios would make huge rings: the points are scaled down to at most this many. */
const MAX_RING_POINTS = 1 << 20;

export function ringHashTable(hosts: TableHost[], buckets: number): Uint32Array {
  const table = new Uint32Array(buckets);
  if (hosts.length === 0) return table;
  const minWeight = Math.min(...hosts.map((h) => h.weight));
  const total = hosts.reduce((sum, h) => sum + (POINTS_PER_HOST * h.weight) / minWeight, 0);
  const scale = Math.min(1, MAX_RING_POINTS / total);
  const points: Array<{ at: number; host: number }> = [];
  hosts.forEach((h, i) => {
    const replicas = Math.max(1, Math.round(((POINTS_PER_HOST * h.weight) / minWeight) * scale));
    for (let k = 0; k < replicas; k++) points.push({ at: Number(hash64(`${h.name}_${k}`) >> 32n), host: i });
  });
  points.sort((a, b) => a.at - b.at || a.host - b.host);
  const step = 2 ** 32 / buckets;
  let p = 0;
  for (let b = 0; b < buckets; b++) {
    const position = b * step;
    while (p < points.length && (points[p] as { at: number }).at < position) p++;
    table[b] = (points[p] ?? (points[0] as { host: number })).host;
  }
  return table;
}
