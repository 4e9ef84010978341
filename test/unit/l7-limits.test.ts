import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { packageRoot } from '../../src/contracts/package.js';
import { L7_LIMIT_MACROS, L7_LIMITS } from '../../src/model/l7-limits.js';

test('L7 limits in TypeScript are the ones bpf/kmesh_l7.h defines', () => {
  const header = readFileSync(join(packageRoot, 'bpf', 'kmesh_l7.h'), 'utf8');
  for (const [name, macro] of Object.entries(L7_LIMIT_MACROS)) {
    const m = new RegExp(`^#define ${macro} (\\d+)$`, 'm').exec(header);
    assert.ok(m, `${macro} not defined in bpf/kmesh_l7.h`);
    assert.equal(L7_LIMITS[name as keyof typeof L7_LIMITS], Number(m[1]), macro);
  }
});
