/**
 * The TypeScript codecs of bpf/kmesh_probe.h (and the bpf_prog_info offsets the
 * metrics read) against BTF: the compiled object's and the running kernel's.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { cgroupStorageKey, probeCgroup, probeEvent } from '../../src/probe/event-codec.js';
import { PROG_INFO } from '../../src/probe/prog-stats.js';
import type { StructCodec } from '../../src/runtime/maps/struct-codec.js';

const OBJ = fileURLToPath(new URL('../../../build/bpf/kmesh_probe.bpf.o', import.meta.url));
const VMLINUX = '/sys/kernel/btf/vmlinux';

interface BtfType {
  id: number;
  kind: string;
  name?: string;
  size?: number;
  type_id?: number;
  nr_elems?: number;
  members?: Array<{ name: string; type_id: number; bits_offset: number }>;
}

function loadBtf(file: string): Map<number, BtfType> {
  const out = execFileSync('bpftool', ['btf', 'dump', 'file', file, '-j'], { maxBuffer: 256 << 20 });
  const types = (JSON.parse(out.toString()) as { types: BtfType[] }).types;
  return new Map(types.map((t) => [t.id, t]));
}

function sizeOf(btf: Map<number, BtfType>, id: number): number {
  const t = btf.get(id);
  if (!t) throw new Error(`BTF type ${id} missing`);
  if (t.kind === 'ARRAY') return (t.nr_elems ?? 0) * sizeOf(btf, t.type_id ?? 0);
  if (t.size !== undefined) return t.size;
  if (t.type_id !== undefined) return sizeOf(btf, t.type_id); // typedef, const, volatile
  throw new Error(`BTF type ${id} (${t.kind}) has no size`);
}

function struct(btf: Map<number, BtfType>, name: string): BtfType {
  const t = [...btf.values()].find((x) => x.kind === 'STRUCT' && x.name === name);
  if (!t) throw new Error(`struct ${name} not in BTF`);
  return t;
}

function assertMatches(btf: Map<number, BtfType>, codec: StructCodec<never>, cName: string): void {
  const s = struct(btf, cName);
  assert.equal(codec.size, s.size, `${cName} size`);
  const members = s.members ?? [];
  assert.deepEqual(
    codec.fields.map((f) => f.name),
    members.map((m) => m.name),
    `${cName} member names and order`,
  );
  for (const [i, m] of members.entries()) {
    const f = codec.fields[i];
    assert.equal(f?.offset, m.bits_offset / 8, `${cName}.${m.name} offset`);
    assert.equal(f?.size, sizeOf(btf, m.type_id), `${cName}.${m.name} size`);
  }
}

test('kmesh_probe_event and kmesh_probe_cgroup match the object BTF', {
  skip: !existsSync(OBJ) && 'run make -C bpf',
}, () => {
  const btf = loadBtf(OBJ);
  assertMatches(btf, probeEvent as unknown as StructCodec<never>, 'kmesh_probe_event');
  assertMatches(btf, probeCgroup as unknown as StructCodec<never>, 'kmesh_probe_cgroup');
});

test('kernel UAPI structs read by the probe match vmlinux BTF', {
  skip: !existsSync(VMLINUX) && 'no kernel BTF',
}, () => {
  const btf = loadBtf(VMLINUX);
  const info = struct(btf, 'bpf_prog_info');
  const offset = (name: string): number => {
    const m = info.members?.find((x) => x.name === name);
    if (!m) throw new Error(`bpf_prog_info.${name} missing`);
    return m.bits_offset / 8;
  };
  // the buffer handed to the kernel must cover the fields read (a longer one is fine: zero tail)
  assert.ok(PROG_INFO.size >= offset('run_cnt') + 8);
  assert.equal(offset('id'), PROG_INFO.id);
  assert.equal(offset('run_time_ns'), PROG_INFO.runTimeNs);
  assert.equal(offset('run_cnt'), PROG_INFO.runCnt);
  const key = struct(btf, 'bpf_cgroup_storage_key');
  assert.equal(cgroupStorageKey.size, key.size);
  assert.equal(cgroupStorageKey.fields[1]?.offset, (key.members?.[1]?.bits_offset ?? 0) / 8);
});
