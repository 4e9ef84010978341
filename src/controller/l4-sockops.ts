/**
 * Whether kmesh_l4_sockops runs on the registered cgroups. Only a cluster with a kmesh_cluster_policy needs it:
 * connect4 marks that cluster's connections KMESH_CONN_TRACKED, and the program counts them (least_request,
 * max_connections, outlier detection), sets their connect timeout and deletes their kmesh_conn_origin entries at
 * close. Every attached sockops program runs on every callback of every socket of the cgroup (9 a short
 * connection), so a plain config attaches none: connect4 then keeps the origins that are not the endpoint's shared
 * one in socket storage, which goes with the socket (bpf/kmesh_sock_origin_map.h).
 *
 * Make-before-break: the program is attached to every registered cgroup first, then kmesh_l4_mode says so
 * (connect4 starts using the hash), then the config that needs it is written. Once on it stays on while the pins
 * live, and a restart adopts it (from the mode, or from a pinned link of the program): live connections keep hash
 * entries and counts that only its close callback takes back, so detaching it would leave them behind.
 */
import type { BpfProgram } from '../runtime/bpf-object.js';
import type { MapAccess } from '../runtime/maps/datapath-maps.js';
import { activeSlotKey, L4_SOCKOPS, l4ModeValue } from '../runtime/maps/layouts.js';
import type { ConfigDelta } from './reconciler.js';

export const L4_SOCKOPS_PROGRAM = 'kmesh_l4_sockops';

const MODE_KEY = activeSlotKey.encode({ index: 0 });

export class L4Sockops {
  private on = false;

  constructor(private readonly mode: MapAccess) {}

  /** A previous run's choice: the mode it published, or `pinned` (a link of the program outlived it). */
  adopt(pinned: boolean): void {
    const word = this.mode.lookup(MODE_KEY);
    this.on = pinned || (word !== null && (l4ModeValue.decode(word).mode & L4_SOCKOPS) !== 0);
  }

  get attached(): boolean {
    return this.on;
  }

  /**
   * What to attach to a registered cgroup: without the L4 sockops program while it is off; with it first while on
   * (a cgroup attached later has it before connect4 steers anything, and before kmesh-probe's, which reads what
   * its close callback stashes).
   */
  select(programs: readonly BpfProgram[]): BpfProgram[] {
    const rest = programs.filter((p) => p.name !== L4_SOCKOPS_PROGRAM);
    return this.on ? [...programs.filter((p) => p.name === L4_SOCKOPS_PROGRAM), ...rest] : rest;
  }

  /** Before `delta` is written: true when it brings the first cluster with a policy (attach, then publish()). */
  switchOn(delta: ConfigDelta): boolean {
    if (this.on) return false;
    for (const cluster of delta.clusters.values()) {
      if (cluster?.policy) {
        this.on = true;
        return true;
      }
    }
    return false;
  }

  /** After the attach: connect4 may keep origins in the hash from now on. */
  publish(): void {
    this.mode.update(MODE_KEY, l4ModeValue.encode({ mode: this.on ? L4_SOCKOPS : 0 }));
  }
}
