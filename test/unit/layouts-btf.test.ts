/**
 * Layout drift check: every codec in SHARED_LAYOUTS against the struct of the same name
 * in the BTF of build/bpf/kmesh_l4.bpf.o, and the map definitions (.maps) against the
 * codec sizes and capacities. A field changed in bpf/kmesh_maps.h without the TypeScript
 * side fails here.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { BpfObject } from '../../src/runtime/bpf-object.js';
import { ensureBpffs } from '../../src/runtime/bpffs.js';
import {
  activeSlotKey,
  activeSlotValue,
  CONFIG_SLOTS,
  clusterIdKey,
  clusterKey,
  clusterValue,
  endpointKey,
  endpointValue,
  listenerKey,
  listenerValue,
  MAX_CLUSTERS,
  MAX_ENDPOINTS,
  MAX_LISTENERS,
  MAX_ROUTE_CLUSTERS,
  rrValue,
  SHARED_LAYOUTS,
  sockOrigin,
  udpReverseKey,
  udpReverseValue,
} from '../../src/runtime/maps/layouts.js';
import { array, bytes, StructCodec, u16, u32 } from '../../src/runtime/maps/struct-codec.js';
import { assertLayout, type BtfType, hasBpftool, loadBtf, resolve, sizeOf, struct, type } from '../support/btf.js';

const OBJ = fileURLToPath(new URL('../../../build/bpf/kmesh_l4.bpf.o', import.meta.url));

const skip = !hasBpftool()
  ? 'bpftool is not installed (scripts/deps.sh installs it)'
  : !existsSync(OBJ)
    ? `${OBJ} is not built (make -C bpf)`
    : false;

describe('SHARED_LAYOUTS against the BTF of kmesh_l4.bpf.o', { skip }, () => {
  const btf = skip ? new Map<number, BtfType>() : loadBtf(OBJ);

  test('the list covers every kmesh_* struct in the object', () => {
    const inBtf = [...btf.values()]
      .filter((t) => t.kind === 'STRUCT' && t.name?.startsWith('kmesh_'))
      .map((t) => t.name)
      .sort();
    assert.deepEqual(SHARED_LAYOUTS.map((c) => c.cName).sort(), inBtf);
  });

  for (const codec of SHARED_LAYOUTS) {
    test(codec.cName, () => assertLayout(btf, codec as unknown as StructCodec<never>));
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
  const mapDefs = (): Map<string, MapDef> => {
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
      const key = member('key');
      const value = member('value');
      defs.set(variable.name ?? '', {
        type: member('type').nr_elems ?? -1,
        // socket-local storage declares none: it has one value per socket
        maxEntries: has('max_entries') ? (member('max_entries').nr_elems ?? -1) : 0,
        keySize: sizeOf(btf, key.id),
        valueSize: sizeOf(btf, value.id),
        keyName: key.kind === 'STRUCT' ? key.name : undefined,
        valueName: value.kind === 'STRUCT' ? value.name : undefined,
      });
    }
    return defs;
  };

  const BPF_MAP_TYPE_HASH = 1;
  const BPF_MAP_TYPE_ARRAY = 2;
  const BPF_MAP_TYPE_LRU_HASH = 9;
  const BPF_MAP_TYPE_SK_STORAGE = 24;
  const TRACKED_SOCKETS = 65536;
  const expected = {
    // two configs, one per slot
    kmesh_listeners: [BPF_MAP_TYPE_HASH, MAX_LISTENERS * CONFIG_SLOTS, listenerKey, listenerValue],
    kmesh_clusters: [BPF_MAP_TYPE_HASH, MAX_CLUSTERS * CONFIG_SLOTS, clusterKey, clusterValue],
    kmesh_active_slot: [BPF_MAP_TYPE_ARRAY, 1, activeSlotKey, activeSlotValue],
    kmesh_endpoints: [BPF_MAP_TYPE_HASH, MAX_ENDPOINTS, endpointKey, endpointValue],
    kmesh_rr: [BPF_MAP_TYPE_HASH, MAX_CLUSTERS, clusterIdKey, rrValue],
    // socket-local storage: no capacity; the key is the map fd (an int)
    kmesh_sock_origin: [BPF_MAP_TYPE_SK_STORAGE, 0, 4, sockOrigin],
    kmesh_udp_reverse: [BPF_MAP_TYPE_LRU_HASH, TRACKED_SOCKETS, udpReverseKey, udpReverseValue],
  } as const;
  const sizeOfSide = (side: number | { size: number }) => (typeof side === 'number' ? side : side.size);
  const nameOfSide = (side: number | { cName: string }) =>
    typeof side === 'number' || !side.cName.startsWith('kmesh_') ? undefined : side.cName;

  test('.maps: type, max_entries, key and value types and sizes', () => {
    const defs = mapDefs();
    assert.deepEqual([...defs.keys()].sort(), Object.keys(expected).sort());
    for (const [name, [mapType, maxEntries, key, value]] of Object.entries(expected)) {
      assert.deepEqual(
        defs.get(name),
        {
          type: mapType,
          maxEntries,
          keySize: sizeOfSide(key),
          valueSize: sizeOfSide(value),
          keyName: nameOfSide(key),
          valueName: nameOfSide(value),
        },
        name,
      );
    }
  });

  test('loaded through libbpf (BpfObject.open into a temp pin dir): key/value sizes and capacities', {
    skip: process.getuid?.() !== 0 && 'loading BPF needs root',
  }, () => {
    const pinDir = `/sys/fs/bpf/kmesh-test-${process.pid}-layouts`;
    ensureBpffs(pinDir);
    mkdirSync(pinDir, { recursive: true });
    let obj: BpfObject | undefined;
    try {
      obj = BpfObject.open(OBJ, { pinMapsDir: pinDir });
      obj.load();
      const loaded = new Map(obj.allMaps().map((m) => [m.name, m]));
      for (const [name, [, maxEntries, key, value]] of Object.entries(expected)) {
        const map = loaded.get(name);
        assert.ok(map, `${name} not loaded`);
        assert.deepEqual(
          { keySize: map.keySize, valueSize: map.valueSize, maxEntries: map.maxEntries },
          { keySize: sizeOfSide(key), valueSize: sizeOfSide(value), maxEntries },
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
