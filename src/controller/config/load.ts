/** kmesh.toml → KmeshConfig, strictly: every problem found is reported with file, line and key. */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { parse } from 'smol-toml';
import { parseXdsConfig, type XdsConfig } from '../../api/xds/config.js';
import { KmeshError } from '../../contracts/errors.js';
import { hostPortProblem } from '../../model/address.js';
import {
  type Cluster,
  type Endpoint,
  type FailoverPriorityLabel,
  HASH_KEYS,
  LB_POLICIES,
  type Listener,
  type Locality,
  type LocalityWeight,
  type MeshModel,
  type OutlierDetection,
  PROTOCOLS,
  type RegionFailover,
  type ServiceSpec,
} from '../../model/types.js';
import { isUnitName, UNIT_NAME_RULE } from '../../model/unit-name.js';
import { capacityProblems, PORT_RANGE, validateModel, WEIGHT_RANGE } from '../../model/validate.js';
import {
  FAILOVER_PRIORITY_LABELS,
  OUTLIER_DEFAULTS,
  parseFailoverPriorityLabel,
  parseLocality,
  RESILIENCE_LIMITS,
} from '../../model/validate-resilience.js';
import { isPinDir } from '../../runtime/bpffs.js';
import { type Cgroup2View, guardCgroupPath } from '../../runtime/cgroup2.js';
import { KeyLocator } from './locator.js';
import { choiceKey, type NestedWhere, readClusterChoice, readListenerRoutes } from './routes.js';
import { type DaemonSettings, DEFAULT_PIN_DIR, type KmeshConfig, LOG_LEVELS } from './schema.js';
import { TableReader } from './table-reader.js';

const TOP_LEVEL = ['daemon', 'metrics', 'xds', 'services', 'clusters', 'listeners'];

/** Where the file's services are checked on disk (no kernel): the daemon's cgroup v2 view. */
export interface ConfigCheckOptions {
  cgroups?: Cgroup2View;
}

export function loadConfigFile(path: string, options: ConfigCheckOptions = {}): KmeshConfig {
  let source: string;
  try {
    source = readFileSync(path, 'utf8');
  } catch (err) {
    throw new KmeshError('InvalidConfig', `${path}: cannot read: ${(err as Error).message}`);
  }
  return parseConfig(source, path, options);
}

export function parseConfig(source: string, path: string, options: ConfigCheckOptions = {}): KmeshConfig {
  const file = basename(path);
  let doc: Record<string, unknown>;
  try {
    doc = parse(source) as Record<string, unknown>;
  } catch (err) {
    const { line, message } = err as { line?: number; message: string };
    const first = message.split('\n')[0]?.replace(/^Invalid TOML document: /, '');
    throw new KmeshError('InvalidConfig', `${file}:${line ?? 1}: TOML syntax error: ${first}`);
  }
  const locator = new KeyLocator(file, source);
  const errors: string[] = [];
  const root = new TableReader(doc, (key) => locator.where(null, null, key), errors);
  for (const key of Object.keys(doc)) {
    if (!TOP_LEVEL.includes(key)) root.fail(key, `unknown section (expected one of ${TOP_LEVEL.join(', ')})`);
  }

  const section = (name: string) => {
    const v = doc[name];
    if (v === undefined) return undefined;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) {
      root.fail(name, `must be a table ([${name}])`);
      return undefined;
    }
    return new TableReader(v as Record<string, unknown>, (key) => locator.where(name, null, key), errors);
  };
  const arrayOf = (name: string): TableReader[] => {
    const v = doc[name];
    if (v === undefined) return [];
    if (!Array.isArray(v)) {
      root.fail(name, `must be an array of tables ([[${name}]])`);
      return [];
    }
    return v.map(
      (item, i) => new TableReader(item as Record<string, unknown>, (key) => locator.where(name, i, key), errors),
    );
  };

  const daemonTable = section('daemon');
  const daemon: DaemonSettings = {
    logLevel: daemonTable?.oneOf('log_level', LOG_LEVELS, 'info') ?? 'info',
    pinDir: daemonTable?.string('pin_dir', DEFAULT_PIN_DIR) ?? DEFAULT_PIN_DIR,
    accessLog: daemonTable?.boolean('access_log', false) ?? false,
    rescanIntervalMs: daemonTable?.integer('rescan_interval_ms', 100, 60_000, 1000) ?? 1000,
  };
  const ownLocality = daemonTable ? readLocality(daemonTable, 'locality') : undefined;
  if (ownLocality) daemon.locality = ownLocality;
  if (!isPinDir(daemon.pinDir)) {
    daemonTable?.fail(
      'pin_dir',
      `must be a directory below /sys/fs/bpf/ written plainly (no "..", no trailing /), got "${daemon.pinDir}"`,
    );
  }
  daemonTable?.rejectUnknown();

  const metricsTable = section('metrics');
  const listen = metricsTable?.string('listen');
  const listenProblem = listen === undefined ? undefined : hostPortProblem(listen, 'listen');
  if (listenProblem) metricsTable?.fail('listen', `${listenProblem}, got "${listen}"`);
  metricsTable?.rejectUnknown();

  const xds = readXds(doc.xds, locator, root, errors);
  if (xds && daemon.locality) xds.locality = daemon.locality;

  const serviceReaders = arrayOf('services');
  const serviceSpecs = serviceReaders.map((r) => readService(r, options.cgroups));
  checkDuplicateServices(serviceSpecs, serviceReaders);
  const services = serviceSpecs.filter((spec): spec is ServiceSpec => spec !== undefined);
  const clusterReaders = arrayOf('clusters');
  const listenerReaders = arrayOf('listeners');
  // Read each entry whole, remembering which ones already have a field-level problem.
  const readWhole = <T>(reader: TableReader, read: (r: TableReader) => T): { value: T; clean: boolean } => {
    const before = errors.length;
    const value = read(reader);
    reader.rejectUnknown();
    return { value, clean: errors.length === before };
  };
  const clusters = clusterReaders.map((r) => readWhole(r, (t) => readCluster(t, daemon.locality)));
  const listeners = listenerReaders.map((r, i) =>
    readWhole(r, (t) => readListener(t, (path, key) => locator.whereNested([['listeners', i], ...path], key))),
  );
  const model: MeshModel = {
    clusters: clusters.map((c) => c.value),
    listeners: listeners.map((l) => l.value.listener),
  };

  // Semantic checks on every entry whose fields were readable; an entry with a field error would only
  // repeat it in other words (a missing port read as 0, say), so what it says is dropped.
  const UNREADABLE = '\0';
  const at = {
    cluster: (i: number, key?: string) =>
      clusters[i]?.clean ? (clusterReaders[i] as TableReader).where(key) : UNREADABLE,
    listener: (i: number, key?: string) => {
      const l = listeners[i];
      return l?.clean ? l.value.where(key) : UNREADABLE;
    },
  };
  const semantic = [...validateModel(model, at), ...capacityProblems(model, at)];
  errors.push(...semantic.filter((message) => !message.startsWith(UNREADABLE)));
  if (errors.length > 0) throw new KmeshError('InvalidConfig', errors.join('\n'));

  return {
    path,
    daemon,
    ...(listen !== undefined ? { metrics: { listen } } : {}),
    ...(xds !== undefined ? { xds } : {}),
    services,
    model,
  };
}

function readXds(table: unknown, locator: KeyLocator, root: TableReader, errors: string[]): XdsConfig | undefined {
  if (table === undefined) return undefined;
  if (typeof table !== 'object' || table === null || Array.isArray(table)) {
    root.fail('xds', 'must be a table ([xds])');
    return undefined;
  }
  try {
    return parseXdsConfig(table as Record<string, unknown>, (key) => locator.where('xds', null, key));
  } catch (err) {
    errors.push((err as Error).message);
    return undefined;
  }
}

function readService(t: TableReader, cgroups: Cgroup2View | undefined): ServiceSpec | undefined {
  const unit = t.optionalString('unit');
  const cgroup = t.optionalString('cgroup');
  t.rejectUnknown();
  if ((unit === undefined) === (cgroup === undefined)) {
    t.fail(undefined, 'needs exactly one of unit = "name.service" or cgroup = "/path"');
    return undefined;
  }
  if (unit !== undefined && !isUnitName(unit)) t.fail('unit', `${UNIT_NAME_RULE}, got "${unit}"`);
  if (cgroup !== undefined && cgroups) {
    try {
      guardCgroupPath(cgroup, cgroups);
    } catch (err) {
      t.fail('cgroup', (err as Error).message);
    }
  }
  return unit !== undefined ? { unit } : { cgroup: cgroup as string };
}

function checkDuplicateServices(services: Array<ServiceSpec | undefined>, readers: TableReader[]): void {
  const seen = new Set<string>();
  services.forEach((s, i) => {
    if (!s) return;
    const name = s.unit ?? s.cgroup ?? '';
    if (seen.has(name)) readers[i]?.fail(s.unit ? 'unit' : 'cgroup', `"${name}" is registered twice`);
    seen.add(name);
  });
}

/** A [min, max] pair of the model's limits as the reader states a range. */
const limit = ([min, max]: readonly [number, number]) => ({ min, max });

function readLocality(t: TableReader, key: string): Locality | undefined {
  const text = t.optionalString(key);
  if (text === undefined) return undefined;
  const locality = parseLocality(text);
  if (!locality) t.fail(key, `must be "region", "region/zone" or "region/zone/subzone", got "${text}"`);
  return locality;
}

function readEndpoint(t: TableReader): Endpoint {
  const ep: Endpoint = {
    address: t.string('address') ?? '',
    port: t.modelInteger('port', PORT_RANGE) ?? 0,
    weight: t.modelInteger('weight', WEIGHT_RANGE, 1) ?? 1,
  };
  const priority = t.has('priority') ? t.modelInteger('priority', limit(RESILIENCE_LIMITS.priority)) : undefined;
  if (priority !== undefined) ep.priority = priority;
  const locality = readLocality(t, 'locality');
  if (locality) ep.locality = locality;
  return ep;
}

/** Times and counts are read as any integer; validateModel says what range they need. */
function readOutlierDetection(t: TableReader): OutlierDetection {
  const L = RESILIENCE_LIMITS;
  const int = (key: string, range: readonly [number, number], fallback: number) =>
    t.modelInteger(key, limit(range), fallback) ?? fallback;
  const baseEjectionTimeMs = int('base_ejection_time_ms', L.ejectionTimeMs, OUTLIER_DEFAULTS.baseEjectionTimeMs);
  return {
    consecutiveFailures: int('consecutive_failures', L.consecutiveFailures, OUTLIER_DEFAULTS.consecutiveFailures),
    baseEjectionTimeMs,
    // Envoy's default cap, or the base time when that is longer
    maxEjectionTimeMs: int(
      'max_ejection_time_ms',
      L.ejectionTimeMs,
      Math.max(OUTLIER_DEFAULTS.maxEjectionTimeMs, baseEjectionTimeMs),
    ),
    maxEjectionPercent: int('max_ejection_percent', L.maxEjectionPercent, OUTLIER_DEFAULTS.maxEjectionPercent),
    intervalMs: int('interval_ms', L.intervalMs, OUTLIER_DEFAULTS.intervalMs),
  };
}

function readCluster(t: TableReader, daemonLocality: Locality | undefined): Cluster {
  const cluster: Cluster = {
    name: t.string('name') ?? '',
    lbPolicy: t.oneOf('lb_policy', LB_POLICIES, 'round_robin') ?? 'round_robin',
    endpoints: t.tables('endpoints', readEndpoint) ?? missing(t, 'endpoints'),
    source: 'toml',
  };
  const outlier = t.subTable('outlier_detection', readOutlierDetection);
  if (outlier) cluster.outlierDetection = outlier;
  for (const [key, field] of [
    ['max_connections', 'maxConnections'],
    ['max_pending_requests', 'maxPendingRequests'],
    ['max_requests', 'maxRequests'],
    ['connect_timeout_ms', 'connectTimeoutMs'],
  ] as const) {
    const v = t.has(key) ? t.modelInteger(key, limit(RESILIENCE_LIMITS[field])) : undefined;
    if (v !== undefined) cluster[field] = v;
  }
  const hashKey = t.has('hash_key') ? t.oneOf('hash_key', HASH_KEYS) : undefined;
  if (hashKey) cluster.hashKey = hashKey;
  const weights = t.tables('locality_weights', (w): LocalityWeight | undefined => {
    const locality = readLocality(w, 'locality') ?? (w.has('locality') ? undefined : missingLocality(w));
    const weight = w.modelInteger('weight', WEIGHT_RANGE) ?? 0;
    return locality ? { locality, weight } : undefined;
  });
  if (weights) cluster.localityWeights = weights;
  const factor = t.has('overprovisioning_factor')
    ? t.modelInteger('overprovisioning_factor', limit(RESILIENCE_LIMITS.overprovisioningFactor))
    : undefined;
  if (factor !== undefined) cluster.overprovisioningFactor = factor;
  readLocalityFailover(t, cluster, daemonLocality);
  return cluster;
}

/**
 * As istiod: clusters with outlier detection fail over by the daemon's locality unless
 * `locality_failover = false` (without ejections nothing would ever fail over). The `failover` and
 * `failoverPriority` lists of Istio's localityLbSetting refine the ranking.
 */
function readLocalityFailover(t: TableReader, cluster: Cluster, daemonLocality: Locality | undefined): void {
  const regions = t.tables(
    'locality_failover_regions',
    (r): RegionFailover => ({
      from: r.string('from') ?? '',
      to: r.string('to') ?? '',
    }),
  );
  const priority = readFailoverPriority(t, 'locality_failover_priority');
  const refined = [
    ['locality_failover_regions', regions],
    ['locality_failover_priority', priority],
  ] as const;
  const asked =
    refined.find(([, value]) => value !== undefined)?.[0] ??
    (t.has('locality_failover') ? 'locality_failover' : undefined);
  if (!t.boolean('locality_failover', true)) {
    for (const [key, value] of refined) if (value) t.fail(key, 'contradicts locality_failover = false');
    return;
  }
  if (!daemonLocality) {
    if (asked) t.fail(asked, 'needs the daemon\'s own locality: [daemon] locality = "region/zone/subzone"');
  } else if (!cluster.outlierDetection) {
    if (asked) t.fail(asked, 'needs outlier_detection: endpoints fail over only when ejected');
  } else {
    cluster.localityFailover = {
      own: daemonLocality,
      ...(regions ? { regions } : {}),
      ...(priority ? { priority } : {}),
    };
  }
}

/** Istio's failoverPriority: an array of topology labels, each optionally `label=value`. */
function readFailoverPriority(t: TableReader, key: string): FailoverPriorityLabel[] | undefined {
  const raw = t.raw(key);
  if (raw === undefined) return undefined;
  if (!Array.isArray(raw) || raw.length === 0 || raw.some((v) => typeof v !== 'string')) {
    t.fail(key, 'must be a non-empty array of label names');
    return undefined;
  }
  const labels = (raw as string[]).map((text, j) => {
    const label = parseFailoverPriorityLabel(text);
    if (!label) {
      t.fail(
        `${key}[${j}]`,
        `endpoints carry only a locality: the label must be one of ${FAILOVER_PRIORITY_LABELS.join(', ')} (optionally =value), got "${text}"`,
      );
    }
    return label;
  });
  return labels.every((l) => l !== undefined) ? labels : undefined;
}

function missingLocality(t: TableReader): undefined {
  t.fail('locality', 'is required');
  return undefined;
}

function missing(t: TableReader, key: string): never[] {
  t.fail(key, 'is required');
  return [];
}

/** The listener and where a model key of it stands in the file. */
function readListener(t: TableReader, nested: NestedWhere): { listener: Listener; where: (key?: string) => string } {
  const listener: Listener = {
    name: t.string('name') ?? '',
    address: t.string('address') ?? '',
    port: t.modelInteger('port', PORT_RANGE) ?? 0,
    protocol: t.oneOf('protocol', PROTOCOLS, 'tcp') ?? 'tcp',
    routes: readClusterChoice(t),
    source: 'toml',
  };
  const routes = readListenerRoutes(t, nested);
  if (routes.virtualHosts) listener.virtualHosts = routes.virtualHosts;
  return {
    listener,
    where: (key) => (key !== undefined && routes.where(key)) || t.where(key === undefined ? key : choiceKey(t, key)),
  };
}
