/**
 * What the daemon last wrote to the maps, as the probe (naming a connection) and the
 * dumps read it: the config version, the model, cluster names by the ids the maps use,
 * and the listener index the kernel matches. A read-only view over the daemon's state:
 * applies are synchronous, so a reader never sees half of one config and half of the
 * next, and no apply pays for copying the whole config.
 */
import { encodeAddr, isV4Mapped } from '../model/address.js';
import type { MeshModel } from '../model/types.js';
import { boundKey } from '../model/validate.js';
import type { MeshState } from './mesh-state.js';

export interface AppliedConfig {
  /** Increments on every successful apply; 0 before the first. */
  readonly version: number;
  model(): MeshModel;
  clusterNameOf(id: number): string | undefined;
  /** The TCP listener a dialled address matched, the wildcard of its family included (as the kernel does). */
  listenerOf(address: string, port: number): string | undefined;
}

export function appliedView(mesh: MeshState, version: () => number): AppliedConfig {
  const at = (address: string, port: number) => mesh.listenerAt(boundKey({ address, port, protocol: 'tcp' }));
  return Object.freeze({
    get version() {
      return version();
    },
    model: () => mesh.model(),
    clusterNameOf: (id: number) => mesh.clusterName(id),
    listenerOf: (address: string, port: number) =>
      at(address, port) ?? at(isV4Mapped(encodeAddr(address)) ? '0.0.0.0' : '::', port),
  });
}
