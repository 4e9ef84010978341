/**
 * Functional probe check for the compatibility guests (5.10, 6.1 under qemu; see
 * scripts/kernels/): connections with known byte counts and refused connects from a
 * registered cgroup, counted through the real kernel. Prints one
 * `KMESH-RESULT {json}` line. Boot with:
 *
 *   KMESH_INITRAMFS=<initramfs built by scripts/kernels/initramfs.sh> \
 *     scripts/kernels/boot.sh 5.10 kmesh.script=dist/bench/probe/guest-check.js
 */
import { release } from 'node:os';
import {
  counterTotal,
  exchangeBackend,
  exchangeClient,
  inCgroupScript,
  makeProbeRig,
  REPLY,
  runChild,
  SEND,
  waitFor,
} from '../../test/kernel/probe-harness.js';

const N = 20;

/** One pass; `accessLog` selects the kernel mode (per-socket timing state or none). */
async function check(accessLog: boolean): Promise<Record<string, unknown>> {
  const rig = makeProbeRig(accessLog ? 'guest-t' : 'guest', { accessLog });
  const { server: backend, port } = await exchangeBackend();
  try {
    const body = `${exchangeClient(port, N)}
for (let i = 0; i < 3; i++) await new Promise((resolve) => {
  const s = net.connect(1, '127.0.0.1'); s.on('error', resolve); s.on('connect', () => { s.destroy(); resolve(); });
});`;
    const res = await runChild(inCgroupScript(rig.cgroups.attached, body));
    if (res.code !== 0) throw new Error(`client: ${res.stderr}`);
    const total = (name: string) => counterTotal(rig.registry, name);
    await waitFor(
      'events',
      async () =>
        (await total('kmesh_tcp_connections_closed_total')) >= N &&
        (await total('kmesh_tcp_connections_failed_total')) >= 3,
    );
    const got = {
      opened: await total('kmesh_tcp_connections_opened_total'),
      closed: await total('kmesh_tcp_connections_closed_total'),
      failed: await total('kmesh_tcp_connections_failed_total'),
      sent: await total('kmesh_tcp_sent_bytes_total'),
      received: await total('kmesh_tcp_received_bytes_total'),
      drops: Number(rig.probe.drops()),
    };
    const want = { opened: N, closed: N, failed: 3, sent: N * SEND, received: N * REPLY, drops: 0 };
    return { accessLog, probe: got, ok: JSON.stringify(got) === JSON.stringify(want) };
  } finally {
    backend.close();
    rig.close();
  }
}

async function main(): Promise<Record<string, unknown>> {
  const untracked = await check(false);
  const timed = await check(true);
  return { kernel: release(), untracked, timed, ok: untracked.ok === true && timed.ok === true };
}

main().then(
  (result) => process.stdout.write(`KMESH-RESULT ${JSON.stringify(result)}\n`, () => process.exit(0)),
  (err) =>
    process.stdout.write(`KMESH-RESULT ${JSON.stringify({ kernel: release(), error: String(err) })}\n`, () =>
      process.exit(1),
    ),
);
