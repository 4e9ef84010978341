/**
 * Bad input: a burst of 100k short connections while the consumer cannot run. The
 * ring buffer fills, the kernel counts what it drops, every event is either delivered
 * or counted as dropped, and the probe keeps working afterwards.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, test } from 'node:test';
import { counterTotal, inCgroupScript, makeProbeRig, type ProbeRig, runChild, waitFor } from './probe-harness.js';

const BURST = 100_000;

let rig: ProbeRig;

before(() => {
  rig = makeProbeRig('burst');
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

test('100k connections with the consumer blocked: drops are counted, nothing else is lost, probe survives', async (t) => {
  const eventsBefore = await counterTotal(rig.registry, 'kmesh_probe_events_total');
  assert.equal(eventsBefore, 0);
  // spawnSync blocks this process's event loop, so the ring buffer is not drained meanwhile.
  const res = spawnSync(process.execPath, ['-e', inCgroupScript(rig.cgroups.attached, burstBody(BURST, 128))], {
    encoding: 'utf8',
    timeout: 240_000,
  });
  assert.equal(res.status, 0, res.stderr);
  const { done, failed } = JSON.parse(res.stdout) as { done: number; failed: number };
  assert.equal(done, BURST);
  const expected = 2 * (BURST - failed); // an open and a close per connection (failed ones: one event each)
  const delivered = async (): Promise<number> => counterTotal(rig.registry, 'kmesh_probe_events_total');
  await waitFor(
    'every event delivered or dropped',
    async () => {
      rig.probe.drain();
      return (await delivered()) + Number(rig.probe.drops()) >= expected + failed;
    },
    30_000,
  );
  const drops = Number(rig.probe.drops());
  t.diagnostic(`events delivered ${await delivered()}, dropped ${drops}, expected ${expected + failed}`);
  assert.ok(drops > 0, 'the ring buffer overflowed');
  assert.equal((await delivered()) + drops, expected + failed);
  // the scrape-time counter mirrors the kernel's count
  await rig.registry.metrics();
  assert.equal(await counterTotal(rig.registry, 'kmesh_probe_ringbuf_drops_total'), drops);

  // still working: a few more connections are all counted
  const opened = await counterTotal(rig.registry, 'kmesh_tcp_connections_opened_total');
  const again = await runChild(inCgroupScript(rig.cgroups.attached, burstBody(10, 2)));
  assert.equal(again.code, 0, again.stderr);
  await waitFor(
    'post-burst events',
    async () => (await counterTotal(rig.registry, 'kmesh_tcp_connections_opened_total')) >= opened + 10,
  );
  assert.equal(await counterTotal(rig.registry, 'kmesh_tcp_connections_opened_total'), opened + 10);
  assert.equal(Number(rig.probe.drops()), drops);
});
