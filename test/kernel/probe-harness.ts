/**
 * Shared set-up for the probe's kernel tests and bench: a private pin directory, a
 * test-created cgroup with kmesh_probe_sockops attached, and a Probe reading it.
 * Everything is torn down by close(), which tests call from after()/finally.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { Registry } from 'prom-client';
import { Datapath, type FamilyMaps } from '../../src/datapath/datapath.js';
import { MANIFEST } from '../../src/datapath/manifest.js';
import { Probe, type ProbeOptions } from '../../src/probe/probe.js';
import type { BpfProgram } from '../../src/runtime/bpf-object.js';
import { ensureBpffs } from '../../src/runtime/bpffs.js';
import { CgroupLinks } from '../../src/runtime/cgroup-links.js';
import { cgroup2View, cgroupId } from '../../src/runtime/cgroup2.js';

export const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const PROBE_ONLY = { probe: MANIFEST.probe };

export interface ProbeRig {
  /** The probe's family alone, loaded through the data path. */
  maps: FamilyMaps<typeof PROBE_ONLY, 'probe'>;
  program: BpfProgram;
  probe: Probe;
  registry: Registry;
  /** Cgroups created by the rig; `attached` ones run the probe program. */
  cgroups: { attached: string; plain: string };
  attachedId: bigint;
  pinDir: string;
  close(): void;
}

export function makeProbeRig(tag: string, extra: Partial<ProbeOptions> = {}): ProbeRig {
  const pinDir = `/sys/fs/bpf/kmesh-test-${tag}-${process.pid}`;
  ensureBpffs(pinDir);
  const view = cgroup2View();
  const base = join(view.mount, `kmesh-test-${tag}-${process.pid}`);
  const cgroups = { attached: join(base, 'probed'), plain: join(base, 'plain') };
  const cleanups: Array<() => void> = [];
  const close = (): void => {
    for (const fn of cleanups.reverse()) {
      try {
        fn();
      } catch (err) {
        process.stderr.write(`probe rig cleanup: ${String(err)}\n`);
      }
    }
    cleanups.length = 0;
  };
  try {
    mkdirSync(pinDir, { recursive: true });
    cleanups.push(() => rmSync(pinDir, { recursive: true, force: true }));
    mkdirSync(cgroups.attached, { recursive: true });
    mkdirSync(cgroups.plain, { recursive: true });
    cleanups.push(() => {
      for (const dir of [cgroups.attached, cgroups.plain, base]) if (existsSync(dir)) rmdirSync(dir);
    });
    const datapath = Datapath.open({
      objectDir: join(REPO, 'build/bpf'),
      pinMapsDir: join(pinDir, 'maps'),
      logger: pino({ level: 'warn' }),
      manifest: PROBE_ONLY,
    });
    cleanups.push(() => datapath.close());
    const maps = datapath.maps('probe');
    const [program] = datapath.programsOf('probe');
    if (!program) throw new Error('kmesh_probe.bpf.o has no program');
    const links = new CgroupLinks(join(pinDir, 'links'), view);
    const attachedId = links.attach(cgroups.attached, [program]);
    cleanups.push(() => links.detach(attachedId));
    const registry = new Registry();
    const probe = new Probe({
      maps,
      lookups: {
        workloadOfCgroup: (id) => (id === attachedId ? 'probe-test.service' : undefined),
        listenerOf: () => undefined,
        clusterNameOf: () => undefined,
      },
      registry,
      // access-log lines (level info whatever the logger's level) go nowhere, but are still written
      logger: pino({ level: 'silent' }, pino.destination({ dest: '/dev/null', sync: true })),
      accessLog: false,
      ...extra,
    });
    probe.start();
    cleanups.push(() => probe.stop());
    return { maps, program, probe, registry, cgroups, attachedId, pinDir, close };
  } catch (err) {
    close();
    throw err;
  }
}

/** Sum of a counter's values (all label sets) from the registry. */
export async function counterTotal(registry: Registry, name: string): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (!metric) return 0;
  const data = await metric.get();
  return data.values.reduce((sum, v) => sum + v.value, 0);
}

export async function waitFor(what: string, cond: () => Promise<boolean> | boolean, timeoutMs = 10000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/**
 * Node script run as a child: joins the cgroup first (so every socket it creates is
 * in it), then runs `body` (an async function body with `net` in scope) and exits.
 */
export function inCgroupScript(cgroup: string, body: string): string {
  return `
const fs = require('node:fs'); const net = require('node:net');
fs.writeFileSync(${JSON.stringify(join(cgroup, 'cgroup.procs'))}, String(process.pid));
(async () => { ${body} })().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
`;
}

export function runChild(script: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child: ChildProcess = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d) => {
    stdout += d;
  });
  child.stderr?.on('data', (d) => {
    stderr += d;
  });
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, stdout, stderr })));
}

/** Writes a pid into a cgroup (test-created cgroups only). */
export function moveTo(cgroup: string, pid: number): void {
  writeFileSync(join(cgroup, 'cgroup.procs'), String(pid));
}

export { cgroupId };

/** The known-size exchange the probe tests count: each client writes SEND bytes, the backend answers REPLY. */
export const SEND = 10_000;
export const REPLY = 3_333;

/** A backend (in this process, outside any registered cgroup) for that exchange; closes after the client. */
export async function exchangeBackend(): Promise<{ server: Server; port: number }> {
  const server = createServer((sock) => {
    let got = 0;
    sock.on('data', (d) => {
      got += d.length;
      if (got === SEND) sock.write(Buffer.alloc(REPLY, 0x61));
    });
    sock.on('end', () => sock.end());
    sock.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port };
}

/** Client script body (for inCgroupScript): n sequential exchanges with the backend on targetPort. */
export function exchangeClient(targetPort: number, n: number): string {
  return `
for (let i = 0; i < ${n}; i++) {
  await new Promise((resolve, reject) => {
    const s = net.connect(${targetPort}, '127.0.0.1');
    let got = 0;
    s.on('connect', () => s.write(Buffer.alloc(${SEND}, 0x62)));
    s.on('data', (d) => { got += d.length; if (got === ${REPLY}) s.end(); });
    s.on('close', resolve);
    s.on('error', reject);
  });
}`;
}
