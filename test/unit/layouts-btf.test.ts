/**
 * The generated side of the kernel ABI (scripts/gen-layouts.mjs → src/runtime/maps/codecs.ts
 * and src/abi/kernel.ts) against the BTF of every compiled object, read by an independent
 * path (bpftool's JSON through test/support/btf.ts): every kmesh_* struct has a codec with
 * the compiler's offsets, every map of every object is listed with its type, capacity and
 * key/value types, and the limits the TypeScript side checks are the ones the C uses.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { BPF_MAPS } from '../../src/abi/kernel.js';
import { BpfObject } from '../../src/runtime/bpf-object.js';
import { ensureBpffs } from '../../src/runtime/bpffs.js';
import { GENERATED_LAYOUTS, MAX_ROUTE_CLUSTERS, rrValue } from '../../src/runtime/maps/layouts.js';
import { array, bytes, StructCodec, u16, u32 } from '../../src/runtime/maps/struct-codec.js';
import { assertLayout, type Btf, hasBpftool, loadBtf, resolve, sizeOf, struct, type } from '../support/btf.js';

const OBJ_DIR = fileURLToPath(new URL('../../../build/bpf/', import.meta.url));
const OBJECTS = existsSync(OBJ_DIR) ? readdirSync(OBJ_DIR).filter((f) => f.endsWith('.bpf.o')) : [];
const L4 = join(OBJ_DIR, 'kmesh_l4.bpf.o');

const skip = !hasBpftool()
  ? 'bpftool is not installed (scripts/deps.sh installs it)'
  : OBJECTS.length === 0
    ? `nothing built in ${OBJ_DIR} (make -C bpf)`
    : false;

describe('generated layouts against the BTF of every object', { skip }, () => {
  const btfs = new Map<string, Btf>(skip ? [] : OBJECTS.map((f) => [f, loadBtf(join(OBJ_DIR, f))]));
  const btf = btfs.get('kmesh_l4.bpf.o') ?? new Map();

  test('every kmesh_* struct of every object has a generated codec, and only those (plus named map keys)', () => {
    const inBtf = new Set<string>();
    for (const b of btfs.values()) {
      for (const t of b.values()) {
        if (t.kind === 'STRUCT' && t.name?.startsWith('kmesh_') && !t.name.endsWith('_exports')) inBtf.add(t.name);
      }
    }
    const generated = GENERATED_LAYOUTS.map((c) => c.cName);
    for (const name of inBtf) assert.ok(generated.includes(name), `no codec for struct ${name}`);
    assert.deepEqual(
      generated.filter((n) => !inBtf.has(n)),
      ['bpf_cgroup_storage_key'],
    );
  });

  for (const codec of GENERATED_LAYOUTS) {
    test(codec.cName, () => {
      const b = [...btfs.values()].find((x) =>
        [...x.values()].some((t) => t.kind === 'STRUCT' && t.name === codec.cName),
      );
      assert.ok(b, `${codec.cName} in no object`);
      assertLayout(b, codec as unknown as StructCodec<never>);
    });
  }

  test('the check fails on a drifted codec', () => {
    const swapped = new StructCodec('kmesh_endpoint_value', { addr: bytes(16), pad: u16, port: u16, cum_weight: u32 });
    assert.throws(() => assertLayout(btf, swapped as unknown as StructCodec<never>), /member names and order/);
    const widened = new StructCodec('kmesh_endpoint_value', { addr: bytes(16), port: u32, pad: u16, cum_weight: u32 });
    assert.throws(() => assertLayout(btf, widened as unknown as StructCodec<never>), /offsets and sizes/);
    const shorter = new StructCodec('kmesh_listener_value', {
      cluster_count: u32,
      total_weight: u32,
      cluster_ids: array(u32, 8),
      cum_weights: array(u32, 8),
    });
    assert.throws(() => assertLayout(btf, shorter as unknown as StructCodec<never>), /offsets and sizes/);
  });

  test('kmesh_rr_value.lock is a struct bpf_spin_lock of 4 bytes', () => {
    const member = struct(btf, 'kmesh_rr_value').members?.find((m) => m.name === 'lock');
    assert.ok(member);
    const lock = resolve(btf, member.type_id);
    assert.equal(lock.kind, 'STRUCT');
    assert.equal(lock.name, 'bpf_spin_lock');
    assert.equal(lock.size, 4);
    assert.deepEqual(
      rrValue.fields.map((f) => [f.name, f.offset, f.size]),
      [
        ['lock', 0, 4],
        ['next', 4, 4],
      ],
    );
  });

  test('kmesh_rr_value.lock is a struct bpf_spin_lock of 4 bytes', () => {
    const member = struct(btf, 'kmesh_rr_value').members?.find((m) => m.name === 'lock');
    assert.ok(member);
    const lock = resolve(btf, member.type_id);
    assert.equal(lock.kind, 'STRUCT');
    assert.equal(lock.name, 'bpf_spin_lock');
    assert.deepEqual(
      rrValue.fields.map((f) => [f.name, f.offset, f.size]),
      [
        ['lock', 0, 4],
        ['next', 4, 4],
      ],
    );
  });

  test('MAX_ROUTE_CLUSTERS is the length of the listener value arrays', () => {
    for (const name of ['cluster_ids', 'cum_weights']) {
      const member = struct(btf, 'kmesh_listener_value').members?.find((m) => m.name === name);
      assert.ok(member);
      const arr = resolve(btf, member.type_id);
      assert.equal(arr.kind, 'ARRAY');
      assert.equal(arr.nr_elems, MAX_ROUTE_CLUSTERS, name);
    }
  });

  // BPF map definitions as the object declares them: __uint(x, N) is `int (*x)[N]`, __type(x, T) is `T *x`.
  interface MapDef {
    type: number;
    maxEntries: number;
    keySize: number;
    valueSize: number;
    keyName: string | undefined;
    valueName: string | undefined;
  }
  const mapDefs = (btf: Btf): Map<string, MapDef> => {
    const section = [...btf.values()].find((t) => t.kind === 'DATASEC' && t.name === '.maps');
    assert.ok(section, 'no .maps section');
    const defs = new Map<string, MapDef>();
    for (const v of section.vars ?? []) {
      const variable = type(btf, v.type_id);
      const def = resolve(btf, variable.type_id ?? 0);
      const has = (name: string): boolean => def.members?.some((x) => x.name === name) ?? false;
      const member = (name: string) => {
        const m = def.members?.find((x) => x.name === name);
        assert.ok(m, `${variable.name}: no ${name}`);
        const ptr = type(btf, m.type_id);
        assert.equal(ptr.kind, 'PTR');
        return resolve(btf, ptr.type_id ?? 0);
      };
      // a ring buffer declares neither key nor value
      const key = has('key') ? member('key') : undefined;
      const value = has('value') ? member('value') : undefined;
      defs.set(variable.name ?? '', {
        type: member('type').nr_elems ?? -1,
        // socket-local storage declares none: it has one value per socket
        maxEntries: has('max_entries') ? (member('max_entries').nr_elems ?? -1) : 0,
        keySize: key ? sizeOf(btf, key.id) : 0,
        valueSize: value ? sizeOf(btf, value.id) : 0,
        keyName: key?.kind === 'STRUCT' ? key.name : undefined,
        valueName: value?.kind === 'STRUCT' ? value.name : undefined,
      });
    }
    return defs;
  };

  test('.maps of every object: BPF_MAPS has each map with its type, capacity and key/value', () => {
    const seen = new Set<string>();
    for (const [file, b] of btfs) {
      for (const [name, def] of mapDefs(b)) {
        seen.add(name);
        const gen = BPF_MAPS[name as keyof typeof BPF_MAPS];
        assert.ok(gen, `${file}: map ${name} not generated`);
        assert.ok((gen.objects as readonly string[]).includes(file), `${name}: ${file} not listed`);
        assert.deepEqual(
          [gen.type, gen.maxEntries, gen.keySize, gen.valueSize],
          [def.type, def.maxEntries, def.keySize, def.valueSize],
          name,
        );
        if (def.keyName) assert.equal(gen.key, def.keyName, `${name} key`);
        if (def.valueName) assert.equal(gen.value, def.valueName, `${name} value`);
      }
    }
    assert.deepEqual(Object.keys(BPF_MAPS).sort(), [...seen].sort());
  });

  test('loaded through libbpf (BpfObject.open into a temp pin dir): key/value sizes and capacities', {
    skip: process.getuid?.() !== 0 && 'loading BPF needs root',
  }, () => {
    const pinDir = `/sys/fs/bpf/kmesh-test-${process.pid}-layouts`;
    ensureBpffs(pinDir);
    mkdirSync(pinDir, { recursive: true });
    let obj: BpfObject | undefined;
    try {
      obj = BpfObject.open(L4, { pinMapsDir: pinDir });
      obj.load();
      const loaded = new Map(obj.allMaps().map((m) => [m.name, m]));
      const l4Maps = Object.entries(BPF_MAPS).filter(([, m]) =>
        (m.objects as readonly string[]).includes('kmesh_l4.bpf.o'),
      );
      assert.ok(l4Maps.length > 0);
      for (const [name, m] of l4Maps) {
        const map = loaded.get(name);
        assert.ok(map, `${name} not loaded`);
        assert.deepEqual(
          { type: map.type, keySize: map.keySize, valueSize: map.valueSize, maxEntries: map.maxEntries },
          { type: m.type, keySize: m.keySize, valueSize: m.valueSize, maxEntries: m.maxEntries },
          name,
        );
        assert.ok(existsSync(`${pinDir}/${name}`), `${name} pinned`);
      }
    } finally {
      obj?.close();
      rmSync(pinDir, { recursive: true, force: true });
    }
    assert.equal(existsSync(pinDir), false);
  });
});
