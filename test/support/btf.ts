/**
 * BTF as bpftool prints it, for the layout tests: every C struct shared with TypeScript is
 * compared member by member (name, byte offset, size) with its StructCodec.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import type { StructCodec } from '../../src/runtime/maps/struct-codec.js';

export interface BtfMember {
  name: string;
  type_id: number;
  bits_offset: number;
}
export interface BtfType {
  id: number;
  kind: string;
  name?: string;
  size?: number;
  type_id?: number;
  nr_elems?: number;
  members?: BtfMember[];
  vars?: Array<{ type_id: number; offset: number; size: number }>;
}
export type Btf = Map<number, BtfType>;

export function hasBpftool(): boolean {
  try {
    execFileSync('bpftool', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export function loadBtf(file: string): Btf {
  const out = execFileSync('bpftool', ['btf', 'dump', 'file', file, '-j'], { maxBuffer: 256 << 20 });
  const types = (JSON.parse(out.toString()) as { types: BtfType[] }).types;
  return new Map(types.map((t) => [t.id, t]));
}

export function type(btf: Btf, id: number): BtfType {
  const t = btf.get(id);
  if (!t) throw new Error(`BTF type ${id} missing`);
  return t;
}

/** Through typedef/const/volatile to the type that has a shape. */
export function resolve(btf: Btf, id: number): BtfType {
  let t = type(btf, id);
  while (['TYPEDEF', 'CONST', 'VOLATILE', 'RESTRICT', 'TYPE_TAG'].includes(t.kind)) t = type(btf, t.type_id ?? 0);
  return t;
}

export function sizeOf(btf: Btf, id: number): number {
  const t = resolve(btf, id);
  if (t.kind === 'ARRAY') return (t.nr_elems ?? 0) * sizeOf(btf, t.type_id ?? 0);
  if (t.size !== undefined) return t.size;
  throw new Error(`BTF type ${id} (${t.kind}) has no size`);
}

export function struct(btf: Btf, name: string): BtfType {
  const t = [...btf.values()].find((x) => x.kind === 'STRUCT' && x.name === name);
  if (!t) throw new Error(`struct ${name} is not in this BTF`);
  return t;
}

export function assertLayout(btf: Btf, codec: StructCodec<never>): void {
  const s = struct(btf, codec.cName);
  const members = s.members ?? [];
  assert.deepEqual(
    codec.fields.map((f) => f.name),
    members.map((m) => m.name),
    `${codec.cName}: member names and order`,
  );
  assert.deepEqual(
    codec.fields.map((f) => [f.name, f.offset, f.size]),
    members.map((m) => {
      assert.equal(m.bits_offset % 8, 0, `${codec.cName}.${m.name} is a bitfield`);
      return [m.name, m.bits_offset / 8, sizeOf(btf, m.type_id)];
    }),
    `${codec.cName}: member offsets and sizes`,
  );
  assert.equal(codec.size, s.size, `${codec.cName}: total size`);
}
