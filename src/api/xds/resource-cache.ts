/**
 * Decoded resources with the exact bytes they were decoded from. A SotW push resends every resource; the ones
 * whose bytes did not change keep their decoded object, so decoding is skipped and the client can tell "nothing
 * changed" by object identity (and the model keeps the same objects for unchanged clusters).
 *
 * A resource is compared (memcmp) with the one at the same position of the last response — control planes send
 * a type's resources in a stable order — and else with the one of the name read off its bytes (field 1 in Cluster,
 * ClusterLoadAssignment, Listener and RouteConfiguration alike): an unchanged resource costs no allocation. (Keying
 * by the bytes as a latin1 string, as before, made 400 KB of new strings per 1,000-assignment resend, all kept by
 * the cache: V8's old generation grew by that much per resend.) Position and name only find the candidate; equal
 * bytes decide, so a wrong candidate is just a miss.
 */
import type { Slicer } from '../../runtime/slicer.js';
import { anyAt, type DecodedResponse, LIMITS, unwrap } from './decode.js';
import { strictReader } from './reader.js';
import { XdsResourceError } from './resources.js';

interface Held<T> {
  /** A copy: the response's buffer is not kept alive by one resource of it. */
  bytes: Uint8Array;
  r: T;
}

const NAME_TAG = (1 << 3) | 2; // field 1, length-delimited

/** Field 1 of a resource as a string ('' when it is not the first field or the bytes do not parse). */
function nameOf(bytes: Uint8Array): string {
  try {
    const reader = strictReader(bytes);
    return reader.uint32() === NAME_TAG ? reader.string() : '';
  } catch {
    return ''; // malformed: the full decode NACKs it
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && Buffer.compare(a, b) === 0;
}

/** Whether resource `i` of a response (`all`, `bounds`: see AnyList) has exactly the bytes `held`. */
function sameRange(all: Buffer, bounds: number[], i: number, held: Uint8Array): boolean {
  const start = bounds[2 * i] as number;
  const end = bounds[2 * i + 1] as number;
  return end - start === held.byteLength && all.compare(held, 0, held.byteLength, start, end) === 0;
}

/** What one response decoded, in its order, kept by commit(). */
export type Staged<T> = Held<T>[];

/** Resources a response is read in between two turns of the event loop (a full decode is ~30 µs). */
const SLICE_EVERY = 64;

export class ResourceCache<T extends { name: string }> {
  private held = new Map<string, Held<T>>();
  /** The last response's resources in its order. */
  private last: Held<T>[] = [];

  /** Decodes all resources of one response (names must be unique); returns the map and the cache to keep. */
  async decode(
    resp: DecodedResponse,
    one: (bytes: Uint8Array, index: number) => T,
    slice: Slicer,
  ): Promise<{ resources: Map<string, T>; staged: Staged<T> }> {
    const list = resp.resources;
    const count = list.typeUrls.length;
    if (count > LIMITS.resourcesPerResponse) {
      throw new XdsResourceError(`${count} resources in one response (limit ${LIMITS.resourcesPerResponse})`);
    }
    const all = Buffer.from(list.bytes.buffer, list.bytes.byteOffset, list.bytes.byteLength);
    const resources = new Map<string, T>();
    const staged: Staged<T> = [];
    // By index, not entries(): a resend of 1,000 made 1,000 [index, value] pairs just to walk them.
    for (let i = 0; i < count; i++) {
      if (i % SLICE_EVERY === 0) await slice.next();
      let h = this.last[i];
      // The common case, the same resource at the same place: compared in place, nothing allocated.
      if (!h || list.typeUrls[i] !== resp.typeUrl || !sameRange(all, list.bounds, i, h.bytes)) {
        const bytes = unwrap(anyAt(list, i), resp.typeUrl, i);
        if (!h || !sameBytes(h.bytes, bytes)) {
          const prev = this.held.get(nameOf(bytes));
          h = prev && sameBytes(prev.bytes, bytes) ? prev : { bytes: new Uint8Array(bytes), r: one(bytes, i) };
        }
      }
      const name = h.r.name;
      if (resources.has(name)) throw new XdsResourceError(`duplicate resource name "${name}"`);
      resources.set(name, h.r);
      staged.push(h);
    }
    return { resources, staged };
  }

  /**
   * Keeps what a response decoded: in place of the cache (CDS/LDS: a response is the whole set), or beside it
   * (EDS/RDS carry a subset: a resource replaces only the entry of its own name, at the cost of the resources sent).
   */
  commit(staged: Staged<T>, partial: boolean): void {
    this.last = staged;
    if (!partial) this.held = new Map();
    for (const h of staged) this.held.set(h.r.name, h);
  }

  /** Resources the model no longer holds (nothing refers to them). */
  forget(names: Iterable<string>): void {
    for (const name of names) this.held.delete(name);
  }
}
