/**
 * UnitCgroupResolver against a fake org.freedesktop.systemd1 on a private bus (the real one is exercised by the
 * nspawn e2e test), and the sd_notify helpers without a $NOTIFY_SOCKET.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import dbus from 'dbus-next';
import { KmeshError } from '../../src/contracts/errors.js';
import { notifyReady, resetNotifyForTests, watchdogIntervalMs } from '../../src/controller/sd-notify.js';
import { UnitCgroupResolver, unitObjectPath, validateUnitName } from '../../src/controller/systemd-units.js';
import { dbusSkipReason, type PrivateBus, startPrivateBus } from './dbus-harness.js';

interface FakeUnit {
  load: string;
  active: string;
  cgroup: string;
}

/** Just enough of systemd's API: LoadUnit, Subscribe, Properties.Get, and the signals. */
async function fakeSystemd(address: string, units: Record<string, FakeUnit>) {
  const bus = dbus.sessionBus({ busAddress: address });
  const byPath = new Map(Object.keys(units).map((u) => [unitObjectPath(u), u]));
  bus.addMethodHandler((msg: dbus.Message) => {
    const reply = (sig: string, body: unknown[]) => bus.send(dbus.Message.newMethodReturn(msg, sig, body));
    if (msg.member === 'LoadUnit') {
      const name = String(msg.body[0]);
      if (!/\.(service|scope|slice|socket|mount|swap)$/.test(name)) {
        bus.send(dbus.Message.newError(msg as unknown as string, 'org.freedesktop.DBus.Error.InvalidArgs', 'bad name'));
        return true;
      }
      units[name] ??= { load: 'not-found', active: 'inactive', cgroup: '' };
      byPath.set(unitObjectPath(name), name);
      reply('o', [unitObjectPath(name)]);
      return true;
    }
    if (msg.member === 'Subscribe') {
      reply('', []);
      return true;
    }
    if (msg.member === 'Get') {
      const u = units[byPath.get(msg.path) ?? ''];
      const prop = String(msg.body[1]);
      const value = prop === 'LoadState' ? u?.load : prop === 'ActiveState' ? u?.active : u?.cgroup;
      reply('v', [new dbus.Variant('s', value ?? '')]);
      return true;
    }
    return false;
  });
  await bus.requestName('org.freedesktop.systemd1', 0);
  return {
    bus,
    /** What systemd emits when a job for the unit finishes. */
    jobRemoved(unit: string) {
      bus.send(
        dbus.Message.newSignal('/org/freedesktop/systemd1', 'org.freedesktop.systemd1.Manager', 'JobRemoved', 'uoss', [
          1,
          '/org/freedesktop/systemd1/job/1',
          unit,
          'done',
        ]),
      );
    },
  };
}

describe('UnitCgroupResolver', { skip: dbusSkipReason() ?? false }, () => {
  let bus: PrivateBus;
  let systemd: Awaited<ReturnType<typeof fakeSystemd>>;
  let client: dbus.MessageBus;
  let resolver: UnitCgroupResolver;
  const units: Record<string, FakeUnit> = {
    'orders.service': { load: 'loaded', active: 'active', cgroup: '/system.slice/orders.service' },
    'stopped.service': { load: 'loaded', active: 'inactive', cgroup: '' },
    'masked.service': { load: 'masked', active: 'inactive', cgroup: '' },
    'oneshot.service': { load: 'loaded', active: 'active', cgroup: '' },
  };

  before(async () => {
    bus = await startPrivateBus('open');
    systemd = await fakeSystemd(bus.address, units);
    client = dbus.sessionBus({ busAddress: bus.address });
    resolver = new UnitCgroupResolver({ bus: client, debounceMs: 20 });
  });
  after(async () => {
    await resolver?.close();
    client?.disconnect();
    systemd?.bus.disconnect();
    await bus?.stop();
  });

  test('object paths are escaped like systemd does', () => {
    assert.equal(unitObjectPath('orders.service'), '/org/freedesktop/systemd1/unit/orders_2eservice');
    assert.equal(unitObjectPath('a-b@1.service'), '/org/freedesktop/systemd1/unit/a_2db_401_2eservice');
  });

  test('malformed names are refused before asking systemd', () => {
    for (const bad of ['', 'orders', '../x.service', 'a/b.service', 'x.target', `${'a'.repeat(300)}.service`]) {
      assert.throws(
        () => validateUnitName(bad),
        (e: unknown) => e instanceof KmeshError && e.code === 'InvalidArgument',
      );
    }
  });

  test('a running unit resolves to its ControlGroup', async () => {
    assert.equal(await resolver.resolve('orders.service'), '/system.slice/orders.service');
  });

  test('known units without processes resolve to null', async () => {
    assert.equal(await resolver.resolve('stopped.service'), null);
    assert.equal(await resolver.resolve('masked.service'), null);
    assert.equal(await resolver.resolve('oneshot.service'), null);
  });

  test('units systemd does not know are NotFound', async () => {
    await assert.rejects(
      resolver.resolve('nope.service'),
      (e: unknown) => e instanceof KmeshError && e.code === 'NotFound' && /nope\.service/.test(e.message),
    );
  });

  test('watch() fires on JobRemoved for the unit only, and stops after unsubscribe', async () => {
    let orders = 0;
    let other = 0;
    const stop = resolver.watch('orders.service', () => orders++);
    const stopOther = resolver.watch('stopped.service', () => other++);
    await new Promise((r) => setTimeout(r, 100)); // AddMatch/Subscribe reach the bus
    systemd.jobRemoved('orders.service');
    await new Promise((r) => setTimeout(r, 150));
    assert.ok(orders >= 1, 'no onChange after JobRemoved');
    assert.equal(other, 0);
    stop();
    const before = orders;
    systemd.jobRemoved('orders.service');
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(orders, before);
    stopOther();
  });
});

describe('sd_notify helpers', () => {
  test('no $NOTIFY_SOCKET: notifications are no-ops', () => {
    const saved = process.env.NOTIFY_SOCKET;
    delete process.env.NOTIFY_SOCKET;
    resetNotifyForTests();
    assert.equal(notifyReady('test'), false);
    if (saved !== undefined) process.env.NOTIFY_SOCKET = saved;
    resetNotifyForTests();
  });

  test('watchdog interval follows WATCHDOG_USEC and WATCHDOG_PID', () => {
    assert.equal(watchdogIntervalMs({}), null);
    assert.equal(watchdogIntervalMs({ WATCHDOG_USEC: '30000000' }), 30_000);
    assert.equal(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: String(process.pid) }), 30_000);
    assert.equal(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '1' }), null);
    assert.equal(watchdogIntervalMs({ WATCHDOG_USEC: 'x' }), null);
  });
});
