import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DAEMON_ENV, DAEMON_NODE_FLAGS } from '../../src/controller/node-flags.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

test('the packaged launcher and npm start run the daemon with DAEMON_NODE_FLAGS and DAEMON_ENV', () => {
  const launcher = readFileSync(join(ROOT, 'packaging', 'bin', 'kmesh-daemon'), 'utf8');
  const start = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).scripts.start as string;
  const flags = DAEMON_NODE_FLAGS.join(' ');
  assert.match(launcher, new RegExp(`exec /usr/bin/node ${flags} /usr/lib/kmesh/dist/src/bin/kmesh-daemon.js`));
  const env = Object.entries(DAEMON_ENV);
  for (const [name, value] of env) {
    assert.match(launcher, new RegExp(`^${name}="\\$\\{${name}:-${value}\\}"\nexport ${name}$`, 'm'));
  }
  const assignments = env.map(([name, value]) => `${name}=${value}`).join(' ');
  assert.equal(start, `${assignments} node ${flags} dist/src/bin/kmesh-daemon.js`);
});
