/**
 * Rules that used to be written twice and disagreed, now written once: every place that
 * reads the same input accepts and refuses the same values.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KmeshError } from '../../src/contracts/errors.js';
import { parseConfig } from '../../src/controller/config/load.js';
import { validateUnitName } from '../../src/controller/systemd-units.js';
import { parseListen } from '../../src/probe/server.js';

const accepts = (toml: string): boolean => {
  try {
    parseConfig(toml, '/etc/kmesh/kmesh.toml');
    return true;
  } catch (err) {
    assert.ok(err instanceof KmeshError, String(err));
    return false;
  }
};
const doesNotThrow = (fn: () => unknown): boolean => {
  try {
    fn();
    return true;
  } catch {
    return false;
  }
};

test('[metrics] listen: the TOML check and the metrics server read the same addresses', () => {
  const samples = [
    '0.0.0.0:15020',
    ':15020',
    '[::]:15020',
    '[::1]:9',
    'localhost:15020',
    '127.0.0.1:0',
    '15020',
    'host',
    '1.2.3.4:99999',
    '[::1:5',
    '',
    'a b:1',
  ];
  for (const listen of samples) {
    const toml = accepts(`[metrics]\nlisten = "${listen}"\n`);
    const server = doesNotThrow(() => parseListen(listen));
    assert.equal(
      toml,
      server,
      `"${listen}": TOML ${toml ? 'accepts' : 'refuses'}, server ${server ? 'accepts' : 'refuses'}`,
    );
  }
  assert.equal(accepts('[metrics]\nlisten = ":15020"\n'), true, 'all addresses, as the server reads it');
});

test('unit names: the TOML and the D-Bus/systemd path accept the same suffixes', () => {
  const samples = [
    'orders.service',
    'run-1.scope',
    'kmesh.slice',
    'orders.socket',
    'home.mount',
    'swapfile.swap',
    'a-b@1.service',
    'x.target',
    'orders',
    '../x.service',
    'a/b.service',
    `${'a'.repeat(300)}.service`,
  ];
  for (const unit of samples) {
    const toml = accepts(`[[services]]\nunit = "${unit}"\n`);
    const dbus = doesNotThrow(() => validateUnitName(unit));
    assert.equal(toml, dbus, `"${unit}": TOML ${toml ? 'accepts' : 'refuses'}, D-Bus ${dbus ? 'accepts' : 'refuses'}`);
  }
  assert.equal(accepts('[[services]]\nunit = "orders.socket"\n'), true);
});
