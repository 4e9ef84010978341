/** malloc_trim after applies: once shortly after, then after full collections; nothing once stopped. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { MemoryReturn } from '../../src/controller/memory-return.js';
import { libc } from '../../src/runtime/libbpf.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits up to 3 s for `ok` (observer entries are delivered when Node gets to them). */
async function until(ok: () => boolean): Promise<boolean> {
  for (let i = 0; i < 60 && !ok(); i++) await sleep(50);
  return ok();
}

test('glibc hosts have malloc_trim', () => {
  assert.equal(typeof libc.mallocTrim, 'function');
  assert.equal(typeof libc.mallocTrim?.(0), 'number');
});

test('an apply is followed by a trim, and a full collection by another', async () => {
  let trims = 0;
  const memory = new MemoryReturn(() => {
    trims++;
    return 1;
  }, 50);
  try {
    assert.equal(trims, 0);
    memory.applied();
    assert.ok(await until(() => trims === 1), 'trimmed once after the apply');
    await sleep(1000); // the gap between trims
    setFlagsFromString('--expose-gc');
    (runInNewContext('gc') as () => void)();
    assert.ok(await until(() => trims === 2), 'trimmed after the full collection');
  } finally {
    memory.stop();
  }
  (runInNewContext('gc') as () => void)();
  await sleep(1500);
  assert.equal(trims, 2, 'nothing once stopped');
});

test('without malloc_trim (another C library) nothing is scheduled', () => {
  const memory = new MemoryReturn(null, 1);
  memory.applied();
  memory.stop();
});
