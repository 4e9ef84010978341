/**
 * Bad input: a burst of 100k short connections with the access log on while the
 * consumer cannot run. The ring buffer fills and the kernel counts the records it
 * drops; every record is either delivered or counted as dropped, the connection
 * counters (kept in the kernel) stay exact, and the probe keeps working afterwards.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, test } from 'node:test';
import { counterTotal, inCgroupScript, makeProbeRig, type ProbeRig, runChild, waitFor } from './probe-harness.js';

const BURST = 100_000;

let rig: ProbeRig;

before(() => {
  rig = makeProbeRig('burst', { accessLog: true });
});

after(() => {
  rig?.close();
});

/** A backend and a client in one child (the whole child is in the cgroup; only its connects are tracked). */
function burstBody(total: number, parallel: number): string {
  return `
const server = net.createServer((s) => { s.on('error', () => {}); s.end(); });
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const port = server.address().port;
let started = 0, done = 0, failed = 0;
await new Promise((resolve) => {
  const one = () => {
    if (started >= ${total}) { if (done === ${total}) resolve(); return; }
    started++;
    const c = net.connect(port, '127.0.0.1');
    c.on('error', () => { failed++; });
    c.on('end', () => c.end());
    c.on('close', () => { done++; one(); });
  };
  for (let i = 0; i < ${parallel}; i++) one();
});
server.close();
console.log(JSON.stringify({ done, failed }));`;
}

test('100k connections with the consumer blocked: records dropped and counted, counters exact, probe survives', async (t) => {
  const records = async (): Promise<number> => counterTotal(rig.registry, 'kmesh_probe_access_records_total');
  assert.equal(await records(), 0);
  // spawnSync blocks this process's event loop, so the ring buffer is not drained meanwhile.
  const res = spawnSync(process.execPath, ['-e', inCgroupScript(rig.cgroups.attached, burstBody(BURST, 128))], {
    encoding: 'utf8',
    timeout: 240_000,
  });
  assert.equal(res.status, 0, res.stderr);
  const { done, failed } = JSON.parse(res.stdout) as { done: number; failed: number };
  assert.equal(done, BURST);
  const closed = BURST - failed;
  await waitFor(
    'every record delivered or dropped',
    async () => {
      rig.probe.drain();
      return (await records()) + Number(rig.probe.drops()) >= BURST;
    },
    30_000,
  );
  const drops = Number(rig.probe.drops());
  t.diagnostic(`records delivered ${await records()}, dropped ${drops}, connections ${BURST} (${failed} failed)`);
  assert.ok(drops > 0, 'the ring buffer overflowed');
  assert.equal((await records()) + drops, BURST);
  // the scrape-time counter mirrors the kernel's count
  await rig.registry.metrics();
  assert.equal(await counterTotal(rig.registry, 'kmesh_probe_ringbuf_drops_total'), drops);
  // the counters do not depend on the ring: every connection is in them
  assert.equal(await counterTotal(rig.registry, 'kmesh_tcp_connections_opened_total'), closed);
  assert.equal(await counterTotal(rig.registry, 'kmesh_tcp_connections_closed_total'), closed);
  assert.equal(await counterTotal(rig.registry, 'kmesh_tcp_connections_failed_total'), failed);

  // still working: a few more connections are all counted and logged
  const opened = await counterTotal(rig.registry, 'kmesh_tcp_connections_opened_total');
  const logged = await records();
  const again = await runChild(inCgroupScript(rig.cgroups.attached, burstBody(10, 2)));
  assert.equal(again.code, 0, again.stderr);
  await waitFor('post-burst records', async () => {
    rig.probe.drain();
    return (await records()) >= logged + 10;
  });
  assert.equal(await counterTotal(rig.registry, 'kmesh_tcp_connections_opened_total'), opened + 10);
  assert.equal(await records(), logged + 10);
  assert.equal(Number(rig.probe.drops()), drops);
});
