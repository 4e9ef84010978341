/** The L7 layouts (src/l7/layouts.ts) against the BTF of build/bpf/kmesh_l7.bpf.o. */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { L7_FLAT_LAYOUTS, L7_NESTED_LAYOUTS, l7Conn, l7Listener, l7Route } from '../../src/l7/layouts.js';
import type { StructCodec } from '../../src/runtime/maps/struct-codec.js';
import { assertLayout, type BtfType, hasBpftool, loadBtf, struct } from '../support/btf.js';

const OBJ = fileURLToPath(new URL('../../../build/bpf/kmesh_l7.bpf.o', import.meta.url));
/** Structs user space never reads or writes. */
const KERNEL_ONLY = new Set(['kmesh_l7_sock', 'kmesh_l7_scratch', 'kmesh_l7_capture', 'kmesh_l7_exports']);
const skip = !hasBpftool() ? 'bpftool is not installed' : !existsSync(OBJ) ? `${OBJ} is not built` : false;

describe('L7 layouts against the BTF of kmesh_l7.bpf.o', { skip }, () => {
  const btf = skip ? new Map<number, BtfType>() : loadBtf(OBJ);

  test('every kmesh_l7_* struct has a codec', () => {
    const inBtf = [...btf.values()]
      .filter((t) => t.kind === 'STRUCT' && t.name?.startsWith('kmesh_l7_') && !KERNEL_ONLY.has(t.name))
      .map((t) => t.name)
      .sort();
    assert.deepEqual([...L7_FLAT_LAYOUTS, ...L7_NESTED_LAYOUTS].map((c) => c.cName).sort(), inBtf);
  });

  for (const codec of L7_FLAT_LAYOUTS) {
    test(codec.cName, () => assertLayout(btf, codec as unknown as StructCodec<never>));
  }

  const offsetIn = (cName: string, member: string): number => {
    const m = struct(btf, cName).members?.find((x) => x.name === member);
    assert.ok(m, `${cName}.${member}`);
    return m.bits_offset / 8;
  };

  test('nested layouts: sizes and where the nested members start', () => {
    for (const codec of L7_NESTED_LAYOUTS) assert.equal(codec.size, struct(btf, codec.cName).size, codec.cName);
    assert.equal(l7Listener.offsetOf('cluster_count'), offsetIn('kmesh_l7_listener', 'fallback'));
    assert.equal(l7Listener.offsetOf('anchor_port'), offsetIn('kmesh_l7_listener', 'anchor_port'));
    assert.equal(l7Route.offsetOf('matchers'), offsetIn('kmesh_l7_route', 'matchers'));
    assert.equal(l7Route.offsetOf('cluster_count'), offsetIn('kmesh_l7_route', 'action'));
    for (const m of ['hash_kind', 'hash_slot', 'cookie_len', 'cookie_hash']) {
      assert.equal(l7Route.offsetOf(m as 'hash_kind'), offsetIn('kmesh_l7_route', m), m);
    }
    assert.equal(l7Conn.offsetOf('upstream'), offsetIn('kmesh_l7_conn', 'upstream'));
    assert.equal(l7Conn.offsetOf('listener'), offsetIn('kmesh_l7_conn', 'listener'));
  });
});
