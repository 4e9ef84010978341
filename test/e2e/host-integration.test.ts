/**
 * End to end in a real systemd: a Debian bookworm rootfs booted with systemd-nspawn, the .deb installed with apt,
 * kmesh.service started by systemd, traffic from a registered unit steered in the (shared) kernel.
 *
 * Needs root, systemd-nspawn and debootstrap (scripts/deps-e2e.sh). The rootfs is cached (test/e2e/rootfs.sh);
 * the .deb is built with scripts/package.sh unless KMESH_E2E_DEB names one. Everything runs in the container's own
 * network namespace (VIP 127.10.0.5, backends on 127.0.0.1) and cgroups below a test-created cgroup.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Container } from './nspawn.js';

function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'test', 'e2e', 'rootfs.sh')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}
const ROOT = repoRoot();
const VIP = '127.10.0.5';
const VIP_PORT = 9080;
const BACKENDS = [18081, 18082];
const CLIENT = 'kmesh-e2e-client.service';
const CLIENT_LOG = '/var/log/kmesh-e2e/client.log';
/** A oneshot whose very first action is a connect to the VIP (bash starts in about a millisecond). */
const FIRST = 'kmesh-e2e-first.service';
const FIRST_LOG = '/var/log/kmesh-e2e/first.log';
const RESTARTS = 20;

function skipReason(): string | null {
  if (process.platform !== 'linux') return 'needs Linux';
  if (process.getuid?.() !== 0) return 'needs root (mounts, cgroups, systemd-nspawn)';
  for (const bin of ['systemd-nspawn', 'debootstrap', 'nsenter']) {
    if (spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0) {
      return `${bin} is not installed (run scripts/deps-e2e.sh)`;
    }
  }
  if (!existsSync('/sys/fs/cgroup/cgroup.controllers') && !existsSync('/sys/fs/cgroup/unified/cgroup.controllers')) {
    return 'no cgroup2 hierarchy: systemd in the container cannot scope services';
  }
  return null;
}

function debFile(): string {
  if (process.env.KMESH_E2E_DEB) return resolve(process.env.KMESH_E2E_DEB);
  execFileSync('bash', [join(ROOT, 'scripts', 'package.sh'), '--skip-build', '--deb-only'], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const dir = join(ROOT, 'dist-pkg');
  const debs = readdirSync(dir)
    .filter((f) => f.endsWith('.deb'))
    .map((f) => join(dir, f))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  if (!debs[0]) throw new Error('package.sh built no .deb');
  return debs[0];
}

/** Fixture programs: plain ESM for the container's Node 18. */
const BACKEND_JS = `import net from 'node:net';
const port = Number(process.argv[2]);
net.createServer((s) => s.end('backend:' + port + '\\n')).listen(port, '127.0.0.1');
`;
/** Connects to the VIP every 100 ms and logs "<ms> <pid> <answer|error code>" per attempt. */
const CLIENT_JS = `import net from 'node:net';
import fs from 'node:fs';
const [host, port, log] = process.argv.slice(2);
function once() {
  let data = '';
  let done = false;
  const s = net.connect({ host, port: Number(port) });
  const finish = (r) => {
    if (done) return;
    done = true;
    fs.appendFileSync(log, Date.now() + ' ' + process.pid + ' ' + r + '\\n');
    s.destroy();
    setTimeout(once, 100);
  };
  s.setTimeout(1000, () => finish('timeout'));
  s.on('data', (d) => { data += d; });
  s.on('end', () => finish(data.trim() || 'empty'));
  s.on('error', (e) => finish(e.code || 'error'));
}
once();
`;
const UNITS: Record<string, string> = {
  'kmesh-e2e-backend@.service': `[Unit]
Description=kmesh e2e backend on port %i
[Service]
ExecStart=/usr/bin/node /opt/kmesh-e2e/backend.mjs %i
`,
  [CLIENT]: `[Unit]
Description=kmesh e2e client dialing the VIP
[Service]
LogsDirectory=kmesh-e2e
ExecStart=/usr/bin/node /opt/kmesh-e2e/client.mjs ${VIP} ${VIP_PORT} ${CLIENT_LOG}
`,
  // $$ is a literal $ for systemd; an unsteered connect to the VIP is refused (nothing listens there).
  [FIRST]: `[Unit]
Description=kmesh e2e: connect to the VIP first thing
[Service]
Type=oneshot
LogsDirectory=kmesh-e2e
ExecStart=/bin/bash -c 'if exec 3<>/dev/tcp/${VIP}/${VIP_PORT}; then read -r line <&3; echo "$$line"; else echo unsteered; fi >> ${FIRST_LOG}'
`,
};
const CONFIG = `[daemon]
log_level = "debug"
[metrics]
listen = "127.0.0.1:15020"
[[services]]
unit = "${CLIENT}"
[[clusters]]
name = "echo"
lb_policy = "round_robin"
endpoints = [ { address = "127.0.0.1", port = ${BACKENDS[0]}, weight = 1 },
              { address = "127.0.0.1", port = ${BACKENDS[1]}, weight = 1 } ]
[[listeners]]
name = "echo"
address = "${VIP}"
port = ${VIP_PORT}
protocol = "tcp"
cluster = "echo"
`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const reason = skipReason();
describe('host integration in a booted systemd (nspawn)', { skip: reason ?? false, timeout: 15 * 60_000 }, () => {
  let c: Container;
  let deb: string;
  const logLines: string[] = [];
  const log = (l: string) => logLines.push(l);

  /** Client results logged after `since` (ms epoch), as answers ("backend:18081", "ECONNREFUSED", …). */
  const results = (since: number): string[] => {
    const file = join(c.root, CLIENT_LOG);
    if (!existsSync(file)) return [];
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split(' '))
      .filter(([ts]) => Number(ts) >= since)
      .map(([, , r]) => r ?? '');
  };
  /** Wait until at least n results arrived after `since`, then return them. */
  const collect = async (since: number, n: number): Promise<string[]> => {
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      const r = results(since);
      if (r.length >= n) return r;
      await sleep(200);
    }
    return results(since);
  };
  const assertSteered = (r: string[], what: string) => {
    assert.ok(r.length >= 10, `${what}: too few attempts (${r.length})`);
    const bad = r.filter((x) => !/^backend:\d+$/.test(x));
    assert.deepEqual(bad, [], `${what}: not every connection reached a backend: ${r.join(' ')}`);
    for (const p of BACKENDS) {
      const share = r.filter((x) => x === `backend:${p}`).length / r.length;
      assert.ok(share >= 0.25, `${what}: backend ${p} got ${(share * 100).toFixed(0)}% of ${r.length}: ${r.join(' ')}`);
    }
  };
  const journal = () => c.exec('journalctl -u kmesh --no-pager -n 80').then((r) => r.stdout);

  before(async () => {
    deb = debFile();
    const rootfs = execFileSync('bash', [join(ROOT, 'test', 'e2e', 'rootfs.sh')], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    }).trim();
    c = await Container.boot({ rootfs, bindRo: { [dirname(deb)]: '/kmesh-pkg' }, log });
    mkdirSync(join(c.root, 'opt', 'kmesh-e2e'), { recursive: true });
    writeFileSync(join(c.root, 'opt', 'kmesh-e2e', 'backend.mjs'), BACKEND_JS);
    writeFileSync(join(c.root, 'opt', 'kmesh-e2e', 'client.mjs'), CLIENT_JS);
    for (const [name, text] of Object.entries(UNITS))
      writeFileSync(join(c.root, 'etc', 'systemd', 'system', name), text);
    await c.sh('systemctl daemon-reload');
  });

  after(async () => {
    if (process.env.KMESH_E2E_VERBOSE) console.error(logLines.join('\n'));
    await c?.destroy();
  });

  test('the .deb installs with apt; unit, policy and config are in place', async () => {
    // No network in the container (--private-network): every dependency is already in the rootfs.
    await c.sh(`apt-get install -y /kmesh-pkg/${basename(deb)}`);
    await c.sh('dpkg -s kmesh | grep -q "Status: install ok installed"');
    await c.sh('systemctl cat kmesh.service >/dev/null');
    await c.sh('test -f /usr/share/dbus-1/system.d/org.openeuler.Kmesh1.conf');
    await c.sh('kmesh-daemon --check --config /etc/kmesh/kmesh.toml');
    // dbus-daemon picks up new policy files by itself; reload so the test does not depend on inotify timing.
    await c.sh('systemctl reload dbus');
  });

  test('backends and the registered client unit run; before Kmesh the VIP answers nothing', async () => {
    writeFileSync(join(c.root, 'etc', 'kmesh', 'kmesh.toml'), CONFIG);
    await c.sh(`systemctl start kmesh-e2e-backend@${BACKENDS[0]} kmesh-e2e-backend@${BACKENDS[1]} ${CLIENT}`);
    const r = await collect(Date.now(), 5);
    assert.ok(r.length >= 5 && r.every((x) => x === 'ECONNREFUSED'), `expected refusals, got ${r.join(' ')}`);
  });

  test('systemctl start kmesh → active (Type=notify), D-Bus API and kmeshctl answer', async () => {
    const start = await c.exec('systemctl start kmesh');
    assert.equal(start.code, 0, `systemctl start kmesh failed:\n${start.stderr}\n${await journal()}`);
    assert.equal((await c.exec('systemctl is-active kmesh')).stdout.trim(), 'active');
    const status = await c.sh('systemctl show -p StatusText --value kmesh');
    assert.ok(status.trim().length > 0, 'no STATUS= line from the daemon');

    const intro = await c.sh('busctl introspect org.openeuler.Kmesh1 /org/openeuler/Kmesh1');
    for (const m of ['org.openeuler.Kmesh1.Manager', '.GetStatus', '.RegisterService', '.State', '.ConfigApplied']) {
      assert.ok(intro.includes(m), `${m} missing from introspection:\n${intro}`);
    }
    const state = await c.sh(
      'busctl get-property org.openeuler.Kmesh1 /org/openeuler/Kmesh1 org.openeuler.Kmesh1.Manager State',
    );
    assert.equal(state.trim(), 's "running"');

    const json = JSON.parse(await c.sh('kmeshctl status --json'));
    assert.equal(json.state, 'running');
    assert.equal(json.services, 1);
    assert.equal(json.listeners, 1);
    const services = JSON.parse(await c.sh('kmeshctl services --json'));
    assert.equal(services[0]?.name, CLIENT);
    assert.equal(services[0]?.attached, true, JSON.stringify(services));
  });

  test('traffic from the client unit is steered and balanced', async () => {
    await sleep(500);
    assertSteered(await collect(Date.now(), 20), 'after start');
  });

  test('systemctl restart of the client unit → still steered (new cgroup followed)', async () => {
    await c.sh(`systemctl restart ${CLIENT}`);
    // The first connect of the new process races the re-attach; judge from a second later.
    await sleep(1000);
    assertSteered(await collect(Date.now(), 20), 'after client restart');
    const services = JSON.parse(await c.sh('kmeshctl services --json'));
    assert.equal(services[0]?.attached, true, JSON.stringify(services));
  });

  test(`a unit connecting to the VIP first thing: steered on each of ${RESTARTS} restarts (start hook)`, async (t) => {
    const dropIn = `/run/systemd/system/${FIRST}.d/50-kmesh-attach.conf`;
    await c.sh(`kmeshctl register ${FIRST}`);
    const hookLoaded = async () =>
      (await c.sh(`systemctl show -p DropInPaths --value ${FIRST}`)).includes('50-kmesh-attach.conf');
    for (let i = 0; i < 50 && !(await hookLoaded()); i++) await sleep(100);
    assert.ok(await hookLoaded(), `systemd did not load ${dropIn}`);
    const firstConnects = async (): Promise<string[]> => {
      await c.sh(`rm -f ${FIRST_LOG}`);
      for (let i = 0; i < RESTARTS; i++) await c.sh(`systemctl restart ${FIRST}`);
      return readFileSync(join(c.root, FIRST_LOG), 'utf8').split('\n').filter(Boolean);
    };

    // Control: without the hook only systemd's signals trigger the attach, racing the process.
    await c.sh(`mv ${dropIn} /root/hook.conf && systemctl daemon-reload`);
    const unhooked = await firstConnects();
    await c.sh(`mv /root/hook.conf ${dropIn} && systemctl daemon-reload`);
    const hooked = await firstConnects();
    const unsteered = (r: string[]) => r.filter((x) => !/^backend:\d+$/.test(x)).length;
    t.diagnostic(
      `unsteered first connects over ${RESTARTS} restarts: ${unsteered(unhooked)} without the hook, ${unsteered(hooked)} with it`,
    );
    assert.equal(hooked.length, RESTARTS, hooked.join(' '));
    assert.equal(unsteered(hooked), 0, `with the start hook: ${hooked.join(' ')}`);
    await c.sh(`kmeshctl unregister ${FIRST}`);
    await c.sh(`test ! -e ${dropIn}`);
  });

  test('unprivileged callers can read but not register', async () => {
    const asUser = 'setpriv --reuid=kmeshtest --regid=kmeshtest --init-groups';
    await c.sh(
      `${asUser} busctl get-property org.openeuler.Kmesh1 /org/openeuler/Kmesh1 org.openeuler.Kmesh1.Manager State`,
    );
    await c.sh(`${asUser} kmeshctl status`);
    const reg = await c.exec(
      `${asUser} busctl call org.openeuler.Kmesh1 /org/openeuler/Kmesh1 org.openeuler.Kmesh1.Manager RegisterService s evil.service`,
    );
    assert.notEqual(reg.code, 0, 'non-root RegisterService was accepted');
    assert.match(reg.stderr, /Access denied/i);
    const ctl = await c.exec(`${asUser} kmeshctl register evil.service`);
    assert.equal(ctl.code, 1, ctl.stderr);
    const services = JSON.parse(await c.sh('kmeshctl services --json'));
    assert.deepEqual(
      services.map((s: { name: string }) => s.name),
      [CLIENT],
    );
  });

  test('bad input: unknown unit and wrong argument type are clear errors', async () => {
    const unknown = await c.exec('kmeshctl register no-such-unit.service');
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /NotFound/);
    const wrong = await c.exec(
      'busctl call org.openeuler.Kmesh1 /org/openeuler/Kmesh1 org.openeuler.Kmesh1.Manager RegisterService i 7',
    );
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /argument|Invalid/i);
  });

  test('systemctl stop kmesh → traffic still flows (pinned programs)', async () => {
    await c.sh('systemctl stop kmesh');
    assert.notEqual((await c.exec('systemctl is-active kmesh')).stdout.trim(), 'active');
    const none = await c.exec('kmeshctl status');
    assert.equal(none.code, 3, `kmeshctl with the daemon stopped: ${none.stderr}`);
    assert.ok(c.pinned().length > 0, 'nothing pinned while stopped');
    await sleep(300);
    assertSteered(await collect(Date.now(), 20), 'after systemctl stop kmesh');
  });

  test('package removal → nothing attached, nothing pinned', async () => {
    await c.sh('apt-get remove -y kmesh');
    assert.deepEqual(c.pinned(), [], 'pins left on the bpffs after removal');
    const attached = await c.sh(
      `bpftool cgroup show /sys/fs/cgroup/unified/system.slice/${CLIENT} 2>/dev/null || bpftool cgroup show /sys/fs/cgroup/system.slice/${CLIENT}`,
    );
    assert.equal(attached.trim(), '', `programs still attached to the client cgroup:\n${attached}`);
    await sleep(300);
    const r = await collect(Date.now(), 5);
    assert.ok(
      r.every((x) => x === 'ECONNREFUSED'),
      `VIP still steered after removal: ${r.join(' ')}`,
    );
  });
});
