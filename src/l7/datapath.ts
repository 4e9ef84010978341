/**
 * The L7 data path in user space: loads build/bpf/kmesh_l7.bpf.o (maps pinned with the
 * L4 object's, so connect4 and these programs share kmesh_l7_listeners), attaches the
 * socket-map programs, writes the route tables, keeps the upstream pools filled and runs
 * the anchor listener.
 */

import { closeSync } from 'node:fs';
import { Socket } from 'node:net';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { MeshModel } from '../model/types.js';
import type { BpfMap } from '../runtime/bpf-map.js';
import { BpfObject, type BpfProgram, warnStalePins } from '../runtime/bpf-object.js';
import { check } from '../runtime/errors.js';
import { libbpf } from '../runtime/libbpf.js';
import { Anchor } from './anchor.js';
import { DrainMarkers } from './drain.js';
import {
  type Anchor as AnchorAddress,
  type DesiredL7,
  desiredL7,
  type Entry,
  type PoolPlan,
  poolKey,
  type RouteName,
} from './encode.js';
import { ANCHOR_FDNAME, CONN_FDNAME, dropStoredFds, fdStoreAvailable, storeFds, takeInheritedFds } from './fd-store.js';
import { L7_COUNTERS, L7_STAGES, l7Cluster, l7RouteStatKey } from './layouts.js';
import { type ConnectFailure, UpstreamPool } from './pool.js';
import { KernelReports } from './reports.js';

export const L7_OBJECT = 'kmesh_l7.bpf.o';
export const L7_SOCKOPS = 'kmesh_l7_sockops';
const MAX_POOLS = 4096;
/** How often pools are topped up besides after each accepted connection. */
const REFILL_MS = 20;

export interface L7Options {
  pinMapsDir: string;
  bpfObjectDir: string;
  anchor: AnchorAddress;
  /** Ready sockets kept per endpoint (at most 64). */
  poolDepth: number;
  logger: Logger;
}

type TableName = keyof DesiredL7['tables'];
/** Written in this order (what a listener points to exists before it); deleted in reverse. */
const TABLE_MAPS: Array<[TableName, string]> = [
  ['clusters', 'kmesh_l7_clusters'],
  ['routes', 'kmesh_l7_routes'],
  ['vhosts', 'kmesh_l7_vhosts'],
  ['headerNames', 'kmesh_l7_header_names'],
  ['domains', 'kmesh_l7_domains'],
  ['listeners', 'kmesh_l7_listeners'],
];

export class L7Datapath {
  private readonly live = new Map<TableName, Map<string, Buffer>>();
  private readonly pools = new Map<string, UpstreamPool>();
  private readonly poolIds = new Map<string, number>();
  private routeNames = new Map<number, RouteName>();
  private readonly anchor: Anchor;
  private refillTimer: NodeJS.Timeout | undefined;
  private refillQueued = false;
  private anchorAddress: AnchorAddress;
  private markers: DrainMarkers | undefined;
  private reports: KernelReports | undefined;
  /** The clusters each pooled endpoint serves (its failed connects count for each). */
  private poolPlans = new Map<string, PoolPlan>();
  private maxPending = new Map<number, number>();
  connectFailures = 0;
  connectTimeouts = 0;

  private constructor(
    private readonly obj: BpfObject,
    private readonly options: L7Options,
  ) {
    this.anchorAddress = options.anchor;
    for (const [table, map] of TABLE_MAPS) {
      // adopt what a previous daemon wrote: stale entries are deleted by the first write
      this.live.set(
        table,
        new Map(
          obj
            .map(map)
            .entries()
            .map(([k, v]) => [k.toString('hex'), v]),
        ),
      );
    }
    this.keepPoolIds();
    this.anchor = new Anchor(
      { conns: obj.map('kmesh_l7_conns'), peers: obj.map('kmesh_l7_peers'), clients: obj.map('kmesh_l7_clients') },
      {
        collectTaken: () => this.refillAll(),
        accepted: () => this.scheduleRefill(),
        endpointOfPool: (id) => {
          for (const pool of this.pools.values()) if (pool.id === id) return pool;
          return undefined;
        },
        maxPending: (clusterId) => this.maxPending.get(clusterId),
        connectFailed: (clusterId, endpoint, cause) => this.report([clusterId], endpoint, cause),
        overflow: (clusterId) => this.reports?.overflow(clusterId),
      },
      options.logger,
    );
  }

  /**
   * A previous daemon's pool ids stay: connections it routed name them (kmesh_l7_conns.pool_id), and one that
   * waited in the anchor's backlog through a restart takes the slow path to the endpoint its id meant.
   */
  private keepPoolIds(): void {
    for (const value of this.live.get('clusters')?.values() ?? []) {
      const c = l7Cluster.decode(value);
      for (let i = 0; i < c.endpoint_count; i++) {
        const ip = [...c.ep_ip4.subarray(4 * i, 4 * i + 4)].join('.');
        this.poolIds.set(poolKey(ip, c.ep_port[i] as number), c.pool_ids[i] as number);
      }
    }
  }

  /** Loads the object and attaches the socket-map programs; throws when the kernel refuses. */
  static load(options: L7Options): L7Datapath {
    const obj = BpfObject.open(join(options.bpfObjectDir, L7_OBJECT), {
      pinMapsDir: options.pinMapsDir,
      onStalePin: warnStalePins(options.logger),
    });
    try {
      obj.load();
      const attach = (prog: string, map: string) => {
        const p = obj.program(prog);
        check(`attach ${prog} to ${map}`, libbpf.progAttach(p.fd, obj.map(map).fd, p.attachType, 0));
      };
      const stages = obj.map('kmesh_l7_stages');
      for (const [i, name] of L7_STAGES.entries()) {
        const key = Buffer.alloc(4);
        key.writeUInt32LE(i);
        const fd = Buffer.alloc(4);
        fd.writeUInt32LE(obj.program(name).fd);
        stages.update(key, fd);
      }
      attach('kmesh_l7_msg', 'kmesh_l7_clients');
      attach('kmesh_l7_upstream_parser', 'kmesh_l7_upstreams');
      attach('kmesh_l7_upstream_verdict', 'kmesh_l7_upstreams');
      attach('kmesh_l7_marker_parser', 'kmesh_l7_markers');
      attach('kmesh_l7_marker_verdict', 'kmesh_l7_markers');
      attach('kmesh_l7_report_parser', 'kmesh_l7_reports');
      attach('kmesh_l7_report_verdict', 'kmesh_l7_reports');
    } catch (err) {
      obj.close();
      throw err;
    }
    return new L7Datapath(obj, options);
  }

  /** Attached to every registered cgroup next to the L4 programs. */
  sockopsProgram(): BpfProgram {
    return this.obj.program(L7_SOCKOPS);
  }

  /** Listens on the anchor address (port 0: one the kernel picks); connect4 learns it from the listener entries. */
  async start(): Promise<void> {
    const inherited = takeInheritedFds();
    const anchorFd = inherited.find((f) => f.name === ANCHOR_FDNAME)?.fd;
    this.anchorAddress = await this.anchor.listen(this.options.anchor.address, this.options.anchor.port, anchorFd);
    const listenFd = this.anchor.listenFd();
    if (anchorFd === undefined && listenFd !== undefined && fdStoreAvailable()) storeFds(ANCHOR_FDNAME, [listenFd]);
    this.markers = await DrainMarkers.open(
      {
        markers: this.obj.map('kmesh_l7_markers'),
        ring: this.obj.map('kmesh_l7_marker_ring'),
        head: this.obj.map('kmesh_l7_marker_head'),
      },
      this.anchorAddress.address,
    );
    this.anchor.useMarkers(this.markers);
    this.reports = await KernelReports.open(this.obj.map('kmesh_l7_reports'), this.anchorAddress.address);
    const handed = inherited.filter((f) => f.name === CONN_FDNAME);
    if (handed.length > 0) {
      // ours now: systemd's copies would keep every socket open that we close
      dropStoredFds(CONN_FDNAME);
      const sockets = handed.flatMap(({ fd }) => {
        try {
          return [new Socket({ fd, readable: true, writable: true, allowHalfOpen: true })];
        } catch (err) {
          this.options.logger.debug({ fd, err: (err as Error).message }, 'L7 handed-over fd not a TCP socket');
          closeSync(fd);
          return [];
        }
      });
      this.anchor.adopt(sockets, this.anchorAddress);
      this.options.logger.info(
        {
          sockets: sockets.length,
          unusable: handed.length - sockets.length,
          pairs: this.anchor.openPairs,
          anchor: anchorFd !== undefined,
        },
        'L7 sockets taken over from the previous daemon',
      );
    }
    this.refillTimer = setInterval(() => this.refillAll(), REFILL_MS);
    this.refillTimer.unref();
  }

  /** Pure apart from pool ids: throws (and changes nothing) when the routes do not fit. */
  plan(
    model: MeshModel,
    clusterIds: Map<string, number>,
    assignIds: (names: string[]) => Map<string, number>,
  ): DesiredL7 {
    return desiredL7(model, clusterIds, this.anchorAddress, (endpoint) => this.poolIdOf(endpoint), assignIds);
  }

  private poolIdOf(endpoint: string): number {
    let id = this.poolIds.get(endpoint);
    if (id === undefined) {
      const used = new Set(this.poolIds.values());
      id = 0;
      while (used.has(id)) id++;
      if (id >= MAX_POOLS) throw new Error(`more than ${MAX_POOLS} endpoints behind HTTP routes`);
      this.poolIds.set(endpoint, id);
    }
    return id;
  }

  write(desired: DesiredL7): void {
    for (const [endpoint, plan] of desired.endpoints) {
      let pool = this.pools.get(endpoint);
      if (!pool) {
        const [address, port] = [
          endpoint.slice(0, endpoint.lastIndexOf(':')),
          Number(endpoint.slice(endpoint.lastIndexOf(':') + 1)),
        ];
        pool = this.newPool(this.poolIdOf(endpoint), address, port);
        this.pools.set(endpoint, pool);
      }
      pool.connectTimeoutMs = plan.connectTimeoutMs;
    }
    // the slow path can find the endpoint of each pool id now
    this.anchor.serve();
    this.poolPlans = desired.endpoints;
    this.maxPending = desired.maxPending;
    for (const [table, map] of TABLE_MAPS) this.writeTable(table, this.obj.map(map), desired.tables[table], 'upsert');
    for (const [table, map] of [...TABLE_MAPS].reverse())
      this.writeTable(table, this.obj.map(map), desired.tables[table], 'delete');
    for (const [endpoint, pool] of this.pools) {
      if (desired.endpoints.has(endpoint)) continue;
      pool.close();
      this.pools.delete(endpoint);
      this.poolIds.delete(endpoint);
    }
    for (const endpoint of [...this.poolIds.keys()]) if (!this.pools.has(endpoint)) this.poolIds.delete(endpoint);
    this.routeNames = desired.routeNames;
    this.refillAll();
  }

  private writeTable(table: TableName, map: BpfMap, want: Map<string, Entry>, phase: 'upsert' | 'delete'): void {
    const live = this.live.get(table) as Map<string, Buffer>;
    if (phase === 'upsert') {
      for (const [hex, { key, value }] of want) {
        if (live.get(hex)?.equals(value)) continue;
        map.update(key, value);
        live.set(hex, value);
      }
      return;
    }
    for (const hex of [...live.keys()]) {
      if (want.has(hex)) continue;
      map.delete(Buffer.from(hex, 'hex'));
      live.delete(hex);
    }
  }

  private newPool(id: number, address: string, port: number): UpstreamPool {
    return new UpstreamPool(
      id,
      address,
      port,
      this.options.poolDepth,
      {
        upstreams: this.obj.map('kmesh_l7_upstreams'),
        slots: this.obj.map('kmesh_l7_pool_slots'),
        filled: this.obj.map('kmesh_l7_pool_filled'),
        taken: this.obj.map('kmesh_l7_pool_taken'),
      },
      {
        adopted: (socket, key, giveUp) => this.anchor.adoptUpstream(socket, key, giveUp),
        connectFailed: (pool, err, cause) => {
          const endpoint = poolKey(pool.address, pool.port);
          // one line when an endpoint starts failing; the pool then backs off and probes one connect at a time
          if (pool.failing === 1) this.options.logger.warn({ endpoint, err: err.message }, 'L7 pool cannot connect');
          this.connectFailures++;
          if (cause === 'timeout') this.connectTimeouts++;
          this.report(this.poolPlans.get(endpoint)?.clusterIds ?? [], pool, cause);
        },
        recovered: (pool, failures) =>
          this.options.logger.info({ endpoint: poolKey(pool.address, pool.port), failures }, 'L7 pool connects again'),
      },
    );
  }

  /**
   * A pool or slow-path connect failed: when the endpoint is to blame, a failure of it in each of the
   * clusters for the kernel's outlier detection (as a failed application connect at L4).
   */
  private report(clusterIds: number[], endpoint: { address: string; port: number }, cause: ConnectFailure): void {
    if (cause === 'local') return;
    for (const id of clusterIds) this.reports?.connectFailed(id, endpoint.address, endpoint.port, cause === 'timeout');
  }

  /** Top the pools up; coalesced so a burst of accepts costs one pass. */
  refillAll(): void {
    for (const pool of this.pools.values()) pool.refill();
  }

  scheduleRefill(): void {
    if (this.refillQueued) return;
    this.refillQueued = true;
    setImmediate(() => {
      this.refillQueued = false;
      this.refillAll();
    });
  }

  /** Kernel counters (summed over CPUs) and the daemon's own. */
  counters(): Record<string, number> {
    const map = this.obj.map('kmesh_l7_counters');
    const out: Record<string, number> = {};
    for (const [i, name] of L7_COUNTERS.entries()) {
      const key = Buffer.alloc(4);
      key.writeUInt32LE(i);
      const perCpu = map.lookup(key);
      let sum = 0n;
      for (let at = 0; perCpu && at < map.valueBytes; at += map.valueStride) sum += perCpu.readBigUInt64LE(at);
      out[name] = Number(sum);
    }
    out.pool_connects = [...this.pools.values()].reduce((s, p) => s + p.connects, 0);
    out.pool_connect_failures = this.connectFailures;
    out.pool_connect_timeouts = this.connectTimeouts;
    out.slow_path_overflows = this.anchor.stats.slowPathOverflows;
    out.slow_path_spliced = this.anchor.stats.slowPathSpliced;
    out.slow_path_failed = this.anchor.stats.slowPathFailed;
    out.accepted = this.anchor.stats.accepted;
    out.drain_markers = this.anchor.stats.drainMarkers;
    out.fin_fallbacks = this.anchor.stats.finFallbacks;
    out.open_pairs = this.anchor.openPairs;
    return out;
  }

  /** Connections routed, per route (undefined: the listener's default route) and destination cluster id. */
  routeStats(): Array<{ route: RouteName | undefined; clusterId: number; connections: number }> {
    return this.obj
      .map('kmesh_l7_route_stats')
      .entries()
      .map(([k, v]) => {
        const key = l7RouteStatKey.decode(k);
        return {
          route: this.routeNames.get(key.route_id),
          clusterId: key.cluster_id,
          connections: Number(v.readBigUInt64LE(0)),
        };
      });
  }

  /** Some listener has routes in the kernel now. */
  get active(): boolean {
    return (this.live.get('listeners')?.size ?? 0) > 0;
  }

  get anchorListening(): AnchorAddress {
    return this.anchorAddress;
  }

  map(name: string): BpfMap {
    return this.obj.map(name);
  }

  /**
   * Stops; under systemd with a file-descriptor store the sockets go to the store first, so the L7
   * connections outlive this process and the next daemon takes them back (fd-store.ts).
   */
  async stop(): Promise<void> {
    if (this.refillTimer) clearInterval(this.refillTimer);
    const fds = [...this.anchor.pairFds(), ...[...this.pools.values()].flatMap((p) => p.fds())];
    const handedOver = fdStoreAvailable() && storeFds(CONN_FDNAME, fds, true);
    if (handedOver) this.options.logger.info({ sockets: fds.length }, 'L7 sockets handed to the systemd store');
    for (const pool of this.pools.values()) {
      if (handedOver) pool.release();
      else pool.close();
    }
    this.pools.clear();
    await this.anchor.close();
    this.markers?.close();
    this.reports?.close();
    this.obj.close();
  }
}
