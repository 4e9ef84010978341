/**
 * Real kernel: the probe's memory is bounded by the key map's capacity. Refused
 * connects to more distinct peers than kmesh_probe_conns holds fill the map; the
 * connections beyond it land in the kernel's overflow slot, and the totals stay exact.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { readOverflowCounts } from '../../src/probe/kernel-state.js';
import { counterTotal, inCgroupScript, makeProbeRig, type ProbeRig, runChild } from './probe-harness.js';

/** KMESH_PROBE_MAX_CONN_KEYS in bpf/kmesh_probe.h */
const MAX_KEYS = 16384;
const PEERS = MAX_KEYS + 300;

let rig: ProbeRig;

before(() => {
  rig = makeProbeRig('keys', { maxSeries: 100 });
});

after(() => {
  rig?.close();
});

test(`connects to ${PEERS} distinct peers: ${MAX_KEYS} keys, the rest in the overflow slot, every one counted`, async () => {
  // 127.77.0.0/16 has no listener: each connect is refused at once, a distinct unsteered key per address
  const body = `
const peers = ${PEERS};
let next = 0, refused = 0;
const one = () => new Promise((resolve) => {
  const i = next++;
  const c = net.connect(9, '127.77.' + (i >> 8) + '.' + (i & 255));
  c.on('error', (e) => { if (e.code === 'ECONNREFUSED') refused++; resolve(); });
  c.on('connect', () => { c.destroy(); resolve(); });
});
await Promise.all(Array.from({ length: 64 }, async () => { while (next < peers) await one(); }));
if (refused !== peers) throw new Error('refused ' + refused + ' of ' + peers);`;
  const res = await runChild(inCgroupScript(rig.cgroups.attached, body));
  assert.equal(res.code, 0, res.stderr);

  assert.equal(await counterTotal(rig.registry, 'kmesh_tcp_connections_failed_total'), PEERS);
  assert.equal(await counterTotal(rig.registry, 'kmesh_tcp_connections_opened_total'), 0);
  const keys = await rig.registry.getSingleMetric('kmesh_probe_connection_keys')?.get();
  assert.equal(keys?.values[0]?.value, MAX_KEYS, 'the kernel map is full, not larger');
  assert.equal(readOverflowCounts(rig.maps.connsOverflow).failed, PEERS - MAX_KEYS);
  const failed = await rig.registry.getSingleMetric('kmesh_tcp_connections_failed_total')?.get();
  const other = failed?.values.find((v) => v.labels.destination_address === 'other');
  // 100 label sets admitted; the rest of the keys and the kernel's overflow slot go to "other"
  assert.equal(failed?.values.length, 101);
  assert.equal(other?.value, PEERS - 100);
  assert.equal(await counterTotal(rig.registry, 'kmesh_probe_label_overflow_total'), PEERS - 100);
});
