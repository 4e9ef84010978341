/** STRICT_DNS / LOGICAL_DNS hostnames → addresses, with the system resolver (dns.lookup honours /etc/hosts). */
import { lookup } from 'node:dns/promises';

export type Lookup = (host: string) => Promise<string[]>;

export const systemLookup: Lookup = async (host) => {
  const res = await lookup(host, { all: true, verbatim: true });
  return [...new Set(res.map((r) => r.address))].sort();
};

/**
 * Resolves every host; a failing host keeps its previous addresses (a resolver hiccup must not empty a cluster).
 * Returns the new table and whether anything changed.
 */
export async function resolveAll(
  hosts: string[],
  previous: Map<string, string[]>,
  lookupFn: Lookup,
  onError: (host: string, err: Error) => void,
): Promise<{ table: Map<string, string[]>; changed: boolean }> {
  const table = new Map<string, string[]>();
  let changed = hosts.length !== previous.size;
  await Promise.all(
    hosts.map(async (h) => {
      let addrs: string[];
      try {
        addrs = await lookupFn(h);
      } catch (e) {
        onError(h, e as Error);
        addrs = previous.get(h) ?? [];
      }
      table.set(h, addrs);
      if ((previous.get(h) ?? []).join(',') !== addrs.join(',')) changed = true;
    }),
  );
  return { table, changed };
}
