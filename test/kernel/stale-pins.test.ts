/**
 * Real kernel: a map pinned by an earlier build with another definition (here the
 * steering-origin map as it was, an LRU hash keyed by socket cookie) does not stop the
 * load. Its pin is replaced by the map this build defines, the caller is told why, and
 * a pin that fits is reused untouched.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { BpfObject } from '../../src/runtime/bpf-object.js';
import { ensureBpffs } from '../../src/runtime/bpffs.js';
import { REPO } from './probe-harness.js';

const L4_OBJ = join(REPO, 'build/bpf/kmesh_l4.bpf.o');
const pinDir = `/sys/fs/bpf/kmesh-test-stale-${process.pid}`;
const mapsDir = join(pinDir, 'maps');

after(() => rmSync(pinDir, { recursive: true, force: true }));

/** bpftool's JSON for the map pinned at `path`. */
function pinnedMap(path: string): { id: number; type: string } {
  return JSON.parse(execFileSync('bpftool', ['-j', 'map', 'show', 'pinned', path], { encoding: 'utf8' }));
}

function load(): Array<[string, string]> {
  const stale: Array<[string, string]> = [];
  const obj = BpfObject.open(L4_OBJ, { pinMapsDir: mapsDir, onStalePin: (map, why) => stale.push([map, why]) });
  try {
    obj.load();
  } finally {
    obj.close();
  }
  return stale;
}

test('a pinned map of another definition is replaced and reported; one that fits is reused', () => {
  ensureBpffs(pinDir);
  mkdirSync(mapsDir, { recursive: true });
  const originPin = join(mapsDir, 'kmesh_sock_origin');
  // the earlier build's definition: LRU hash, socket cookie → struct kmesh_sock_origin
  execFileSync('bpftool', [
    'map',
    'create',
    originPin,
    'type',
    'lru_hash',
    'key',
    '8',
    'value',
    '40',
    'entries',
    '65536',
    'name',
    'kmesh_sock_origin',
  ]);
  assert.equal(pinnedMap(originPin).type, 'lru_hash');

  const stale = load();
  assert.deepEqual(
    stale.map(([map]) => map),
    ['kmesh_sock_origin'],
  );
  assert.match(
    stale[0]?.[1] ?? '',
    /^type 9 \(pinned\) vs 24, key_size 8 \(pinned\) vs 4, max_entries 65536 \(pinned\) vs 0/,
  );
  const renewed = pinnedMap(originPin);
  assert.equal(renewed.type, 'sk_storage');
  const listeners = pinnedMap(join(mapsDir, 'kmesh_listeners')).id;

  // the next start finds every pin fitting: nothing replaced, the same maps
  assert.deepEqual(load(), []);
  assert.equal(pinnedMap(originPin).id, renewed.id);
  assert.equal(pinnedMap(join(mapsDir, 'kmesh_listeners')).id, listeners);
});
