/**
 * Kernel reach (issue 6): boots Debian's 5.10 (bullseye) and 6.1 (bookworm) cloud
 * kernels under qemu with the project's initramfs (scripts/kernels/), and asserts
 * what the guest reports on its KMESH-RESULT line: every BPF program passes the
 * verifier, the feature probes ran, and the project's own daemon steers a registered
 * cgroup's TCP and UDP through a VIP while an unregistered one stays untouched.
 *
 * Needs root (apt for the kernels and qemu on first use). KMESH_KERNELS=5.10 picks a
 * subset; KMESH_KERNELS_SKIP=1 skips the whole file.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { ClientResult, DaemonCheckResult } from './guest/daemon-check.js';
import type { GuestResult } from './guest/main.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const SERIES = (process.env.KMESH_KERNELS ?? '5.10 6.1').split(/[\s,]+/).filter(Boolean);
const LOG_DIR = process.env.KMESH_KERNEL_LOGS ?? '/var/cache/kmesh-test/logs';
// The L7 object's staged parser takes the emulated guests' verifier a few minutes more.
const BOOT_TIMEOUT_S = Number(process.env.KMESH_QEMU_TIMEOUT ?? 480);
const skip =
  process.env.KMESH_KERNELS_SKIP === '1'
    ? 'KMESH_KERNELS_SKIP=1'
    : process.getuid?.() !== 0
      ? 'needs root (apt, qemu)'
      : false;

interface Boot {
  series: string;
  wallMs: number;
  exitCode: number | null;
  console: string;
  result?: GuestResult;
  guestExit?: number;
  logFile: string;
}

function bootKernel(series: string): Promise<Boot> {
  return new Promise((done) => {
    const t0 = Date.now();
    const p = spawn('bash', [join(ROOT, 'scripts/kernels/boot.sh'), series], {
      env: { ...process.env, KMESH_QEMU_TIMEOUT: String(BOOT_TIMEOUT_S) },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // own process group: a hung qemu is killed with everything it started
    });
    let out = '';
    p.stdout.on('data', (d) => {
      out += d.toString();
    });
    p.stderr.on('data', (d) => {
      out += d.toString();
    });
    const guard = setTimeout(
      () => {
        if (p.pid) process.kill(-p.pid, 'SIGKILL');
      },
      (BOOT_TIMEOUT_S + 20) * 1000,
    );
    p.on('close', (code) => {
      clearTimeout(guard);
      mkdirSync(LOG_DIR, { recursive: true });
      const logFile = join(LOG_DIR, `console-${series}.log`);
      writeFileSync(logFile, out);
      const boot: Boot = { series, wallMs: Date.now() - t0, exitCode: code, console: out, logFile };
      const line = out.split(/\r?\n/).find((l) => l.startsWith('KMESH-RESULT '));
      if (line) boot.result = JSON.parse(line.slice('KMESH-RESULT '.length)) as GuestResult;
      const exit = /KMESH-EXIT (\d+)/.exec(out);
      if (exit) boot.guestExit = Number(exit[1]);
      done(boot);
    });
  });
}

const tail = (s: string, n = 3000): string => (s.length > n ? s.slice(-n) : s);

function assertSteered(c: ClientResult | undefined, what: string, peerOfTcp: string): void {
  assert.ok(c, `${what}: no client result`);
  assert.equal(c.tcp.reply, 'backend-tcp', `${what}: TCP via VIP: ${JSON.stringify(c.tcp)}`);
  assert.equal(c.tcp.peer, peerOfTcp, `${what}: TCP getpeername: ${JSON.stringify(c.tcp)}`);
  assert.equal(c.udp.reply, 'backend-udp', `${what}: UDP sendto VIP: ${JSON.stringify(c.udp)}`);
  assert.equal(c.udp.peer, '127.10.0.5:9080', `${what}: UDP reply source (recvmsg4): ${JSON.stringify(c.udp)}`);
  assert.equal(c.udpConnected.reply, 'backend-udp', `${what}: connected UDP: ${JSON.stringify(c.udpConnected)}`);
}

function assertUntouched(c: ClientResult | undefined, what: string): void {
  assert.ok(c, `${what}: no client result`);
  assert.equal(c.tcp.reply, 'direct-tcp', `${what}: TCP: ${JSON.stringify(c.tcp)}`);
  assert.equal(c.udp.reply, 'direct-udp', `${what}: UDP: ${JSON.stringify(c.udp)}`);
  assert.equal(c.udpConnected.reply, 'direct-udp', `${what}: connected UDP: ${JSON.stringify(c.udpConnected)}`);
}

/** The daemon acts on KMESH_DISABLE_FEATURES only once it runs the feature probe at start-up. */
describe('kernel reach: Debian cloud kernels under qemu', { skip }, () => {
  before(() => {
    // Idempotent: installs qemu/busybox and fetches the kernels on first use only.
    execFileSync('bash', [join(ROOT, 'scripts/kernels/fetch.sh')], { stdio: ['ignore', 'ignore', 'inherit'] });
    execFileSync('bash', [join(ROOT, 'scripts/kernels/initramfs.sh')], { stdio: ['ignore', 'ignore', 'inherit'] });
  });

  for (const series of SERIES) {
    describe(`linux ${series}`, () => {
      let boot: Boot;
      before(async () => {
        boot = await bootKernel(series);
      });

      test('boots and reports one result line', (t) => {
        t.diagnostic(`${series}: qemu wall time ${(boot.wallMs / 1000).toFixed(1)} s, console in ${boot.logFile}`);
        assert.ok(boot.result, `no KMESH-RESULT line; console tail:\n${tail(boot.console)}`);
        assert.equal(boot.guestExit, 0, `guest program failed; console tail:\n${tail(boot.console)}`);
        assert.equal(boot.result.error, undefined, `guest error: ${boot.result.error}`);
        assert.ok(boot.result.kernel.startsWith(series === '5.10' ? '5.10.' : `${series}.`), boot.result.kernel);
        assert.deepEqual(boot.result.env, { btf: true, bpffs: true, cgroup2: true });
        t.diagnostic(`${boot.result.kernel}: guest stages ${JSON.stringify(boot.result.durationsMs)}`);
      });

      test('every program of every BPF object passes the verifier', () => {
        const r = boot.result;
        assert.ok(r, 'no result');
        assert.ok(r.loader.length >= 1, 'no BPF objects in the initramfs');
        for (const obj of r.loader) {
          assert.ok(obj.openOk, `${obj.object}: libbpf could not open it: ${JSON.stringify(obj.wholeObjectLibbpf)}`);
          assert.ok(obj.programs.length > 0, `${obj.object}: no programs`);
          for (const p of obj.programs) {
            assert.ok(
              p.ok,
              `${r.kernel}: ${obj.object} ${p.program} (${p.section}) refused: errno ${p.errno}\n` +
                `verifier: ${p.verifierLog}\nlibbpf: ${(p.libbpf ?? []).join('\n')}`,
            );
          }
          assert.ok(
            obj.wholeObjectOk,
            `${obj.object}: whole-object load failed: ${JSON.stringify(obj.wholeObjectLibbpf)}`,
          );
        }
      });

      test('feature probes run and find what the shipped programs need', async (t) => {
        const r = boot.result;
        assert.ok(r, 'no result');
        assert.equal(r.featuresError, undefined);
        const features = r.features ?? {};
        const { SECTION_REQUIREMENTS } = await import('../../src/runtime/features.js');
        const sections = new Set(r.loader.flatMap((o) => o.programs.map((p) => p.section)));
        for (const section of sections) {
          for (const need of SECTION_REQUIREMENTS[section] ?? []) {
            assert.equal(features[need]?.enabled, true, `${section} needs ${need}: ${features[need]?.reason}`);
          }
        }
        // The probes really tell kernels apart: atomic fetch ops arrived in 5.12.
        assert.equal(features.atomic_fetch?.enabled, series !== '5.10', features.atomic_fetch?.reason);
        const off = Object.entries(features).filter(([, f]) => !f.enabled);
        t.diagnostic(`${r.kernel}: features off: ${off.map(([n, f]) => `${n} (${f.reason})`).join('; ') || 'none'}`);
      });

      test('kmesh-daemon steers a registered cgroup through the VIP, TCP and UDP, and routes an HTTP request by header', () => {
        const d = boot.result?.daemon as DaemonCheckResult | undefined;
        assert.ok(d, 'no daemon result');
        assert.equal(d.error, undefined, d.error);
        const s = d.full;
        assert.ok(
          s.started,
          `daemon did not become ready (exit ${s.exitCode}):\n${s.log.join('\n')}\n${s.error ?? ''}`,
        );
        assertSteered(s.registered, 'registered cgroup', '127.10.0.5:9080');
        // L7: the first request's header chose the upstream, in the kernel
        assert.match(
          s.registered?.l7.reply ?? '',
          /\r\n\r\nl7-canary$/,
          `L7 request: ${JSON.stringify(s.registered?.l7)}`,
        );
        assertUntouched(s.unregistered, 'unregistered cgroup');
        assert.equal(s.cleanedUp, true, 'the daemon left nothing pinned to clean up');
      });

      test('kmesh-probe counts the connection (sockops counters → /metrics)', () => {
        const d = boot.result?.daemon as DaemonCheckResult | undefined;
        assert.ok(d, 'no daemon result');
        const m = d.full.metrics;
        assert.equal(m?.status, 200, `no /metrics answer from kmesh-daemon: ${m?.error ?? 'not scraped'}`);
        assert.ok((m.connectionsOpened ?? 0) >= 1, `kmesh_tcp_connections_opened_total: ${JSON.stringify(m.lines)}`);
      });

      test('a missing optional feature (getpeername hooks) is logged and the rest keeps working', () => {
        const d = boot.result?.daemon as DaemonCheckResult | undefined;
        assert.ok(d, 'no daemon result');
        const s = d.getpeernameOff;
        assert.ok(s.started, `daemon did not start without getpeername:\n${s.log.join('\n')}`);
        assert.ok(
          s.log.some((l) => l.includes('kmesh_getpeername4') && /disabled|off/.test(l)),
          `no log line names the disabled program:\n${s.log.join('\n')}`,
        );
        // Still steered; only the peer address is no longer rewritten back to the VIP.
        assertSteered(s.registered, 'registered cgroup without getpeername', '127.0.0.1:9081');
      });

      test('a missing core feature (connect4) stops the daemon with its name, nothing attached', () => {
        const d = boot.result?.daemon as DaemonCheckResult | undefined;
        assert.ok(d, 'no daemon result');
        const s = d.connect4Off;
        assert.equal(s.started, false, 'daemon started without connect4');
        assert.notEqual(s.exitCode, 0, 'daemon must exit non-zero');
        assert.ok(s.exitCode !== null && s.exitCode !== undefined, 'daemon did not exit');
        assert.ok(
          s.log.some((l) => l.includes('attach_connect4') && /"level":60/.test(l)),
          `no fatal log line names attach_connect4:\n${s.log.join('\n')}`,
        );
        assert.deepEqual(s.pinnedLinks, [], 'links pinned by a daemon that refused to start');
        assertUntouched(s.registered, 'registered cgroup while the daemon is refused');
      });
    });
  }
});
