/**
 * A private dbus-daemon for D-Bus tests (never the host's system bus) and a fake DaemonControl.
 * `policy` mode mirrors Debian's system.conf defaults and includes packaging/dbus/org.openeuler.Kmesh1.conf,
 * so the shipped policy file is what is tested; `open` mode allows everything, to test the service's own uid check.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type {
  DaemonControl,
  DaemonEvents,
  DaemonState,
  DaemonStatus,
  ServiceStatus,
} from '../../src/contracts/control.js';
import { KmeshError } from '../../src/contracts/errors.js';
import type { ServiceSpec } from '../../src/model/types.js';

/** The repository root: the nearest directory above the compiled test holding packaging/ (any outDir works). */
function findRepoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'packaging', 'dbus')) && dirname(dir) !== dir) dir = dirname(dir);
  return process.env.KMESH_REPO_ROOT ?? dir;
}
export const repoRoot = findRepoRoot();
export const policyFile = join(repoRoot, 'packaging', 'dbus', 'org.openeuler.Kmesh1.conf');

const SYSTEM_LIKE_POLICY = `
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <include>${policyFile}</include>`;

const OPEN_POLICY = `
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>`;

/** Why the D-Bus tests cannot run here, or null: they need dbus-daemon and busctl, and root for setpriv. */
export function dbusSkipReason(): string | null {
  for (const bin of ['dbus-daemon', 'busctl', 'setpriv']) {
    if (spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0)
      return `${bin} is not installed (scripts/deps-e2e.sh)`;
  }
  if (process.getuid?.() !== 0) return 'needs root to run unprivileged test clients (setpriv)';
  return null;
}

export interface PrivateBus {
  address: string;
  stop(): Promise<void>;
}

export async function startPrivateBus(mode: 'policy' | 'open'): Promise<PrivateBus> {
  const dir = mkdtempSync(join(tmpdir(), 'kmesh-dbus-'));
  // Unprivileged test clients (setpriv to nobody) must reach the socket.
  chmodSync(dir, 0o755);
  const config = join(dir, 'bus.conf');
  writeFileSync(
    config,
    `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path=${join(dir, 'bus')}</listen>
  <auth>EXTERNAL</auth>
  ${mode === 'policy' ? SYSTEM_LIKE_POLICY : OPEN_POLICY}
</busconfig>
`,
  );
  const child: ChildProcess = spawn('dbus-daemon', ['--config-file', config, '--nofork', '--print-address'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d) => {
    stderr += String(d);
  });
  const address = await new Promise<string>((ok, fail) => {
    let out = '';
    child.stdout?.on('data', (d) => {
      out += String(d);
      const nl = out.indexOf('\n');
      if (nl >= 0) ok(out.slice(0, nl).trim());
    });
    child.on('exit', (code) => fail(new Error(`dbus-daemon exited (${code}): ${stderr}`)));
    child.on('error', fail);
  });
  return {
    address,
    async stop() {
      if (child.exitCode === null && child.pid !== undefined) {
        const exited = new Promise((r) => child.once('exit', r));
        process.kill(child.pid, 'SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A DaemonControl with canned answers; records calls. Not the kernel — just the management contract. */
export class FakeControl extends EventEmitter<DaemonEvents> implements DaemonControl {
  state: DaemonState = 'running';
  configVersion = 3;
  xdsConnected = false;
  logLevel = 'info';
  accessLog = false;
  services: ServiceStatus[] = [
    {
      name: 'orders.service',
      unit: 'orders.service',
      cgroupPath: '/sys/fs/cgroup/system.slice/orders.service',
      cgroupId: '12345',
      attached: true,
      origin: 'config',
    },
  ];
  calls: string[] = [];

  status(): DaemonStatus {
    return {
      version: '0.1.0-test',
      state: this.state,
      configVersion: this.configVersion,
      configPath: '/etc/kmesh/kmesh.toml',
      xdsConnected: this.xdsConnected,
      services: this.services.length,
      listeners: 2,
      clusters: 1,
      endpoints: 3,
      features: { l4: { enabled: true }, probe: { enabled: false, reason: 'no ringbuf' } },
      startedAt: '2026-01-01T00:00:00.000Z',
    };
  }
  listServices(): ServiceStatus[] {
    return this.services;
  }
  async registerService(spec: ServiceSpec): Promise<ServiceStatus> {
    this.calls.push(`register:${spec.unit ?? spec.cgroup}`);
    const name = spec.unit ?? spec.cgroup ?? '';
    if (name === 'missing.service') throw new KmeshError('NotFound', 'systemd has no unit "missing.service"');
    if (this.services.some((s) => s.name === name))
      throw new KmeshError('AlreadyExists', `${name} is already registered`);
    const s: ServiceStatus = { name, attached: false, origin: 'runtime', detail: 'unit is not running' };
    if (spec.unit) s.unit = spec.unit;
    this.services.push(s);
    this.emit('service-changed', name, 'registered');
    return s;
  }
  async unregisterService(name: string): Promise<void> {
    this.calls.push(`unregister:${name}`);
    const i = this.services.findIndex((s) => s.name === name);
    if (i < 0) throw new KmeshError('NotFound', `${name} is not registered`);
    this.services.splice(i, 1);
    this.emit('service-changed', name, 'unregistered');
  }
  async dumpConfig(): Promise<unknown> {
    return { model: { listeners: [], clusters: [] }, maps: {} };
  }
  async reload(): Promise<number> {
    this.calls.push('reload');
    this.configVersion += 1;
    this.emit('config-applied', this.configVersion);
    return this.configVersion;
  }
  setLogLevel(level: string): void {
    if (!['trace', 'debug', 'info', 'warn', 'error', 'fatal'].includes(level)) {
      throw new KmeshError('InvalidArgument', `unknown log level "${level}"`);
    }
    this.logLevel = level;
  }
  setAccessLog(enabled: boolean): void {
    this.accessLog = enabled;
  }
}

export const silentLogger = { info() {}, warn() {}, error() {}, debug() {} };

/** Run a command (optionally as the unprivileged `nobody`), collecting output. */
export function run(
  cmd: string,
  args: string[],
  opts: { asNobody?: boolean } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const [file, argv] = opts.asNobody
    ? ['setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', cmd, ...args]]
    : [cmd, args];
  return new Promise((ok, fail) => {
    const child = spawn(file, argv as string[], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += String(d);
    });
    child.stderr.on('data', (d) => {
      stderr += String(d);
    });
    child.on('error', fail);
    child.on('exit', (code) => ok({ code, stdout, stderr }));
  });
}
