/** Consistent-hash tables built for the kernel: balance, weights, stability and the 1/N disruption bound. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { maglevTable, ringHashTable, type TableHost } from '../../src/controller/lb-tables.js';
import { MAGLEV_TABLE_SIZE, RING_HASH_BUCKETS } from '../../src/runtime/maps/layouts.js';

const hosts = (n: number, weight = 1): TableHost[] =>
  Array.from({ length: n }, (_, i) => ({ name: `127.0.0.${i + 1}|8080`, weight }));

/** Share of slots whose host (by name) differs between two tables over two host lists. */
function moved(a: Uint32Array, aHosts: TableHost[], b: Uint32Array, bHosts: TableHost[]): number {
  let changed = 0;
  for (let i = 0; i < a.length; i++) if (aHosts[a[i] as number]?.name !== bHosts[b[i] as number]?.name) changed++;
  return changed / a.length;
}

const builders = [
  ['maglev', (h: TableHost[]) => maglevTable(h, MAGLEV_TABLE_SIZE)],
  ['ring_hash', (h: TableHost[]) => ringHashTable(h, RING_HASH_BUCKETS)],
] as const;

describe('consistent-hash tables', () => {
  for (const [name, build] of builders) {
    test(`${name}: every slot names a host; equal weights share the table evenly`, () => {
      const h = hosts(5);
      const table = build(h);
      const counts = new Array<number>(5).fill(0);
      for (const i of table) counts[i] = (counts[i] as number) + 1;
      assert.equal(
        counts.reduce((a, b) => a + b),
        table.length,
      );
      // maglev is near-exact; a 1,024-point ring varies by a few percent per host
      const tolerance = name === 'maglev' ? 0.01 : 0.25;
      for (const c of counts) assert.ok(Math.abs(c / table.length - 0.2) <= 0.2 * tolerance, `${name}: ${counts}`);
    });

    test(`${name}: weights 1:3 give about a quarter and three quarters`, () => {
      const h = [
        { name: 'a|1', weight: 1 },
        { name: 'b|1', weight: 3 },
      ];
      const table = build(h);
      const share = table.filter((i) => i === 0).length / table.length;
      assert.ok(Math.abs(share - 0.25) < 0.05, `${name}: share of the weight-1 host ${share}`);
    });

    test(`${name}: the same hosts give the same table (a restart or another node agrees)`, () => {
      assert.deepEqual(build(hosts(7)), build(hosts(7)));
    });

    test(`${name}: removing 1 of 10 hosts moves about 1/10 of the keys`, () => {
      const before = hosts(10);
      const after = before.filter((_, i) => i !== 3);
      const share = moved(build(before), before, build(after), after);
      // the removed host's own slots (~1/10) must move; little else may
      assert.ok(share >= 0.08 && share <= 0.1 * 1.25, `${name}: ${(share * 100).toFixed(2)} % of the keys moved`);
    });

    test(`${name}: adding an 11th host moves about 1/11 of the keys`, () => {
      const before = hosts(10);
      const after = hosts(11);
      const share = moved(build(before), before, build(after), after);
      assert.ok(share <= (1 / 11) * 1.25, `${name}: ${(share * 100).toFixed(2)} % of the keys moved`);
    });
  }
});
