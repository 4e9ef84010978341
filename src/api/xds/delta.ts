/**
 * Incremental ADS (DeltaAggregatedResources). The server sends only what changed — resources with their own
 * versions, and the names of removed ones; the client names what it subscribes to and unsubscribes from, and on a
 * new stream tells the server every version it holds (initial_resource_versions) so that nothing unchanged is
 * sent again. CDS and LDS are wildcard subscriptions, asked for the legacy way (an empty first request), which
 * every server — istiod included — reads as "everything".
 */
import type { Slicer } from '../../runtime/slicer.js';
import { DECODERS, type DecodedDeltaResponse, decodeDeltaResponse, LIMITS, unwrap } from './decode.js';
import type { XdsModelBuilder } from './model-builder.js';
import {
  GRPC_INVALID_ARGUMENT,
  heldOf,
  type Protocol,
  type Received,
  shortName,
  stageResource,
  TYPES,
  WILDCARD,
  wanted,
} from './protocol.js';
import { DELTA_ADS_METHOD, xdsTypes } from './protos.js';
import { XdsResourceError } from './resources.js';

export interface DeltaReceived extends Received {
  resp: DecodedDeltaResponse;
}

type Decoded = NonNullable<Parameters<typeof stageResource>[3]>;

export class DeltaProtocol implements Protocol<DeltaReceived> {
  readonly mode = 'delta';
  readonly method = DELTA_ADS_METHOD;
  /** Per type: the version of every resource held (ACKed and applied). */
  private readonly versions = new Map<string, Map<string, string>>(TYPES.map((t) => [t, new Map()]));
  /** Version changes of the responses staged since the last commit/abort (undefined: removed). */
  private staged = new Map<string, Map<string, string | undefined>>();

  open(node: Record<string, unknown>, subs: ReadonlyMap<string, string[]>): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (const t of TYPES) {
      const held = this.versions.get(t) ?? new Map<string, string>();
      const names = WILDCARD.has(t) ? [] : (subs.get(t) ?? []);
      if (!WILDCARD.has(t) && names.length === 0) continue;
      const asked = new Set(names);
      const initial: Record<string, string> = {};
      for (const [n, v] of held) if (WILDCARD.has(t) || asked.has(n)) initial[n] = v;
      out.push(
        encode({
          typeUrl: t,
          resourceNamesSubscribe: names,
          initialResourceVersions: initial,
          ...(out.length === 0 ? { node } : {}),
        }),
      );
    }
    return out;
  }

  decode(buf: Uint8Array, receivedAt: number): DeltaReceived {
    const resp = decodeDeltaResponse(buf);
    return {
      typeUrl: resp.typeUrl,
      nonce: resp.nonce,
      version: resp.systemVersionInfo,
      count: resp.resources.length + resp.removed.length,
      receivedAt,
      resp,
    };
  }

  enqueue(queue: DeltaReceived[], r: DeltaReceived): void {
    queue.push(r); // each delta builds on the one before: none may be dropped, but a batch is applied at once
  }

  /** The version of a resource as staged so far in this batch, else as held. */
  private versionOf(typeUrl: string, name: string): string | undefined {
    const s = this.staged.get(typeUrl);
    return s?.has(name) ? s.get(name) : this.versions.get(typeUrl)?.get(name);
  }

  async stage(r: DeltaReceived, b: XdsModelBuilder, note: (msg: string) => void, slice: Slicer): Promise<void> {
    const { resp } = r;
    const decoder = DECODERS[r.typeUrl as keyof typeof DECODERS];
    if (!decoder) throw new XdsResourceError(`unknown or unsubscribed type URL "${r.typeUrl}"`);
    if (resp.resources.length > LIMITS.resourcesPerResponse) {
      throw new XdsResourceError(
        `${resp.resources.length} resources in one response (limit ${LIMITS.resourcesPerResponse})`,
      );
    }
    const held = heldOf(b, r.typeUrl);
    const kind = shortName(r.typeUrl);
    const upserts: Array<[string, string, Decoded]> = [];
    const seen = new Set<string>();
    for (const [i, res] of resp.resources.entries()) {
      await slice.next();
      const name = res.name;
      if (!name) throw new XdsResourceError(`${kind} resource #${i}: missing name`);
      if (seen.has(name)) throw new XdsResourceError(`duplicate resource name "${name}"`);
      seen.add(name);
      // Same name, same version, already held: unchanged (a reconnect's resend, a server that repeats itself).
      if (res.version !== '' && held.has(name) && this.versionOf(r.typeUrl, name) === res.version) continue;
      if (!wanted(b, r.typeUrl, name)) {
        note(`${kind}: "${name}" was not subscribed to; ignored`);
        continue;
      }
      if (!res.resource) throw new XdsResourceError(`${kind} resource "${name}": no resource body`);
      let decoded: Decoded;
      try {
        decoded = decoder(unwrap(res.resource, r.typeUrl, i), i) as Decoded;
      } catch (e) {
        const msg = (e as Error).message;
        throw new XdsResourceError(msg.includes(name) ? msg : `${kind} resource "${name}": ${msg}`);
      }
      if (decoded.name !== name) {
        throw new XdsResourceError(`${kind} resource "${name}": the resource inside is named "${decoded.name}"`);
      }
      upserts.push([name, res.version, decoded]);
    }
    const removals: string[] = [];
    for (const name of resp.removed) {
      if (seen.has(name)) throw new XdsResourceError(`${kind} resource "${name}": both updated and removed`);
      // Envoy's rule: a removal of something never received is not an error (the server may not know).
      if (held.has(name)) removals.push(name);
      else note(`${kind}: removal of "${name}", which was never received; ignored`);
    }
    let s = this.staged.get(r.typeUrl);
    if (!s) {
      s = new Map();
      this.staged.set(r.typeUrl, s);
    }
    for (const [name, version, decoded] of upserts) {
      stageResource(b, r.typeUrl, name, decoded);
      s.set(name, version);
    }
    for (const name of removals) {
      stageResource(b, r.typeUrl, name, undefined);
      s.set(name, undefined);
    }
  }

  commit(): void {
    for (const [t, changes] of this.staged) {
      const v = this.versions.get(t) ?? new Map<string, string>();
      for (const [name, version] of changes) {
        if (version === undefined) v.delete(name);
        else v.set(name, version);
      }
    }
    this.staged = new Map();
  }

  abort(): void {
    this.staged = new Map();
  }

  ack(r: DeltaReceived): Uint8Array {
    return encode({ typeUrl: r.typeUrl, responseNonce: r.nonce });
  }

  nack(r: DeltaReceived, message: string): Uint8Array {
    return encode({
      typeUrl: r.typeUrl,
      responseNonce: r.nonce,
      errorDetail: { code: GRPC_INVALID_ARGUMENT, message },
    });
  }

  resubscribe(typeUrl: string, prev: string[], next: string[]): Uint8Array {
    const before = new Set(prev);
    const after = new Set(next);
    return encode({
      typeUrl,
      resourceNamesSubscribe: next.filter((n) => !before.has(n)),
      resourceNamesUnsubscribe: prev.filter((n) => !after.has(n)),
    });
  }

  forget(typeUrl: string, names: string[]): void {
    const v = this.versions.get(typeUrl);
    for (const n of names) v?.delete(n);
  }
}

function encode(req: Record<string, unknown>): Uint8Array {
  const t = xdsTypes();
  return t.DeltaDiscoveryRequest.encode(t.DeltaDiscoveryRequest.fromObject(req)).finish();
}
