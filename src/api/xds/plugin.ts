/**
 * Wiring between the daemon and the xDS client, kept here so the daemon needs two lines:
 *   if (config.xds) attachXds(daemon, parseXdsConfig(config.xds.table, config.xds.where), logger);
 * The daemon side is structural (applyXdsChange / setXdsConnected / addPlugin), so this module does not import it.
 */
import type pino from 'pino';
import type { ModelChange } from '../../model/change.js';
import { XdsClient, type XdsClientOptions } from './client.js';
import type { XdsConfig } from './config.js';

export interface XdsHost {
  /** Applies the resources that changed; throws (→ NACK) and changes nothing when the change is not acceptable. */
  applyXdsChange(change: ModelChange): Promise<void>;
  setXdsConnected(connected: boolean, address?: string): void;
  addPlugin(plugin: { name: string; stop(): Promise<void> | void }): void;
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
  host.setXdsConnected(false, config.address);
  client.on('connected', (c) => host.setXdsConnected(c, config.address));
  host.addPlugin({ name: 'xds', stop: () => client.stop() });
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
