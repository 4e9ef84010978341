/** kmeshctl: argument handling, output formats and exit codes, against the D-Bus service on a private bus. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import dbus from 'dbus-next';
import { type DbusService, startDbusService } from '../../src/api/dbus/service.js';
import { EXIT, parseCommandLine, run } from '../../src/bin/kmeshctl.js';
import { dbusSkipReason, FakeControl, type PrivateBus, silentLogger, startPrivateBus } from './dbus-harness.js';

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (s: string) => out.push(s), err: (s: string) => err.push(s) }, out, err };
}

describe('kmeshctl argument handling', () => {
  test('parses commands and options', () => {
    assert.deepEqual(parseCommandLine(['status']), { command: 'status', json: false, help: false });
    assert.deepEqual(parseCommandLine(['--json', 'register', 'a.service']), {
      command: 'register',
      arg: 'a.service',
      json: true,
      help: false,
    });
    assert.equal(parseCommandLine(['services', '--json']).json, true);
    assert.equal(parseCommandLine(['-h']).help, true);
  });

  for (const [argv, why] of [
    [[], /missing command/],
    [['frobnicate'], /unknown command "frobnicate"/],
    [['status', 'extra'], /takes no arguments/],
    [['register'], /takes exactly 1 argument/],
    [['log-level', 'a', 'b'], /takes exactly 1 argument/],
    [['access-log', 'maybe'], /"access-log" takes on or off, got "maybe"/],
    [['--verbose', 'status'], /Unknown option '--verbose'/],
  ] as const) {
    test(`usage error for ${JSON.stringify(argv)} → exit 2`, async () => {
      const c = capture();
      const code = await run([...argv], c.io, () => assert.fail('must not connect on a usage error'));
      assert.equal(code, EXIT.usage);
      assert.match(c.err.join('\n'), why);
      assert.match(c.err.join('\n'), /Usage: kmeshctl/);
    });
  }

  test('--help prints usage and exits 0 without connecting', async () => {
    const c = capture();
    assert.equal(await run(['--help'], c.io, () => assert.fail('no bus for --help')), EXIT.ok);
    assert.match(c.out.join('\n'), /register UNIT/);
  });

  test('no bus at all → exit 3', async () => {
    const c = capture();
    const code = await run(['status'], c.io, () => dbus.sessionBus({ busAddress: 'unix:path=/nonexistent/kmesh-bus' }));
    assert.equal(code, EXIT.notRunning);
    assert.match(c.err.join('\n'), /cannot connect to the system bus/);
  });
});

describe('kmeshctl against the service', { skip: dbusSkipReason() ?? false }, () => {
  let bus: PrivateBus;
  let service: DbusService | undefined;
  const control = new FakeControl();
  const connect = () => dbus.sessionBus({ busAddress: bus.address });

  before(async () => {
    bus = await startPrivateBus('policy');
  });
  after(async () => {
    await service?.stop();
    await bus?.stop();
  });

  test('daemon not running → exit 3 with a hint', async () => {
    const c = capture();
    assert.equal(await run(['status'], c.io, connect), EXIT.notRunning);
    assert.match(c.err.join('\n'), /not running.*systemctl start kmesh/);
  });

  test('status: table and --json', async () => {
    service = await startDbusService(control, silentLogger, { busAddress: bus.address });
    const c = capture();
    assert.equal(await run(['status'], c.io, connect), EXIT.ok);
    const text = c.out.join('\n');
    assert.match(text, /^Version: +0\.1\.0-test$/m);
    assert.match(text, /^State: +running$/m);
    assert.match(text, /^Feature probe: +disabled \(no ringbuf\)$/m);
    const j = capture();
    assert.equal(await run(['status', '--json'], j.io, connect), EXIT.ok);
    const parsed = JSON.parse(j.out.join('\n'));
    assert.equal(parsed.state, 'running');
    assert.equal(parsed.configVersion, 3);
    assert.equal(parsed.features.l4.enabled, true);
  });

  test('services: table and --json', async () => {
    const c = capture();
    assert.equal(await run(['services'], c.io, connect), EXIT.ok);
    const lines = c.out.join('\n').split('\n');
    assert.match(lines[0] ?? '', /^NAME +ORIGIN +ATTACHED +CGROUP +DETAIL$/);
    assert.match(lines[1] ?? '', /^orders\.service +config +yes +\/sys\/fs\/cgroup\/system\.slice\/orders\.service$/);
    const j = capture();
    assert.equal(await run(['--json', 'services'], j.io, connect), EXIT.ok);
    assert.equal(JSON.parse(j.out.join('\n'))[0].cgroupId, '12345');
  });

  test('register / unregister / reload / log-level / dump / version', async () => {
    const c = capture();
    assert.equal(await run(['register', 'web.service'], c.io, connect), EXIT.ok);
    assert.match(c.out.join('\n'), /Registered web\.service \(not attached: unit is not running\)/);
    assert.equal(await run(['unregister', 'web.service'], c.io, connect), EXIT.ok);
    assert.equal(await run(['reload'], c.io, connect), EXIT.ok);
    assert.match(c.out.join('\n'), /Reloaded: config version 4/);
    assert.equal(await run(['log-level', 'debug'], c.io, connect), EXIT.ok);
    assert.equal(control.logLevel, 'debug');
    assert.equal(await run(['access-log', 'on'], c.io, connect), EXIT.ok);
    assert.equal(control.accessLog, true);
    assert.equal(await run(['access-log', 'off'], c.io, connect), EXIT.ok);
    assert.equal(control.accessLog, false);
    const d = capture();
    assert.equal(await run(['dump'], d.io, connect), EXIT.ok);
    assert.deepEqual(JSON.parse(d.out.join('\n')), { model: { listeners: [], clusters: [] }, maps: {} });
    const v = capture();
    assert.equal(await run(['version', '--json'], v.io, connect), EXIT.ok);
    assert.equal(JSON.parse(v.out.join('\n')).daemon, '0.1.0-test');
  });

  test('endpoints: table and --json', async () => {
    const c = capture();
    assert.equal(await run(['endpoints', 'reviews'], c.io, connect), EXIT.ok);
    const lines = c.out.join('\n').split('\n');
    assert.match(lines[0] ?? '', /^ENDPOINT +PRIORITY +LOCALITY +WEIGHT +STATE +ACTIVE/);
    assert.match(lines[1] ?? '', /^127\.0\.0\.1:9081 +0 +r1\/a +1 +ejected until 2026-01-01T00:00:30\.000Z +0 /);
    const j = capture();
    assert.equal(await run(['--json', 'endpoints', 'reviews'], j.io, connect), EXIT.ok);
    assert.equal(JSON.parse(j.out.join('\n'))[0].timesEjected, 1);
    const e = capture();
    assert.equal(await run(['endpoints', 'nope'], e.io, connect), EXIT.daemonError);
  });

  test('errors from the daemon → exit 1 with the reason', async () => {
    const c = capture();
    assert.equal(await run(['register', 'missing.service'], c.io, connect), EXIT.daemonError);
    assert.match(c.err.join('\n'), /NotFound: systemd has no unit "missing\.service"/);
    const l = capture();
    assert.equal(await run(['log-level', 'loud'], l.io, connect), EXIT.daemonError);
    assert.match(l.err.join('\n'), /InvalidArgument: unknown log level "loud"/);
  });
});
