/**
 * Registration by configuration: a unit that cannot be resolved does not stop the rest; a service unit's
 * start hook attaches before its main process runs.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import pino from 'pino';
import { startParts } from '../../src/bin/compose.js';
import { KmeshError } from '../../src/contracts/errors.js';
import { cleanupPins } from '../../src/controller/cleanup.js';
import { parseConfig } from '../../src/controller/config/load.js';
import { UNIT_HOOK_FILE, UnitStartHooks, unitHookDropIn } from '../../src/controller/unit-hooks.js';
import type { UnitCgroupResolver } from '../../src/controller/unit-resolver.js';
import { cgroup2View } from '../../src/runtime/cgroup2.js';
import { makeCgroup } from './support/cgroup.js';
import { configWithPinDir, startTestDaemon, testPinDir } from './support/daemon.js';

test('a configured unit without systemd stays registered and explained; the cgroup service is attached', async (t) => {
  const cg = makeCgroup('services');
  t.after(() => cg.remove());
  // The test daemon has no systemd resolver, like a host without a system bus.
  const mesh = await startTestDaemon(
    'services',
    `[[services]]\nunit = "orders.service"\n[[services]]\ncgroup = "${cg.path}"\n`,
  );
  t.after(() => mesh.destroy());

  const services = mesh.daemon.listServices();
  const unit = services.find((s) => s.name === 'orders.service');
  const byCgroup = services.find((s) => s.name === cg.path);
  assert.equal(unit?.attached, false);
  assert.match(unit?.detail ?? '', /systemd is not reachable/);
  assert.equal(byCgroup?.attached, true);

  // Asked for at run time (D-Bus RegisterService), the same unit is refused with the reason.
  await assert.rejects(mesh.daemon.registerService({ unit: 'payments.service' }), (err: unknown) => {
    assert.ok(err instanceof KmeshError);
    assert.equal(err.code, 'InvalidArgument');
    assert.match(err.message, /systemd is not reachable/);
    return true;
  });
  await assert.rejects(mesh.daemon.registerService({ cgroup: cg.path }), /already registered/);
});

test('a registered service unit gets a start hook; AttachUnit (the hook) attaches to its current cgroup before answering', async (t) => {
  const cg = makeCgroup('hooked');
  t.after(() => cg.remove());
  const hookDir = mkdtempSync(join(tmpdir(), 'kmesh-hooks-'));
  t.after(() => rmSync(hookDir, { recursive: true, force: true }));
  const relative = cg.path.slice(cgroup2View().mount.length); // systemd's ControlGroup form
  let running = false;
  const units: UnitCgroupResolver = {
    resolve: async (unit) => {
      if (unit !== 'web.service') throw new KmeshError('NotFound', `systemd has no unit "${unit}"`);
      return running ? relative : null;
    },
    watch: () => () => {}, // no systemd signals: only the hook can attach
    close: () => {},
  };
  let reloads = 0;
  const logger = pino({ level: 'silent' });
  const hooks = new UnitStartHooks(hookDir, async () => void reloads++, logger);
  const pinDir = testPinDir('hooked');
  const config = parseConfig(configWithPinDir('', pinDir), '/tmp/kmesh-hooked.toml');
  const parts = await startParts({ config, logger, pinDir, unitResolver: units, unitHooks: hooks });
  const { daemon } = parts;
  t.after(async () => {
    await parts.stop();
    cleanupPins(pinDir);
  });

  const registered = await daemon.registerService({ unit: 'web.service' });
  assert.equal(registered.attached, false);
  const dropIn = join(hookDir, 'web.service.d', UNIT_HOOK_FILE);
  assert.equal(readFileSync(dropIn, 'utf8'), unitHookDropIn('web.service'));
  assert.match(readFileSync(dropIn, 'utf8'), /^ExecStartPre=-\+\/usr\/bin\/busctl call .* AttachUnit s %n$/m);
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(reloads, 1, 'systemd reloaded once to read the drop-in');

  running = true; // systemd started the unit: its ExecStartPre asks for the attach
  const attached = await daemon.attachUnit('web.service');
  assert.equal(attached.attached, true);
  assert.equal(attached.cgroupPath, cg.path);
  await assert.rejects(daemon.attachUnit('other.service'), /unit other\.service is not registered/);

  await daemon.unregisterService('web.service');
  assert.equal(existsSync(join(hookDir, 'web.service.d')), false, 'the drop-in goes with the registration');
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(reloads, 2);
});
