#!/usr/bin/env node
/**
 * kmeshctl — the operator CLI. Talks only to the daemon's D-Bus API (org.openeuler.Kmesh1 on the system bus), so it
 * works for any user allowed by the bus policy and never touches BPF itself.
 *
 * Exit codes: 0 ok, 1 the daemon answered with an error, 2 usage error, 3 daemon (or the bus) not reachable.
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import dbus from 'dbus-next';
import { callMethod, dbusErrorName, dbusErrorText, getProperty } from '../api/dbus/call.js';
import { decodeService, decodeStatus, type ServiceTuple } from '../api/dbus/codec.js';
import {
  BUS_NAME,
  DBUS_ERROR_NAME_HAS_NO_OWNER,
  DBUS_ERROR_SERVICE_UNKNOWN,
  MANAGER_IFACE,
  OBJECT_PATH,
} from '../api/dbus/names.js';
import type { DaemonStatus, ServiceStatus } from '../contracts/control.js';
import { VERSION } from '../contracts/package.js';

export const EXIT = { ok: 0, daemonError: 1, usage: 2, notRunning: 3 } as const;

const USAGE = `Usage: kmeshctl [--json] COMMAND [ARG]

Operate the Kmesh daemon (kmesh.service) through its D-Bus API.

Commands:
  status              daemon state, config version, counts, features
  services            registered services and whether they are attached
  register UNIT       register a systemd unit (e.g. orders.service) or a cgroup path (/sys/fs/cgroup/...)
  unregister NAME     unregister a service by unit name or cgroup path
  dump                the live model and map contents (JSON)
  reload              re-read /etc/kmesh/kmesh.toml (like systemctl reload kmesh)
  log-level LEVEL     set the daemon log level (trace, debug, info, warn, error, fatal)
  access-log on|off   one JSON log line per closed connection (kmesh-probe), on or off
  version             kmeshctl and daemon versions

Options:
  --json              machine-readable output
  -h, --help          this help

register, unregister, reload, log-level and access-log require root.
Exit codes: 0 ok, 1 error reported by the daemon, 2 usage error, 3 daemon not running.
`;

const COMMANDS: Record<string, { args: number }> = {
  status: { args: 0 },
  services: { args: 0 },
  register: { args: 1 },
  unregister: { args: 1 },
  dump: { args: 0 },
  reload: { args: 0 },
  'log-level': { args: 1 },
  'access-log': { args: 1 },
  version: { args: 0 },
};

export interface Io {
  out(s: string): void;
  err(s: string): void;
}

export class UsageError extends Error {}

export interface Invocation {
  command: string;
  arg?: string;
  json: boolean;
  help: boolean;
}

/** Parse argv (without node and script); throws UsageError with a one-line reason. */
export function parseCommandLine(argv: string[]): Invocation {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const json = parsed.values.json === true;
  const help = parsed.values.help === true;
  const [command, ...rest] = parsed.positionals;
  if (help) return { command: command ?? 'help', json, help: true };
  if (!command) throw new UsageError('missing command');
  const spec = COMMANDS[command];
  if (!spec) throw new UsageError(`unknown command "${command}"`);
  if (rest.length !== spec.args) {
    throw new UsageError(
      spec.args === 0 ? `"${command}" takes no arguments` : `"${command}" takes exactly ${spec.args} argument`,
    );
  }
  if (command === 'access-log' && rest[0] !== 'on' && rest[0] !== 'off') {
    throw new UsageError(`"access-log" takes on or off, got "${rest[0]}"`);
  }
  const inv: Invocation = { command, json, help: false };
  if (rest[0] !== undefined) inv.arg = rest[0];
  return inv;
}

/** Left-aligned columns; the header is upper-case like systemctl's. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

export function formatStatus(s: DaemonStatus): string {
  const lines: [string, string][] = [
    ['Version', s.version],
    ['State', s.state],
    ['Config', `${s.configPath} (version ${s.configVersion})`],
    ['xDS', s.xdsAddress ? `${s.xdsAddress} (${s.xdsConnected ? 'connected' : 'disconnected'})` : 'not configured'],
    ['Services', String(s.services)],
    ['Listeners', String(s.listeners)],
    ['Clusters', `${s.clusters} (${s.endpoints} endpoints)`],
    ['Started', s.startedAt],
  ];
  for (const [name, f] of Object.entries(s.features).sort(([a], [b]) => a.localeCompare(b))) {
    lines.push([`Feature ${name}`, f.enabled ? 'enabled' : `disabled${f.reason ? ` (${f.reason})` : ''}`]);
  }
  if (s.lastError) lines.push(['Last error', s.lastError]);
  const w = Math.max(...lines.map(([k]) => k.length));
  return lines.map(([k, v]) => `${`${k}:`.padEnd(w + 1)} ${v}`).join('\n');
}

export function formatServices(list: ServiceStatus[]): string {
  if (list.length === 0) return 'No services registered.';
  return table(
    ['NAME', 'ORIGIN', 'ATTACHED', 'CGROUP', 'DETAIL'],
    list.map((s) => [s.name, s.origin, s.attached ? 'yes' : 'no', s.cgroupPath ?? '-', s.detail ?? '']),
  );
}

/** The bus answered that nobody owns org.openeuler.Kmesh1. */
function isNotRunning(err: unknown): boolean {
  const name = dbusErrorName(err);
  return name === DBUS_ERROR_SERVICE_UNKNOWN || name === DBUS_ERROR_NAME_HAS_NO_OWNER;
}

async function manager(bus: dbus.MessageBus, member: string, signature = '', body: unknown[] = []) {
  return callMethod(bus, { destination: BUS_NAME, path: OBJECT_PATH, iface: MANAGER_IFACE, member, signature, body });
}

async function execute(bus: dbus.MessageBus, inv: Invocation, io: Io): Promise<void> {
  const print = (human: string, json: unknown) => io.out(inv.json ? JSON.stringify(json, null, 2) : human);
  switch (inv.command) {
    case 'status': {
      const [raw] = await manager(bus, 'GetStatus');
      const s = decodeStatus(raw as Record<string, dbus.Variant>);
      print(formatStatus(s), s);
      return;
    }
    case 'services': {
      const [raw] = await manager(bus, 'ListServices');
      const list = (raw as ServiceTuple[]).map(decodeService);
      print(formatServices(list), list);
      return;
    }
    case 'register': {
      const [raw] = await manager(bus, 'RegisterService', 's', [inv.arg]);
      const s = decodeService(raw as ServiceTuple);
      print(
        `Registered ${s.name}${s.attached ? ` (attached to ${s.cgroupPath})` : ` (not attached: ${s.detail ?? 'not running'})`}`,
        s,
      );
      return;
    }
    case 'unregister':
      await manager(bus, 'UnregisterService', 's', [inv.arg]);
      print(`Unregistered ${inv.arg}`, { unregistered: inv.arg });
      return;
    case 'dump': {
      const [text] = await manager(bus, 'DumpConfig');
      // Already JSON; re-indent so --json and the default agree.
      io.out(JSON.stringify(JSON.parse(String(text)), null, 2));
      return;
    }
    case 'reload': {
      const [v] = await manager(bus, 'Reload');
      print(`Reloaded: config version ${v}`, { configVersion: v });
      return;
    }
    case 'log-level':
      await manager(bus, 'SetLogLevel', 's', [inv.arg]);
      print(`Log level set to ${inv.arg}`, { logLevel: inv.arg });
      return;
    case 'access-log': {
      const enabled = inv.arg === 'on';
      await manager(bus, 'SetAccessLog', 'b', [enabled]);
      print(`Access log ${inv.arg}`, { accessLog: enabled });
      return;
    }
    case 'version': {
      const daemon = String(await getProperty(bus, BUS_NAME, OBJECT_PATH, MANAGER_IFACE, 'Version'));
      print(`kmeshctl ${VERSION}\nkmesh-daemon ${daemon}`, { kmeshctl: VERSION, daemon });
      return;
    }
  }
}

/** The whole CLI as a function of argv → exit code, so tests can drive it in-process. */
export async function run(
  argv: string[],
  io: Io,
  connect: () => dbus.MessageBus = () => dbus.systemBus(),
  timeoutMs = 60_000,
): Promise<number> {
  let inv: Invocation;
  try {
    inv = parseCommandLine(argv);
  } catch (err) {
    io.err(`kmeshctl: ${(err as Error).message}\n\n${USAGE}`);
    return EXIT.usage;
  }
  if (inv.help) {
    io.out(USAGE.trimEnd());
    return EXIT.ok;
  }
  let bus: dbus.MessageBus | undefined;
  try {
    bus = connect();
    const b = bus;
    // dbus-next reports a failed connection (no socket, refused) only as an 'error' event and leaves the pending
    // call unsettled, so race the command against that event and a timeout.
    let timer: NodeJS.Timeout | undefined;
    const failure = new Promise<never>((_, reject) => {
      b.on('error', reject);
      timer = setTimeout(() => reject(new Error(`no answer from ${BUS_NAME} within ${timeoutMs / 1000} s`)), timeoutMs);
    });
    try {
      await Promise.race([execute(b, inv, io), failure]);
    } finally {
      clearTimeout(timer);
    }
    return EXIT.ok;
  } catch (err) {
    const code = (err as { code?: string } | null)?.code;
    if (code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'EACCES') {
      io.err(`kmeshctl: cannot connect to the system bus (${(err as Error).message}); is dbus running?`);
      return EXIT.notRunning;
    }
    if (isNotRunning(err)) {
      io.err(
        `kmeshctl: the Kmesh daemon is not running (${BUS_NAME} is not on the system bus). Try: systemctl start kmesh`,
      );
      return EXIT.notRunning;
    }
    const name = dbusErrorName(err);
    if (name) {
      const short = name
        .replace(/^org\.openeuler\.Kmesh1\.Error\./, '')
        .replace(/^org\.freedesktop\.DBus\.Error\./, '');
      io.err(`kmeshctl: ${short}: ${dbusErrorText(err)}`);
      return EXIT.daemonError;
    }
    io.err(`kmeshctl: ${(err as Error)?.message ?? String(err)}`);
    return EXIT.daemonError;
  } finally {
    bus?.disconnect();
  }
}

// Run only when executed (also through the /usr/bin launcher or a symlink), not when imported by tests.
function isMain(): boolean {
  try {
    return (
      process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url))
    );
  } catch {
    return false;
  }
}
if (isMain()) {
  const code = await run(process.argv.slice(2), {
    out: (s) => process.stdout.write(`${s}\n`),
    err: (s) => process.stderr.write(`${s}\n`),
  });
  process.exitCode = code;
}
