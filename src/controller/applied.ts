/**
 * What the daemon last wrote to the maps, as one immutable value: the model, the
 * cluster ids the maps use, and the listener index the kernel matches. Replaced whole
 * on every apply, so a reader (the probe naming a connection, D-Bus dumping the
 * config) never sees half of one config and half of the next.
 */

import { encodeAddr, isV4Mapped } from '../model/address.js';
import { emptyModel, type MeshModel } from '../model/types.js';
import { addressKey } from '../model/validate.js';

export class AppliedConfig {
  private readonly clusterNames: ReadonlyMap<number, string>;
  /** "<address key>|<port>" → TCP listener name. */
  private readonly tcpListeners: ReadonlyMap<string, string>;

  constructor(
    /** Increments on every successful apply; 0 before the first. */
    readonly version: number,
    readonly model: MeshModel,
    clusterIds: ReadonlyMap<string, number>,
  ) {
    this.clusterNames = new Map([...clusterIds].map(([name, id]) => [id, name]));
    this.tcpListeners = new Map(
      model.listeners.filter((l) => l.protocol !== 'udp').map((l) => [`${addressKey(l.address)}|${l.port}`, l.name]),
    );
    Object.freeze(this);
  }

  static readonly NONE = new AppliedConfig(0, emptyModel(), new Map());

  clusterNameOf(id: number): string | undefined {
    return this.clusterNames.get(id);
  }

  /** Cluster id → name, for dumps. */
  clusterNamesById(): ReadonlyMap<number, string> {
    return this.clusterNames;
  }

  /** The listener a dialled address matched, the wildcard of its family included (as the kernel does). */
  listenerOf(address: string, port: number): string | undefined {
    const wildcard = isV4Mapped(encodeAddr(address)) ? '0.0.0.0' : '::';
    return (
      this.tcpListeners.get(`${addressKey(address)}|${port}`) ??
      this.tcpListeners.get(`${addressKey(wildcard)}|${port}`)
    );
  }
}
