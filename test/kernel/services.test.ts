/** Registration by configuration: a unit that cannot be resolved does not stop the rest. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KmeshError } from '../../src/contracts/errors.js';
import { makeCgroup } from './support/cgroup.js';
import { startTestDaemon } from './support/daemon.js';

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
