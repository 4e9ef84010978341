/**
 * Atomic config switches on the real kernel: a daemon process reloading between two large configs is killed
 * with SIGKILL at random instants of the apply, 20 times; after each kill the pinned maps, decoded as the
 * programs read them (the active slot's listeners and clusters, each cluster's live endpoint set), are exactly
 * the old or the new config; a restarted daemon converges to the file's config.
 * Pins under a per-process directory; nothing is attached; VIPs in 127.42.0.0/16, ports 32000-32099.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { cleanupPins } from '../../src/controller/cleanup.js';
import { parseConfig } from '../../src/controller/config/load.js';
import { desiredState } from '../../src/controller/desired-state.js';
import { dumpMaps } from '../../src/controller/map-dump.js';
import { DAEMON_ENV, DAEMON_NODE_FLAGS } from '../../src/controller/node-flags.js';
import { BpfMap } from '../../src/runtime/bpf-map.js';
import {
  activeSlotKey,
  activeSlotValue,
  clusterKey,
  clusterValue,
  endpointKey,
  endpointValue,
  listenerKey,
  listenerValue,
} from '../../src/runtime/maps/layouts.js';
import { testPinDir } from './support/daemon.js';

const KILLS = 20;
const LISTENERS = 1000;
const DAEMON = fileURLToPath(new URL('../../src/bin/kmesh-daemon.js', import.meta.url));

/** Two configs that differ in every listener value, every cluster and every endpoint set, plus added/removed ones. */
function toml(variant: number, pinDir: string): string {
  const lines = [`[daemon]\nlog_level = "info"\npin_dir = "${pinDir}"\n`];
  for (let i = 0; i < LISTENERS; i++) {
    const port = 32000 + ((i + variant) % 50);
    lines.push(
      `[[clusters]]\nname = "c${variant}-${i}"\nendpoints = [ { address = "127.0.${i >> 8}.${i & 255}", port = ${port} }, { address = "127.1.${i >> 8}.${i & 255}", port = ${port}, weight = ${1 + variant} } ]\n`,
    );
  }
  for (let i = 0; i < LISTENERS; i++) {
    const name = i % 10 === 0 ? `only${variant}-${i}` : `l${i}`;
    lines.push(
      `[[listeners]]\nname = "${name}"\naddress = "127.42.${(i >> 8) + (i % 10 === 0 ? 10 * variant : 0)}.${i & 255}"\nport = 32080\ncluster = "c${variant}-${i}"\n`,
    );
  }
  return lines.join('\n');
}

/** The config as the programs would read it, from the encoder (the maps must hold exactly this). */
function expected(source: string): string {
  const d = desiredState(parseConfig(source, 'kmesh.toml').model);
  return canonical({
    listeners: [...d.listeners.values()].map((l) => ({
      key: listenerKey.decode(l.key),
      value: listenerValue.decode(l.value),
    })),
    clusters: [...d.clusters.values()].map((c) => ({
      id: c.id,
      lb_policy: c.lbPolicy,
      total_weight: c.totalWeight,
      flags: c.flags,
      endpoints: Array.from({ length: c.endpoints.length / endpointValue.size }, (_, i) =>
        endpointValue.decode(c.endpoints.subarray(i * endpointValue.size, (i + 1) * endpointValue.size)),
      ),
    })),
  });
}

/** What the kernel reads now, decoded from the pinned maps. */
function live(pinDir: string): string {
  const dir = join(pinDir, 'maps');
  const maps = {
    listeners: BpfMap.openPinned(join(dir, 'kmesh_listeners')),
    clusters: BpfMap.openPinned(join(dir, 'kmesh_clusters')),
    endpoints: BpfMap.openPinned(join(dir, 'kmesh_endpoints')),
    activeSlot: BpfMap.openPinned(join(dir, 'kmesh_active_slot')),
  };
  try {
    const slot = activeSlotValue.decode(maps.activeSlot.lookup(activeSlotKey.encode({ index: 0 })) as Buffer).slot;
    const dump = dumpMaps(maps);
    assert.equal(dump.activeSlot, slot);
    return canonical({
      listeners: maps.listeners
        .entries()
        .map(([k, v]) => ({ key: listenerKey.decode(k), value: listenerValue.decode(v) }))
        .filter((l) => l.key.slot === slot)
        .map((l) => ({ key: { ...l.key, slot: 0 }, value: l.value })),
      clusters: maps.clusters
        .entries()
        .map(([k, v]) => ({ key: clusterKey.decode(k), value: clusterValue.decode(v) }))
        .filter((c) => c.key.slot === slot)
        .map(({ key, value }) => ({
          id: key.id,
          lb_policy: value.lb_policy,
          total_weight: value.total_weight,
          flags: value.flags,
          endpoints: Array.from({ length: value.endpoint_count }, (_, index) => {
            const v = maps.endpoints.lookup(
              endpointKey.encode({ cluster_id: key.id, generation: value.generation, index }),
            );
            return v ? endpointValue.decode(v) : null;
          }),
        })),
    });
  } finally {
    for (const m of Object.values(maps)) m.close();
  }
}

function canonical(view: { listeners: Array<{ key: object; value: object }>; clusters: Array<{ id: number }> }) {
  const text = (x: unknown) =>
    JSON.stringify(x, (_k, v) => (v?.type === 'Buffer' ? Buffer.from(v.data).toString('hex') : v));
  return text({
    listeners: view.listeners.map(text).sort(),
    clusters: view.clusters.map(text).sort(),
  });
}

interface Running {
  child: ChildProcess;
  /** Resolves with the next log record whose msg is `msg`. */
  next(msg: string): Promise<{ ms?: number }>;
  exited: Promise<void>;
}

function startDaemon(configPath: string, pinDir: string): Running {
  const child = spawn(process.execPath, [...DAEMON_NODE_FLAGS, DAEMON, '--config', configPath, '--pin-dir', pinDir], {
    env: { ...process.env, ...DAEMON_ENV },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const waiting: Array<{ msg: string; resolve: (rec: { ms?: number }) => void }> = [];
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    let rec: { msg?: string; ms?: number };
    try {
      rec = JSON.parse(line);
    } catch {
      return;
    }
    const i = waiting.findIndex((w) => w.msg === rec.msg);
    if (i >= 0) waiting.splice(i, 1)[0]?.resolve(rec);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    child,
    exited,
    next: (msg) =>
      Promise.race([
        new Promise<{ ms?: number }>((resolve) => waiting.push({ msg, resolve })),
        exited.then(() => Promise.reject(new Error(`daemon exited while waiting for "${msg}"`))),
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no "${msg}" within 30 s`)), 30_000)),
      ]),
  };
}

test(`kill -9 at ${KILLS} random instants of large applies: the kernel sees the old or the new config, never a mix`, {
  skip: process.getuid?.() !== 0 && 'needs root (BPF)',
  timeout: 300_000,
}, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kmesh-atomic-'));
  const configPath = join(dir, 'kmesh.toml');
  const pinDir = testPinDir('atomic');
  const sources = [toml(0, pinDir), toml(1, pinDir)];
  const views = sources.map(expected);
  let daemon: Running | undefined;
  t.after(async () => {
    if (daemon && daemon.child.exitCode === null && daemon.child.signalCode === null) {
      daemon.child.kill('SIGKILL');
      await daemon.exited;
    }
    cleanupPins(pinDir);
    rmSync(dir, { recursive: true, force: true });
  });

  const start = async (variant: number) => {
    writeFileSync(configPath, sources[variant] as string);
    daemon = startDaemon(configPath, pinDir);
    await daemon.next('kmesh-daemon ready');
    assert.equal(live(pinDir), views[variant], `a started daemon converges to config ${variant}`);
  };

  await start(0);
  // Calibration: a reload's time to "config applied" and the share of it spent writing the maps.
  writeFileSync(configPath, sources[1] as string);
  const sent = performance.now();
  (daemon as Running | undefined)?.child.kill('SIGHUP');
  const applyMs = (await (daemon as unknown as Running).next('config applied')).ms ?? 0;
  const totalMs = performance.now() - sent;
  assert.equal(live(pinDir), views[1]);
  t.diagnostic(
    `reload of ${LISTENERS} listeners/clusters: ${totalMs.toFixed(0)} ms to applied, ${applyMs.toFixed(0)} ms of it the apply`,
  );

  const outcomes = { old: 0, new: 0 };
  let current = 1;
  for (let kill = 0; kill < KILLS; kill++) {
    const next = 1 - current;
    const running = daemon as unknown as Running;
    writeFileSync(configPath, sources[next] as string);
    // Mostly inside the apply (the last applyMs of the reload), some before and after it.
    const at = Math.max(0, totalMs - applyMs * 1.2) + Math.random() * applyMs * 1.4;
    running.child.kill('SIGHUP');
    await new Promise((r) => setTimeout(r, at));
    running.child.kill('SIGKILL');
    await running.exited;
    const seen = live(pinDir);
    assert.ok(
      seen === views[current] || seen === views[next],
      `kill ${kill + 1} at ${at.toFixed(1)} ms: the live maps are neither the old nor the new config`,
    );
    outcomes[seen === views[current] ? 'old' : 'new']++;
    await start(next);
    current = next;
  }
  t.diagnostic(`after ${KILLS} kills: old config live ${outcomes.old}×, new config live ${outcomes.new}×`);
});
