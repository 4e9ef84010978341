/**
 * State-of-the-world ADS (StreamAggregatedResources). Every CDS/LDS response carries the whole set, EDS/RDS
 * responses the named resources they carry (others keep their last value). Resources are compared with the last
 * accepted ones by their bytes (ResourceCache): only those that changed are decoded and staged, so a resend of
 * 1,000 clusters with one changed costs one cluster's conversion.
 */
import type { Slicer } from '../../runtime/slicer.js';
import { DECODERS, type DecodedResponse, decodeResponse } from './decode.js';
import type { XdsModelBuilder } from './model-builder.js';
import {
  GRPC_INVALID_ARGUMENT,
  heldOf,
  type Protocol,
  type Received,
  stageResource,
  TYPES,
  WILDCARD,
  wanted,
} from './protocol.js';
import { ADS_METHOD, xdsTypes } from './protos.js';
import { ResourceCache } from './resource-cache.js';
import { XdsResourceError } from './resources.js';

export interface SotwReceived extends Received {
  resp: DecodedResponse;
}

export class SotwProtocol implements Protocol<SotwReceived> {
  readonly mode = 'sotw';
  readonly method = ADS_METHOD;
  private readonly caches = new Map(TYPES.map((t) => [t as string, new ResourceCache<{ name: string }>()]));
  /** version_info last ACKed per type. */
  private readonly versions = new Map<string, string>();
  /** Per stream: the last nonce per type (a subscription change answers it). */
  private nonces = new Map<string, string>();
  private staged: Array<{ r: SotwReceived; commit: () => void }> = [];

  open(node: Record<string, unknown>, subs: ReadonlyMap<string, string[]>): Uint8Array[] {
    this.nonces = new Map();
    const out: Uint8Array[] = [];
    for (const t of TYPES) {
      const names = subs.get(t);
      if (!WILDCARD.has(t) && (names ?? []).length === 0) continue; // nothing to ask for yet (EDS/RDS follow CDS/LDS)
      // The last ACKed versions, so a server that kept its state need not resend everything.
      out.push(
        encode(
          { typeUrl: t, versionInfo: this.versions.get(t) ?? '', ...(out.length === 0 ? { node } : {}) },
          names ?? [],
        ),
      );
    }
    return out;
  }

  decode(buf: Uint8Array, receivedAt: number): SotwReceived {
    const resp = decodeResponse(buf);
    this.nonces.set(resp.typeUrl, resp.nonce);
    return {
      typeUrl: resp.typeUrl,
      nonce: resp.nonce,
      version: resp.versionInfo,
      count: resp.resources.typeUrls.length,
      receivedAt,
      resp,
    };
  }

  enqueue(queue: SotwReceived[], r: SotwReceived): void {
    // Only the latest response of a type matters in SotW: a newer one replaces a queued one (flood control).
    const i = queue.findIndex((p) => p.typeUrl === r.typeUrl);
    if (i >= 0) queue.splice(i, 1);
    queue.push(r);
  }

  async stage(r: SotwReceived, b: XdsModelBuilder, note: (msg: string) => void, slice: Slicer): Promise<void> {
    const cache = this.caches.get(r.typeUrl);
    const decoder = DECODERS[r.typeUrl as keyof typeof DECODERS];
    if (!cache || !decoder) throw new XdsResourceError(`unknown or unsubscribed type URL "${r.typeUrl}"`);
    const { resources, staged } = await cache.decode(r.resp, decoder, slice);
    const held = heldOf(b, r.typeUrl);
    // CDS/LDS: what the response leaves out is gone. EDS/RDS: left out keeps its last value.
    const gone = WILDCARD.has(r.typeUrl) ? [...held.keys()].filter((n) => !resources.has(n)) : [];
    resources.forEach((res, name) => {
      // What the builder holds as is (the cache handed back the same object): nothing to stage or look up.
      if (held.get(name) === res) return;
      if (wanted(b, r.typeUrl, name)) stageResource(b, r.typeUrl, name, res as Parameters<typeof stageResource>[3]);
      else note(`${r.typeUrl}: "${name}" was not asked for; ignored`);
    });
    for (const name of gone) stageResource(b, r.typeUrl, name, undefined);
    this.staged.push({ r, commit: () => cache.commit(staged, !WILDCARD.has(r.typeUrl)) });
  }

  commit(): void {
    for (const { r, commit } of this.staged) {
      commit();
      this.versions.set(r.typeUrl, r.version);
    }
    this.staged = [];
  }

  abort(): void {
    this.staged = [];
  }

  ack(r: SotwReceived, names: string[]): Uint8Array {
    return encode({ typeUrl: r.typeUrl, versionInfo: r.version, responseNonce: r.nonce }, names);
  }

  nack(r: SotwReceived, message: string, names: string[]): Uint8Array {
    return encode(
      {
        typeUrl: r.typeUrl,
        versionInfo: this.versions.get(r.typeUrl) ?? '',
        responseNonce: r.nonce,
        errorDetail: { code: GRPC_INVALID_ARGUMENT, message },
      },
      names,
    );
  }

  resubscribe(typeUrl: string, _prev: string[], next: string[]): Uint8Array {
    return encode(
      { typeUrl, versionInfo: this.versions.get(typeUrl) ?? '', responseNonce: this.nonces.get(typeUrl) ?? '' },
      next,
    );
  }

  forget(typeUrl: string, names: string[]): void {
    this.caches.get(typeUrl)?.forget(names);
  }
}

/**
 * resource_names encoded once per subscription (the client replaces the array when it changes): every SotW
 * request repeats the whole subscription, 1,000 EDS names ≈ 50 KB to encode for each one-endpoint ACK.
 */
const encodedNames = new WeakMap<string[], Uint8Array>();

/** A DiscoveryRequest; the names go after the other fields (concatenated messages merge in protobuf). */
function encode(req: Record<string, unknown>, names: string[]): Uint8Array {
  const t = xdsTypes();
  const head = t.DiscoveryRequest.encode(t.DiscoveryRequest.fromObject(req)).finish();
  if (names.length === 0) return head;
  let tail = encodedNames.get(names);
  if (!tail) {
    tail = t.DiscoveryRequest.encode(t.DiscoveryRequest.fromObject({ resourceNames: names })).finish();
    encodedNames.set(names, tail);
  }
  return Buffer.concat([head, tail]);
}
