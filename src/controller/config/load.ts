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
  LB_POLICIES,
  type Listener,
  type MeshModel,
  PROTOCOLS,
  type ServiceSpec,
} from '../../model/types.js';
import { isUnitName, UNIT_NAME_RULE } from '../../model/unit-name.js';
import { validateModel } from '../../model/validate.js';
import { isPinDir } from '../../runtime/bpffs.js';
import { type Cgroup2View, guardCgroupPath } from '../../runtime/cgroup2.js';
import { KeyLocator } from './locator.js';
import { choiceKey, type NestedWhere, readClusterChoice, readListenerRoutes, U32_MAX } from './routes.js';
import { DEFAULT_PIN_DIR, type KmeshConfig, LOG_LEVELS } from './schema.js';
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
  const daemon = {
    logLevel: daemonTable?.oneOf('log_level', LOG_LEVELS, 'info') ?? 'info',
    pinDir: daemonTable?.string('pin_dir', DEFAULT_PIN_DIR) ?? DEFAULT_PIN_DIR,
    accessLog: daemonTable?.boolean('access_log', false) ?? false,
    rescanIntervalMs: daemonTable?.integer('rescan_interval_ms', 100, 60_000, 1000) ?? 1000,
  };
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
  const clusters = clusterReaders.map((r) => readWhole(r, readCluster));
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
  const semantic = validateModel(model, {
    cluster: (i, key) => (clusters[i]?.clean ? (clusterReaders[i] as TableReader).where(key) : UNREADABLE),
    listener: (i, key) => {
      const l = listeners[i];
      return l?.clean ? l.value.where(key) : UNREADABLE;
    },
  });
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

function readEndpoint(t: TableReader): Endpoint {
  return {
    address: t.string('address') ?? '',
    port: t.integer('port', -U32_MAX, U32_MAX) ?? 0,
    weight: t.integer('weight', -U32_MAX, U32_MAX, 1) ?? 1,
  };
}

function readCluster(t: TableReader): Cluster {
  return {
    name: t.string('name') ?? '',
    lbPolicy: t.oneOf('lb_policy', LB_POLICIES, 'round_robin') ?? 'round_robin',
    endpoints: t.tables('endpoints', readEndpoint) ?? missing(t, 'endpoints'),
    source: 'toml',
  };
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
    port: t.integer('port', -U32_MAX, U32_MAX) ?? 0,
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
