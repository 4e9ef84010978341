/**
 * Cluster names → 32-bit ids for the maps. Derived from the name (FNV-1a) so that a
 * restarted daemon finds its clusters in the pinned maps without a state file; a
 * collision moves the later name (in sorted order) to the next free id.
 */
export function fnv1a32(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x80) return fnv1a32Bytes(Buffer.from(text, 'utf8')); // not ASCII: hash its UTF-8 bytes
    hash = Math.imul(hash ^ c, 0x01000193) >>> 0;
  }
  return hash;
}

function fnv1a32Bytes(bytes: Buffer): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) hash = Math.imul(hash ^ (bytes[i] as number), 0x01000193) >>> 0;
  return hash;
}

/** Names repeat from apply to apply; their hashes need not be recomputed (bounded: cleared when large). */
const hashes = new Map<string, number>();
const MAX_REMEMBERED = 100_000;

function hashOf(name: string): number {
  let hash = hashes.get(name);
  if (hash === undefined) {
    if (hashes.size >= MAX_REMEMBERED) hashes.clear();
    hash = fnv1a32(name);
    hashes.set(name, hash);
  }
  return hash;
}

/** Ids for new names, in sorted order, avoiding the ids `inUse` already has. */
export function assignClusterIds(
  names: Iterable<string>,
  inUse: { has(id: number): boolean } = new Set<number>(),
): Map<string, number> {
  const ids = new Map<string, number>();
  const taken = { ids: new Set<number>(), has: (id: number) => taken.ids.has(id) || inUse.has(id) };
  for (const name of [...names].sort()) {
    let id = hashOf(name);
    while (taken.has(id)) id = (id + 1) >>> 0;
    taken.ids.add(id);
    ids.set(name, id);
  }
  return ids;
}
