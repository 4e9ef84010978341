/**
 * The bpf_prog_info offsets the metrics read, the bpf_map_info offsets the loader reads
 * and the cgroup storage key, against the running kernel's BTF (the probe's own layouts
 * are generated: test/unit/layouts-btf.test.ts).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { cgroupStorageKey } from '../../src/probe/event-codec.js';
import { PROG_INFO } from '../../src/probe/prog-stats.js';
import { MAP_INFO } from '../../src/runtime/bpf-map.js';
import { loadBtf, struct } from '../support/btf.js';

const VMLINUX = '/sys/kernel/btf/vmlinux';

test('kernel UAPI structs read by the probe and the loader match vmlinux BTF', {
  skip: !existsSync(VMLINUX) && 'no kernel BTF',
}, () => {
  const btf = loadBtf(VMLINUX);
  const offsetIn =
    (structName: string) =>
    (name: string): number => {
      const m = struct(btf, structName).members?.find((x) => x.name === name);
      if (!m) throw new Error(`${structName}.${name} missing`);
      return m.bits_offset / 8;
    };
  const offset = offsetIn('bpf_prog_info');
  // the buffer handed to the kernel must cover the fields read (a longer one is fine: zero tail)
  assert.ok(PROG_INFO.size >= offset('run_cnt') + 8);
  assert.equal(offset('id'), PROG_INFO.id);
  assert.equal(offset('run_time_ns'), PROG_INFO.runTimeNs);
  assert.equal(offset('run_cnt'), PROG_INFO.runCnt);
  const mapOffset = offsetIn('bpf_map_info');
  assert.ok(MAP_INFO.size >= mapOffset('map_flags') + 4);
  assert.equal(mapOffset('type'), MAP_INFO.type);
  assert.equal(mapOffset('key_size'), MAP_INFO.keySize);
  assert.equal(mapOffset('value_size'), MAP_INFO.valueSize);
  assert.equal(mapOffset('max_entries'), MAP_INFO.maxEntries);
  assert.equal(mapOffset('map_flags'), MAP_INFO.mapFlags);
  const key = struct(btf, 'bpf_cgroup_storage_key');
  assert.equal(cgroupStorageKey.size, key.size);
  assert.equal(cgroupStorageKey.fields[1]?.offset, (key.members?.[1]?.bits_offset ?? 0) / 8);
});
