/** The setting of an L7 kernel test: a test cgroup, HTTP backends on the test's address, a daemon with routes. */
import assert from 'node:assert/strict';
import type { MeshModel } from '../../../src/model/types.js';
import { makeCgroup, type TestCgroup } from './cgroup.js';
import { startTestDaemon, type TestDaemon } from './daemon.js';
import { type HttpBackends, httpBackends } from './http-peers.js';

export interface L7Mesh {
  cg: TestCgroup;
  td: TestDaemon;
  backends: HttpBackends;
  /** Daemon first, then backends and cgroup; also after a failed start. */
  close(): Promise<void>;
}

/**
 * Starts the pieces, applies `model` and waits for the L7 data path and its pools. `beforeApply` sees the
 * daemon before any route exists.
 */
export async function startL7Mesh(
  label: string,
  backendList: Array<{ name: string; port: number }>,
  host: string,
  model: MeshModel,
  beforeApply?: (td: TestDaemon) => void,
): Promise<L7Mesh> {
  const parts: Partial<L7Mesh> = {};
  const close = async () => {
    await parts.td?.destroy();
    await parts.backends?.close();
    parts.cg?.remove();
  };
  try {
    parts.cg = makeCgroup(label);
    parts.backends = await httpBackends(backendList, host);
    parts.td = await startTestDaemon(label, `[[services]]\ncgroup = "${parts.cg.path}"\n`);
    beforeApply?.(parts.td);
    await parts.td.daemon.applyXds(model);
    assert.ok(await parts.td.daemon.l7Ready(), 'the L7 data path runs');
    // let the pools fill
    await new Promise((r) => setTimeout(r, 300));
  } catch (err) {
    await close();
    throw err;
  }
  return { cg: parts.cg, td: parts.td, backends: parts.backends, close };
}
