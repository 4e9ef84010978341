/** Cluster ids are FNV-1a of the name's UTF-8 bytes: a restarted daemon (and bench/tests) must find the same ids. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fnv1a32 } from '../../src/controller/cluster-ids.js';

test('fnv1a32: the published FNV-1a 32-bit vectors, ASCII and UTF-8 names alike', () => {
  assert.equal(fnv1a32(''), 0x811c9dc5);
  assert.equal(fnv1a32('a'), 0xe40c292c);
  assert.equal(fnv1a32('foobar'), 0xbf9cf968);
  // byte by byte, as the definition says: a non-ASCII name hashes its UTF-8 encoding
  const reference = (text: string) => {
    let hash = 0x811c9dc5;
    for (const byte of Buffer.from(text, 'utf8')) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
    return hash;
  };
  for (const name of ['outbound|8080||svc1.bench.svc.cluster.local', 'svc-ü', '名前', 'a\u{1f600}b'])
    assert.equal(fnv1a32(name), reference(name), name);
});
