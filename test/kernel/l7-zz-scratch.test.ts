// SCRATCH (not committed): loops the 2000-connection weight test under CPU load.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { MeshModel } from '../../src/model/types.js';
import { cluster, ep, listener, route, vhost } from '../support/model-builders.js';
import { makeCgroup, type TestCgroup } from './support/cgroup.js';
import { startTestDaemon, type TestDaemon } from './support/daemon.js';
import { type HttpBackends, httpBackends, runIn } from './support/http-peers.js';

const CLIENT = join(dirname(fileURLToPath(import.meta.url)), 'support', 'http-client.js');
const VIP = '127.45.0.9';
const PORT = 31080;
const ROUNDS = Number(process.env.ROUNDS ?? 10);
const COUNT = Number(process.env.COUNT ?? 2000);
const LOAD = Number(process.env.LOAD ?? 2);

let cg: TestCgroup; let td: TestDaemon; let backends: HttpBackends; const hogs: ChildProcess[] = [];
before(async () => {
  cg = makeCgroup('l7s');
  backends = await httpBackends([{ name: 'v1', port: 31001 }, { name: 'v2', port: 31002 }]);
  td = await startTestDaemon('l7s', `[[services]]\ncgroup = "${cg.path}"\n`);
  const web = listener('web', VIP, PORT, [['v1', 1]], 'http');
  web.virtualHosts = [vhost('web', ['*'], [route('gray', { path: { kind: 'prefix', value: '/gray' } }, [['v1', 90], ['v2', 10]])])];
  const m: MeshModel = { clusters: [cluster('v1', [ep('127.0.0.1', 31001)]), cluster('v2', [ep('127.0.0.1', 31002)])], listeners: [web] };
  await td.daemon.applyXds(m);
  assert.ok(await td.daemon.l7Ready());
  await new Promise((r) => setTimeout(r, 300));
  for (let i = 0; i < LOAD; i++) hogs.push(spawn(process.execPath, ['-e', 'for(;;){}'], { stdio: 'ignore' }));
});
after(async () => { for (const h of hogs) h.kill('SIGKILL'); await td?.destroy(); await backends?.close(); cg?.remove(); });

test('rounds', async () => {
  let failures = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = Date.now();
    const res = await runIn(cg.path, process.execPath, [CLIENT, 'many', JSON.stringify({ url: `http://${VIP}:${PORT}`, path: '/gray', count: COUNT })], 600_000);
    const tally = JSON.parse(res.stdout);
    const anc = (td.daemon.l7 as any).anchor;
    if (anc.trace) for (const m of res.stderr.matchAll(/ERRPORT (\d+) (.*)/g)) {
      const port = Number(m[1]);
      for (const [hex, evs] of anc.trace) {
        const b = Buffer.from(hex, 'hex');
        if (b.length === 12 && b.readUInt16BE(8) === port) console.log('TRACE', m[2], hex, JSON.stringify(evs));
      }
    }
    if (anc.trace?.has("nopeer")) console.log('NOPEER', JSON.stringify(anc.trace.get('nopeer')));
    anc.trace?.clear();
    const ok = (tally.v1 ?? 0) + (tally.v2 ?? 0);
    await new Promise((r) => setTimeout(r, 300));
    const c = td.daemon.l7!.counters();
    const conns = [...td.daemon.l7!.map('kmesh_l7_conns').keys()].length;
    const peers = [...td.daemon.l7!.map('kmesh_l7_peers').keys()].length;
    const anchor = (td.daemon.l7 as any).anchor;
    for (const [hex, pair] of anchor.pairs) {
      const cs = td.daemon.l7!.map('kmesh_l7_conns').lookup(Buffer.from(hex, 'hex'));
      console.log('LEFT', hex, JSON.stringify({ ce: pair.clientEnded, ue: pair.upstreamEnded, c: !!pair.client, cd: pair.client?.destroyed, crd: pair.client?.readableEnded, cw: pair.client?.writableEnded, u: !!pair.upstream, ud: pair.upstream?.destroyed, urd: pair.upstream?.readableEnded, uw: pair.upstream?.writableEnded, ukey: pair.upstreamKey?.toString('hex'), uread: pair.upstream?.bytesRead, uwritten: pair.upstream?.bytesWritten, cread: pair.client?.bytesRead }), cs?.toString('hex'));
    }
    if (ok !== COUNT || c.open_pairs || conns || peers) failures++;
    console.log(`round ${r} ${Date.now() - t0}ms ${JSON.stringify(tally)} open_pairs=${c.open_pairs} conns=${conns} peers=${peers} hit=${c.pool_hit} slow=${c.slow_path} spliced=${c.slow_path_spliced} failed=${c.slow_path_failed} backends_open=${backends.open()}`);
  }
  console.log(`FAILED ROUNDS ${failures}/${ROUNDS}`);
  assert.equal(failures, 0);
});
