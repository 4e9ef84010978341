import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DAEMON_NODE_FLAGS } from '../../src/controller/node-flags.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

test('the packaged launcher and npm start run the daemon with DAEMON_NODE_FLAGS', () => {
  const launcher = readFileSync(join(ROOT, 'packaging', 'bin', 'kmesh-daemon'), 'utf8');
  const start = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).scripts.start as string;
  const flags = DAEMON_NODE_FLAGS.join(' ');
  assert.match(launcher, new RegExp(`exec /usr/bin/node ${flags} /usr/lib/kmesh/dist/src/bin/kmesh-daemon.js`));
  assert.equal(start, `node ${flags} dist/src/bin/kmesh-daemon.js`);
});
