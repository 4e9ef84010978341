/**
 * Wiring between the daemon and the xDS client, kept here so the daemon needs two lines:
 *   if (config.xds) attachXds(daemon, parseXdsConfig(config.xds.table, config.xds.where), logger);
 * The daemon side is structural (applyXds / setXdsConnected / addPlugin), so this module does not import it.
 */
import type pino from 'pino';
import type { MeshModel } from '../../model/types.js';
import { XdsClient, type XdsClientOptions } from './client.js';
import type { XdsConfig } from './config.js';

export interface XdsHost {
  /** Throws (→ NACK) and changes nothing when the model is not acceptable. */
  applyXds(model: MeshModel): Promise<void>;
  setXdsConnected(connected: boolean, address?: string): void;
  addPlugin(plugin: { name: string; stop(): Promise<void> | void }): void;
}

export function attachXds(
  host: XdsHost,
  config: XdsConfig,
  logger: pino.Logger,
  opts: XdsClientOptions = {},
): XdsClient {
  const client = new XdsClient(config, (model) => host.applyXds(model), logger, opts);
  host.setXdsConnected(false, config.address);
  client.on('connected', (c) => host.setXdsConnected(c, config.address));
  host.addPlugin({ name: 'xds', stop: () => client.stop() });
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
