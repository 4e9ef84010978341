/**
 * src/runtime/features.ts on the host: the start-up decision (which programs to leave
 * out, when to refuse to start) from a given feature set, and the probes themselves
 * (they load tiny programs and attach nothing; root only).
 */
import assert from 'node:assert/strict';
import { dirname, join, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  disabledProgramsFor,
  FEATURE_NAMES,
  type FeatureStatus,
  planPrograms,
  probeFeatures,
  SECTION_REQUIREMENTS,
} from '../../src/runtime/features.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const L4 = join(ROOT, 'build/bpf/kmesh_l4.bpf.o');
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

  test('a missing BTF disables every program that needs typed maps', () => {
    const features = allOn();
    features.btf = { enabled: false, reason: 'kernel refuses BTF' };
    const off = disabledProgramsFor({ a: 'cgroup/connect4', b: 'sockops' }, features);
    assert.deepEqual([...off.keys()].sort(), ['a', 'b']);
  });

  test('KMESH_DISABLE_FEATURES turns features off without probing', { skip: !isRoot && 'needs root' }, () => {
    const f = probeFeatures({ KMESH_DISABLE_FEATURES: 'attach_getpeername4, map_ringbuf' });
    assert.equal(f.attach_getpeername4?.enabled, false);
    assert.match(f.attach_getpeername4?.reason ?? '', /KMESH_DISABLE_FEATURES/);
    assert.equal(f.map_ringbuf?.enabled, false);
  });

  test('planPrograms: connect4 missing is fatal; getpeername missing is not', { skip: !isRoot && 'needs root' }, () => {
    const features = allOn();
    features.attach_getpeername6 = { enabled: false, reason: 'off' };
    const soft = planPrograms(L4, features);
    assert.deepEqual(soft.fatal, []);
    assert.deepEqual([...soft.disabled.keys()], ['kmesh_getpeername6']);

    features.attach_connect4 = { enabled: false, reason: 'off' };
    const hard = planPrograms(L4, features);
    assert.equal(hard.fatal.length, 1);
    assert.match(hard.fatal[0] ?? '', /kmesh_connect4.*attach_connect4/);

    const noCgroup2 = planPrograms(L4, { ...allOn(), cgroup2: { enabled: false, reason: 'no cgroup2' } });
    assert.deepEqual(noCgroup2.fatal, ['cgroup2: no cgroup2']);
  });

  test('the probes run on this kernel and find what the shipped programs need', {
    skip: !isRoot && 'needs root',
  }, () => {
    const f = probeFeatures({});
    assert.deepEqual(Object.keys(f).sort(), [...FEATURE_NAMES].sort());
    const plan = planPrograms(L4, f);
    assert.deepEqual(plan.fatal, []);
    assert.deepEqual([...plan.disabled.keys()], []);
  });
});
