/**
 * src/runtime/features.ts on the host: the start-up decision (which programs to leave
 * out, when an object cannot be used) from a given feature set, and the probes
 * themselves (they load tiny programs and attach nothing; root only).
 */
import assert from 'node:assert/strict';
import { dirname, join, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { FeatureStatus } from '../../src/contracts/control.js';
import { BpfObject } from '../../src/runtime/bpf-object.js';
import {
  detectFeatures,
  disabledProgramsFor,
  FEATURE_NAMES,
  type ObjectPlan,
  objectRequirements,
  planObject,
  SECTION_REQUIREMENTS,
} from '../../src/runtime/features.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const OBJECTS = join(ROOT, 'build/bpf');

/** Plans an object opened (never loaded) from build/bpf. */
function plan(file: string, features: Record<string, FeatureStatus>): ObjectPlan {
  const obj = BpfObject.open(join(OBJECTS, file), { pinMapsDir: '/nonexistent/kmesh-features-test' });
  try {
    return planObject(obj, features);
  } finally {
    obj.close();
  }
}
const isRoot = process.getuid?.() === 0;

const allOn = (): Record<string, FeatureStatus> => Object.fromEntries(FEATURE_NAMES.map((n) => [n, { enabled: true }]));

describe('feature plan', () => {
  test('every requirement names a probed feature', () => {
    for (const [section, needs] of Object.entries(SECTION_REQUIREMENTS)) {
      for (const need of needs) assert.ok(FEATURE_NAMES.includes(need), `${section}: unknown feature ${need}`);
    }
  });

  test('a missing attach type disables exactly the programs that need it, with the reason', () => {
    const features = allOn();
    features.attach_getpeername4 = { enabled: false, reason: 'kernel refuses cgroup/getpeername4 (upstream 5.8)' };
    const off = disabledProgramsFor(
      { a: 'cgroup/connect4', b: 'cgroup/getpeername4', c: 'cgroup/getpeername6', d: 'something/else' },
      features,
    );
    assert.deepEqual([...off.keys()], ['b']);
    assert.match(off.get('b') ?? '', /attach_getpeername4 \(kernel refuses cgroup\/getpeername4 \(upstream 5\.8\)\)/);
  });

  test("map-type needs come from the object's maps; every object needs BTF", () => {
    assert.deepEqual(objectRequirements([1, 9, 9, 24]), ['btf', 'map_lru_hash', 'map_sk_storage']);
    assert.deepEqual(objectRequirements([2]), ['btf']);
  });

  test('KMESH_DISABLE_FEATURES turns features off without probing', { skip: !isRoot && 'needs root' }, () => {
    const f = detectFeatures({ KMESH_DISABLE_FEATURES: 'attach_getpeername4, map_ringbuf' });
    assert.equal(f.attach_getpeername4?.enabled, false);
    assert.match(f.attach_getpeername4?.reason ?? '', /KMESH_DISABLE_FEATURES/);
    assert.equal(f.map_ringbuf?.enabled, false);
  });

  test('planObject: connect4 missing makes L4 unusable; getpeername missing does not', () => {
    const features = allOn();
    features.attach_getpeername6 = { enabled: false, reason: 'off' };
    const soft = plan('kmesh_l4.bpf.o', features);
    assert.deepEqual(soft.unusable, []);
    assert.deepEqual([...soft.disabled.keys()], ['kmesh_getpeername6']);

    features.attach_connect4 = { enabled: false, reason: 'off' };
    const hard = plan('kmesh_l4.bpf.o', features);
    assert.equal(hard.unusable.length, 1);
    assert.match(hard.unusable[0] ?? '', /kmesh_connect4.*attach_connect4/);

    const noCgroup2 = plan('kmesh_l4.bpf.o', { ...allOn(), cgroup2: { enabled: false, reason: 'no cgroup2' } });
    assert.deepEqual(noCgroup2.unusable, ['cgroup2 (no cgroup2)']);
  });

  test('planObject: a map type the kernel lacks makes the object unusable (derived from its maps)', () => {
    const probe = plan('kmesh_probe.bpf.o', { ...allOn(), map_ringbuf: { enabled: false, reason: 'no ringbuf' } });
    assert.deepEqual(probe.unusable, ['map_ringbuf (no ringbuf)']);
    const l4 = plan('kmesh_l4.bpf.o', { ...allOn(), map_ringbuf: { enabled: false, reason: 'no ringbuf' } });
    assert.deepEqual(l4.unusable, [], 'the L4 object has no ring buffer');
    const noStorage = plan('kmesh_l4.bpf.o', { ...allOn(), map_sk_storage: { enabled: false, reason: 'old' } });
    assert.deepEqual(noStorage.unusable, ['map_sk_storage (old)']);
  });

  test('the probes run on this kernel and find what the shipped programs need', {
    skip: !isRoot && 'needs root',
  }, () => {
    const f = detectFeatures({});
    assert.deepEqual(Object.keys(f).sort(), [...FEATURE_NAMES].sort());
    for (const file of ['kmesh_l4.bpf.o', 'kmesh_probe.bpf.o']) {
      const p = plan(file, f);
      assert.deepEqual(p.unusable, [], file);
      assert.deepEqual([...p.disabled.keys()], [], file);
    }
  });
});
