/** The D-Bus management service against a private dbus-daemon with a fake DaemonControl. */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import dbus from 'dbus-next';
import { callMethod, dbusErrorName, dbusErrorText, getProperty } from '../../src/api/dbus/call.js';
import { BUS_NAME, MANAGER_IFACE, OBJECT_PATH } from '../../src/api/dbus/names.js';
import { type DbusService, startDbusService } from '../../src/api/dbus/service.js';
import { KmeshError } from '../../src/contracts/errors.js';
import {
  dbusSkipReason,
  FakeControl,
  type PrivateBus,
  repoRoot,
  run,
  silentLogger,
  startPrivateBus,
} from './dbus-harness.js';

const BUSCTL_TARGET = [BUS_NAME, OBJECT_PATH, MANAGER_IFACE];

async function rejection(p: Promise<unknown>): Promise<{ name: string | undefined; text: string }> {
  try {
    await p;
  } catch (err) {
    return { name: dbusErrorName(err), text: dbusErrorText(err) };
  }
  assert.fail('expected the call to fail');
}

describe('D-Bus service with the shipped policy', { skip: dbusSkipReason() ?? false }, () => {
  let bus: PrivateBus;
  let service: DbusService;
  let client: dbus.MessageBus;
  const control = new FakeControl();
  const call = (member: string, signature = '', body: unknown[] = []) =>
    callMethod(client, { destination: BUS_NAME, path: OBJECT_PATH, iface: MANAGER_IFACE, member, signature, body });

  before(async () => {
    bus = await startPrivateBus('policy');
    service = await startDbusService(control, silentLogger, { busAddress: bus.address, pollMs: 50 });
    client = dbus.sessionBus({ busAddress: bus.address });
  });
  after(async () => {
    client?.disconnect();
    await service?.stop();
    await bus?.stop();
  });

  test('properties are typed and readable', async () => {
    assert.equal(await getProperty(client, BUS_NAME, OBJECT_PATH, MANAGER_IFACE, 'State'), 'running');
    assert.equal(await getProperty(client, BUS_NAME, OBJECT_PATH, MANAGER_IFACE, 'ConfigVersion'), 3);
    assert.equal(await getProperty(client, BUS_NAME, OBJECT_PATH, MANAGER_IFACE, 'XdsConnected'), false);
    assert.equal(await getProperty(client, BUS_NAME, OBJECT_PATH, MANAGER_IFACE, 'ServiceCount'), 1);
  });

  test('GetStatus and ListServices return typed values', async () => {
    const [status] = (await call('GetStatus')) as [Record<string, dbus.Variant>];
    assert.equal(status.State?.signature, 's');
    assert.equal(status.State?.value, 'running');
    assert.equal(status.ConfigVersion?.signature, 'u');
    assert.deepEqual(status.Features?.value, { l4: [true, ''], probe: [false, 'no ringbuf'] });
    const [list] = (await call('ListServices')) as [unknown[][]];
    assert.deepEqual(list[0], [
      'orders.service',
      'orders.service',
      'config',
      true,
      '/sys/fs/cgroup/system.slice/orders.service',
      '12345',
      '',
    ]);
  });

  test('DumpConfig is JSON', async () => {
    const [text] = await call('DumpConfig');
    assert.deepEqual(JSON.parse(String(text)), { model: { listeners: [], clusters: [] }, maps: {} });
  });

  test('root can register, gets ServiceChanged and PropertiesChanged', async () => {
    const seen: string[] = [];
    const onMessage = (m: dbus.Message) => {
      if (m.type === dbus.MessageType.SIGNAL && m.path === OBJECT_PATH)
        seen.push(`${m.member}:${JSON.stringify(m.body, (_k, v) => (v instanceof dbus.Variant ? v.value : v))}`);
    };
    client.on('message', onMessage);
    await callMethod(client, {
      destination: 'org.freedesktop.DBus',
      path: '/org/freedesktop/DBus',
      iface: 'org.freedesktop.DBus',
      member: 'AddMatch',
      signature: 's',
      body: [`type='signal',path='${OBJECT_PATH}'`],
    });
    const [reply] = await call('RegisterService', 's', ['payments.service']);
    assert.deepEqual(reply, ['payments.service', 'payments.service', 'runtime', false, '', '', 'unit is not running']);
    const [v] = await call('Reload');
    assert.equal(v, 4);
    await new Promise((r) => setTimeout(r, 300));
    client.off('message', onMessage);
    assert.ok(seen.includes('ServiceChanged:["payments.service","registered"]'), seen.join('\n'));
    assert.ok(seen.includes('ConfigApplied:[4]'), seen.join('\n'));
    assert.ok(
      seen.some((s) => s.startsWith('PropertiesChanged:') && s.includes('"ServiceCount":2')),
      seen.join('\n'),
    );
    assert.ok(
      seen.some((s) => s.startsWith('PropertiesChanged:') && s.includes('"ConfigVersion":4')),
      seen.join('\n'),
    );
  });

  test('PropertiesChanged follows state without an event (poll)', async () => {
    control.xdsConnected = true;
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(await getProperty(client, BUS_NAME, OBJECT_PATH, MANAGER_IFACE, 'XdsConnected'), true);
    control.xdsConnected = false;
  });

  test('daemon errors become named D-Bus errors with the message', async () => {
    const e1 = await rejection(call('RegisterService', 's', ['missing.service']));
    assert.equal(e1.name, 'org.openeuler.Kmesh1.Error.NotFound');
    assert.match(e1.text, /missing\.service/);
    const e2 = await rejection(call('RegisterService', 's', ['orders.service']));
    assert.equal(e2.name, 'org.openeuler.Kmesh1.Error.AlreadyExists');
    const e3 = await rejection(call('SetLogLevel', 's', ['loud']));
    assert.equal(e3.name, 'org.openeuler.Kmesh1.Error.InvalidArgument');
    const e4 = await rejection(call('RegisterService', 's', ['   ']));
    assert.equal(e4.name, 'org.openeuler.Kmesh1.Error.InvalidArgument');
    const e5 = await rejection(call('UnregisterService', 's', ['nothing.service']));
    assert.equal(e5.name, 'org.openeuler.Kmesh1.Error.NotFound');
  });

  test('wrong argument types are refused with InvalidArgs', async () => {
    const e1 = await rejection(call('RegisterService', 'i', [42]));
    assert.equal(e1.name, 'org.freedesktop.DBus.Error.InvalidArgs');
    assert.match(e1.text, /RegisterService takes arguments \(s\), got \(i\)/);
    const e2 = await rejection(call('RegisterService'));
    assert.equal(e2.name, 'org.freedesktop.DBus.Error.InvalidArgs');
    const e3 = await rejection(call('GetStatus', 's', ['x']));
    assert.equal(e3.name, 'org.freedesktop.DBus.Error.InvalidArgs');
    const e4 = await rejection(call('NoSuchMethod'));
    assert.equal(e4.name, 'org.freedesktop.DBus.Error.UnknownMethod');
    assert.deepEqual(
      control.calls.filter((c) => c.includes('42')),
      [],
    );
  });

  test('properties are read-only', async () => {
    const e = await rejection(
      callMethod(client, {
        destination: BUS_NAME,
        path: OBJECT_PATH,
        iface: 'org.freedesktop.DBus.Properties',
        member: 'Set',
        signature: 'ssv',
        body: [MANAGER_IFACE, 'State', new dbus.Variant('s', 'stopping')],
      }),
    );
    assert.equal(e.name, 'org.freedesktop.DBus.Error.PropertyReadOnly');
  });

  test('a second instance is refused: the name is taken', async () => {
    await assert.rejects(
      startDbusService(new FakeControl(), silentLogger, { busAddress: bus.address }),
      (err: unknown) =>
        err instanceof KmeshError && err.code === 'AlreadyExists' && /already owned.*pid \d+/.test(err.message),
    );
    // The first instance still answers.
    assert.equal(await getProperty(client, BUS_NAME, OBJECT_PATH, MANAGER_IFACE, 'State'), 'running');
  });

  test('busctl introspects and calls with typed output', async () => {
    const intro = await run('busctl', [`--address=${bus.address}`, 'introspect', BUS_NAME, OBJECT_PATH, MANAGER_IFACE]);
    assert.equal(intro.code, 0, intro.stderr);
    for (const member of ['.GetStatus', '.RegisterService', '.State', '.ConfigApplied', '.ServiceChanged']) {
      assert.ok(intro.stdout.includes(member), `${member} missing in:\n${intro.stdout}`);
    }
    const get = await run('busctl', [`--address=${bus.address}`, 'get-property', ...BUSCTL_TARGET, 'State']);
    assert.equal(get.stdout.trim(), 's "running"');
    const st = await run('busctl', [`--address=${bus.address}`, 'call', ...BUSCTL_TARGET, 'GetStatus']);
    assert.equal(st.code, 0, st.stderr);
    assert.match(st.stdout, /^a\{sv\} \d+ /);
    assert.match(st.stdout, /"State" s "running"/);
  });

  test('unprivileged callers may read but not mutate (bus policy)', async () => {
    const read = await run('busctl', [`--address=${bus.address}`, 'call', ...BUSCTL_TARGET, 'GetStatus'], {
      asNobody: true,
    });
    assert.equal(read.code, 0, read.stderr);
    const prop = await run('busctl', [`--address=${bus.address}`, 'get-property', ...BUSCTL_TARGET, 'Version'], {
      asNobody: true,
    });
    assert.equal(prop.code, 0, prop.stderr);
    const before = control.calls.length;
    for (const [member, sig, arg] of [
      ['RegisterService', 's', 'evil.service'],
      ['UnregisterService', 's', 'orders.service'],
      ['Reload', '', ''],
      ['SetLogLevel', 's', 'trace'],
    ] as const) {
      const args = [`--address=${bus.address}`, 'call', ...BUSCTL_TARGET, member, ...(sig ? [sig, arg] : [])];
      const r = await run('busctl', args, { asNobody: true });
      assert.notEqual(r.code, 0, `${member} was allowed for nobody`);
      assert.match(r.stderr, /denied|AccessDenied/i, r.stderr);
    }
    assert.equal(control.calls.length, before);
    assert.equal(control.logLevel, 'info');
  });
});

describe('D-Bus service checks the caller uid itself', { skip: dbusSkipReason() ?? false }, () => {
  let bus: PrivateBus;
  let service: DbusService;
  const control = new FakeControl();

  before(async () => {
    // A bus that lets everything through: only the service's own check stands between nobody and the mesh.
    bus = await startPrivateBus('open');
    service = await startDbusService(control, silentLogger, { busAddress: bus.address });
  });
  after(async () => {
    await service?.stop();
    await bus?.stop();
  });

  test('nobody is refused with AccessDenied and a readable reason', async () => {
    const r = await run(
      'busctl',
      [`--address=${bus.address}`, 'call', ...BUSCTL_TARGET, 'RegisterService', 's', 'evil.service'],
      { asNobody: true },
    );
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Access denied/);
    // busctl prints only the errno text; a dbus-next client as nobody shows the service's own message.
    const dbusNext = join(repoRoot, 'node_modules', 'dbus-next', 'index.js');
    const script = `
      import { createRequire } from 'node:module';
      const dbus = createRequire(import.meta.url)(${JSON.stringify(dbusNext)});
      const bus = dbus.sessionBus({ busAddress: ${JSON.stringify(bus.address)} });
      try {
        await bus.call(new dbus.Message({ destination: '${BUS_NAME}', path: '${OBJECT_PATH}',
          interface: '${MANAGER_IFACE}', member: 'RegisterService', signature: 's', body: ['evil.service'] }));
        console.log('ALLOWED');
      } catch (e) { console.log(e.type + ': ' + e.text); }
      bus.disconnect();`;
    const js = await run('node', ['--input-type=module', '-e', script], { asNobody: true });
    assert.equal(
      js.stdout.trim(),
      'org.freedesktop.DBus.Error.AccessDenied: RegisterService changes the mesh and requires root (caller uid 65534)',
      js.stderr,
    );
    assert.deepEqual(control.calls, []);
    const ok = await run('busctl', [`--address=${bus.address}`, 'call', ...BUSCTL_TARGET, 'ListServices'], {
      asNobody: true,
    });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^a\(sssbsss\) 1 "orders.service"/);
  });

  test('stop() releases the name', async () => {
    await service.stop();
    const again = await startDbusService(new FakeControl(), silentLogger, { busAddress: bus.address });
    await again.stop();
  });
});
