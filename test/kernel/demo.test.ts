/** The README's main job, end to end: the demo steers, counts, and leaves nothing behind. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const DEMO = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'demo', 'run.js');

test('npm run demo: requests to the VIP land on all three backends, L7 routes pick by header and path, metrics count them, cleanup is complete', () => {
  const run = spawnSync(process.execPath, [DEMO, '--rounds', '1'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(run.status, 0, run.stderr);
  const out = run.stdout;
  assert.match(out, /unregistered process asking the VIP gets: error ECONNREFUSED/);
  const landed = [...out.matchAll(/^ {2}(reviews-v\d[^\d]*?)\s+(\d+)\s+[\d.]+ %/gm)].map((m) => [
    m[1]?.trim(),
    Number(m[2]),
  ]);
  assert.equal(landed.length, 3, out);
  assert.equal(
    landed.reduce((n, [, c]) => n + Number(c), 0),
    200,
  );
  const counted = [
    ...out.matchAll(/kmesh_tcp_connections_opened_total\{.*destination_service="reviews",.*\} (\d+)/g),
  ].reduce((n, m) => n + Number(m[1]), 0);
  assert.equal(counted, 200, 'kmesh-probe counted every steered connection');
  // L7 next to the L4 split: a header canary and a path route, in the kernel
  assert.match(out, /GET \/reviews\s+x-canary: 1\s+-> reviews-v2\n/);
  assert.match(out, /GET \/v2\/reviews\s+path \/v2\/\s+-> reviews-v2\n/);
  assert.match(out, /GET \/reviews\s+no route\s+-> reviews-v1 \(replica [ab]\)\n/);
  assert.equal(existsSync('/sys/fs/bpf/kmesh-demo'), false, 'demo pins removed');
});
