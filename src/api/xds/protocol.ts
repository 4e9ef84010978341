/**
 * What the ADS client needs from a wire protocol (state of the world in sotw.ts, incremental in delta.ts): the
 * requests that open and follow a stream, decoding a response, and staging its resources into the builder.
 */
import type { Slicer } from '../../runtime/slicer.js';
import type { XdsModelBuilder } from './model-builder.js';
import { TYPE } from './protos.js';
import type { XCluster, XListener, XLoadAssignment, XRouteConfig } from './resources.js';

/** Subscription order Envoy uses: clusters before their endpoints, listeners before their routes. */
export const TYPES = [TYPE.cluster, TYPE.endpoint, TYPE.listener, TYPE.route] as const;
export type XdsType = (typeof TYPES)[number];

/** Types subscribed to as a whole (CDS, LDS); EDS and RDS are asked for by name. */
export const WILDCARD = new Set<string>([TYPE.cluster, TYPE.listener]);

export const SHORT: Record<XdsType, string> = {
  [TYPE.cluster]: 'CDS',
  [TYPE.endpoint]: 'EDS',
  [TYPE.listener]: 'LDS',
  [TYPE.route]: 'RDS',
};

export function shortName(typeUrl: string): string {
  return SHORT[typeUrl as XdsType] ?? typeUrl;
}

/** error_detail.code of a NACK. */
export const GRPC_INVALID_ARGUMENT = 3;

/** A response as the client queues it, whatever the protocol. */
export interface Received {
  typeUrl: string;
  nonce: string;
  /** version_info (SotW) or system_version_info (delta): for logs and the benchmark. */
  version: string;
  /** Resources (and removals) it carries. */
  count: number;
  receivedAt: number;
}

export interface Protocol<R extends Received = Received> {
  readonly mode: 'sotw' | 'delta';
  readonly method: string;
  /** A new stream: per-stream state is reset; returns the requests that subscribe with what is held. */
  open(node: Record<string, unknown>, subs: ReadonlyMap<string, string[]>): Uint8Array[];
  /** Throws (a plain Error) on bytes that are not a response of this protocol. */
  decode(buf: Uint8Array, receivedAt: number): R;
  /** Queues a response for the next batch (SotW lets a newer response of a type replace a queued one). */
  enqueue(queue: R[], r: R): void;
  /**
   * Decodes the response's resources and stages those that changed into the builder. Throws XdsResourceError
   * (→ NACK of this response) before staging anything. Yields to the event loop through `slice` while decoding.
   */
  stage(r: R, b: XdsModelBuilder, note: (msg: string) => void, slice: Slicer): Promise<void>;
  /** The staged responses were applied (commit) or refused (abort). */
  commit(): void;
  abort(): void;
  /** `names`: the type's current subscription (SotW repeats it in every request). */
  ack(r: R, names: string[]): Uint8Array;
  nack(r: R, message: string, names: string[]): Uint8Array;
  /** The EDS/RDS names to follow changed. */
  resubscribe(typeUrl: string, prev: string[], next: string[]): Uint8Array;
  /** Resources the builder dropped (nothing refers to them any more). */
  forget(typeUrl: string, names: string[]): void;
}

type Decoded = XCluster | XLoadAssignment | XListener | XRouteConfig;

/** The builder's map of decoded resources of a type. */
export function heldOf(b: XdsModelBuilder, typeUrl: string): ReadonlyMap<string, Decoded> {
  switch (typeUrl) {
    case TYPE.cluster:
      return b.state.clusters;
    case TYPE.endpoint:
      return b.state.assignments;
    case TYPE.listener:
      return b.state.listeners;
    default:
      return b.state.routes;
  }
}

/** Stages one resource (undefined: removed) of a type into the builder. */
export function stageResource(b: XdsModelBuilder, typeUrl: string, name: string, r: Decoded | undefined): void {
  if (typeUrl === TYPE.cluster) b.setCluster(name, r as XCluster | undefined);
  else if (typeUrl === TYPE.endpoint) b.setAssignment(name, r as XLoadAssignment | undefined);
  else if (typeUrl === TYPE.listener) b.setListener(name, r as XListener | undefined);
  else b.setRoute(name, r as XRouteConfig | undefined);
}

/** Whether a named resource is asked for: CDS/LDS always, EDS/RDS when a cluster/listener refers to it. */
export function wanted(b: XdsModelBuilder, typeUrl: string, name: string): boolean {
  if (WILDCARD.has(typeUrl)) return true;
  return typeUrl === TYPE.endpoint ? b.refersToAssignment(name) : b.refersToRoute(name);
}
