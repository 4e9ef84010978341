/**
 * Wiring between the daemon and the xDS client (src/bin/compose.ts calls it). The daemon
 * side is structural (applyXdsChange, addDumpSection), so this module does not import it;
 * the client owns its connection state (`client.connected`), which the composition shows
 * in status.
 */
import type pino from 'pino';
import type { ModelChange } from '../../model/change.js';
import { XdsClient, type XdsClientOptions } from './client.js';
import type { XdsConfig } from './config.js';

export interface XdsHost {
  /** Applies the resources that changed; throws (→ NACK) and changes nothing when the change is not acceptable. */
  applyXdsChange(change: ModelChange): Promise<void>;
  /** A section of `kmeshctl dump` (JSON), read when dumped. */
  addDumpSection(name: string, section: () => unknown): void;
}

export function attachXds(
  host: XdsHost,
  config: XdsConfig,
  logger: pino.Logger,
  opts: XdsClientOptions = {},
): XdsClient {
  const client = new XdsClient(config, (change) => host.applyXdsChange(change), logger, opts);
  host.addDumpSection('xds', () => ({ ...client.dump(), ...client.stats() }));
  client.start();
  return client;
}

/** Accepted and rejected responses by short type name ("Cluster", "Listener", …), for metrics. */
export function countXdsResponses(
  client: XdsClient,
): () => { pushes: Record<string, number>; nacks: Record<string, number> } {
  const pushes: Record<string, number> = {};
  const nacks: Record<string, number> = {};
  const shortName = (typeUrl: string) => typeUrl.slice(typeUrl.lastIndexOf('.') + 1);
  client.on('push', (typeUrl) => {
    pushes[shortName(typeUrl)] = (pushes[shortName(typeUrl)] ?? 0) + 1;
  });
  client.on('nack', (typeUrl) => {
    nacks[shortName(typeUrl)] = (nacks[shortName(typeUrl)] ?? 0) + 1;
  });
  return () => ({ pushes: { ...pushes }, nacks: { ...nacks } });
}
