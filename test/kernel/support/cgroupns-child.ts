/**
 * The daemon's side of the cgroup-namespace guard test (cgroup-guard.test.ts). It runs only inside a
 * cgroup namespace whose root is a cgroup the test made, with that root mounted over the usual cgroup2
 * mount point: asked to attach to the namespace root in every way, it must refuse. Prints what it
 * answered as JSON. Anywhere else it refuses to start, so a broken guard can never reach the host root.
 */
import { readlinkSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { startParts } from '../../../src/bin/compose.js';
import { parseConfig } from '../../../src/controller/config/load.js';
import { CgroupLinks } from '../../../src/runtime/cgroup-links.js';
import { cgroup2View, cgroupId } from '../../../src/runtime/cgroup2.js';
import { configWithPinDir } from './daemon.js';

const expectedRoot = BigInt(process.env.KMESH_NS_ROOT_INO ?? '0');
const pinDir = process.env.KMESH_NS_PIN_DIR ?? '';
const view = cgroup2View();
if (
  readlinkSync('/proc/self/ns/cgroup') === process.env.KMESH_TEST_CGROUP_NS ||
  !process.env.KMESH_TEST_CGROUP_NS ||
  cgroupId(view.mount) !== expectedRoot ||
  !pinDir
) {
  process.stderr.write('not inside the test cgroup namespace: refusing to run\n');
  process.exit(3);
}

const m = view.mount;
// The TOML check is left out on purpose (no `cgroups` option): the registry and attach guards must hold alone.
const config = parseConfig(
  configWithPinDir(
    `[[services]]\ncgroup = "/child"\n[[services]]\ncgroup = "/"\n[[services]]\ncgroup = "${m}/"\n`,
    pinDir,
  ),
  '/tmp/kmesh-ns.toml',
);
const parts = await startParts({ config, logger: pino({ level: 'silent' }), pinDir });
const { daemon } = parts;
const answer = async (register: () => Promise<unknown>) =>
  register().then(
    () => 'ACCEPTED',
    (err: Error) => err.message,
  );
const runtime: Record<string, string> = {};
for (const spelling of ['/', '//', m, `${m}/`, `${m}/child/..`, `${m}/child/../`, '/child/../']) {
  runtime[spelling] = await answer(() => daemon.registerService({ cgroup: spelling }));
}
const links = new CgroupLinks(join(pinDir, 'links-direct'), view);
const attach = await answer(async () => links.attach(`${m}/child/../`, parts.datapath.programsOf('l4')));
const report = { services: daemon.listServices(), lastError: daemon.status().lastError, runtime, attach };
await parts.stop();
process.stdout.write(JSON.stringify(report));
