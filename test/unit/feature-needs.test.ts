/**
 * The hand-kept list of what each program needs of the kernel (SECTION_REQUIREMENTS in
 * src/runtime/features.ts: program type, attach type, helpers a supported kernel may
 * lack) against what the compiled objects really call: every helper call is read from
 * the disassembly (a bpf-to-bpf call brings the callee's helpers along).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { HELPER_PROBES, SECTION_REQUIREMENTS } from '../../src/runtime/features.js';

const OBJ_DIR = fileURLToPath(new URL('../../../build/bpf/', import.meta.url));
const OBJECTS = existsSync(OBJ_DIR) ? readdirSync(OBJ_DIR).filter((f) => f.endsWith('.bpf.o')) : [];

/** Helpers every kernel Kmesh supports (5.10+) has for the program types used; never probed. */
const BASELINE = new Set([
  1, // map_lookup_elem
  2, // map_update_elem
  3, // map_delete_elem
  5, // ktime_get_ns
  7, // get_prandom_u32
  49, // setsockopt (sockops since 4.13)
  59, // sock_ops_cb_flags_set
  81, // get_local_storage
  94, // spin_unlock (paired with spin_lock, which is probed)
  132, // ringbuf_submit (paired with ringbuf_reserve)
  133, // ringbuf_discard (paired with ringbuf_reserve)
  137, // skc_to_tcp_sock (5.9)
  // the L7 programs' (sk_msg 4.17, sk_skb 4.14, sockmap helpers by 4.18, sk lookups 4.20, spin locks 5.1):
  // in every supported kernel (5.10+)
  12, // tail_call
  26, // skb_load_bytes (sk_skb since 4.14: the upstream verdict reads a response's status line)
  62, // msg_cork_bytes
  63, // msg_pull_data
  70, // sock_hash_update
  71, // sk_redirect_hash
  72, // msg_redirect_hash
  84, // sk_lookup_tcp (connect4: is the L7 anchor there?)
  86, // sk_release
  93, // spin_lock outside cgroup/connect* (probed there)
]);

/** enum bpf_prog_type by SEC() prefix. */
const progTypeOf = (section: string): number => (section === 'sockops' ? 13 : section.startsWith('cgroup/') ? 18 : -1);

function hasObjdump(): boolean {
  try {
    execFileSync('llvm-objdump', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** SEC() name → helper ids it calls, subprogram calls (`call -1`) resolved to .text's helpers. */
function helperCalls(file: string): Map<string, Set<number>> {
  const text = execFileSync('llvm-objdump', ['-d', '--no-show-raw-insn', file], { maxBuffer: 64 << 20 }).toString();
  const calls = new Map<string, Set<number>>();
  let section = '';
  for (const line of text.split('\n')) {
    const sec = line.match(/^Disassembly of section (\S+):/);
    if (sec) section = sec[1] as string;
    const call = line.match(/\scall (-?\d+)$/);
    if (call && section) {
      const set = calls.get(section) ?? new Set<number>();
      set.add(Number(call[1]));
      calls.set(section, set);
    }
  }
  const sub = calls.get('.text') ?? new Set<number>();
  for (const [section, set] of calls) {
    if (section !== '.text' && set.delete(-1)) for (const h of sub) if (h !== -1) set.add(h);
  }
  calls.delete('.text');
  return calls;
}

const skip = !hasObjdump() ? 'llvm-objdump is not installed' : OBJECTS.length === 0 ? 'make -C bpf first' : false;

test('each program lists exactly the probed helpers it calls; every other helper is baseline', { skip }, () => {
  // An entry is per object (`<object>:<section>`) or shared by every object without one (sockops: the probe's and
  // the L4 resilience program): a shared entry lists what those objects call together.
  const entryOf = (file: string, section: string) =>
    `${file}:${section}` in SECTION_REQUIREMENTS ? `${file}:${section}` : section;
  const calledByEntry = new Map<string, Set<string>>();
  for (const file of OBJECTS) {
    for (const [section, used] of helperCalls(join(OBJ_DIR, file))) {
      const progType = progTypeOf(section);
      const probed = Object.entries(HELPER_PROBES).filter(([, p]) => p.progType === progType);
      const set = calledByEntry.get(entryOf(file, section)) ?? new Set<string>();
      for (const [name, p] of probed) if (used.has(p.helperId)) set.add(name);
      calledByEntry.set(entryOf(file, section), set);
    }
  }
  for (const file of OBJECTS) {
    for (const [section, used] of helperCalls(join(OBJ_DIR, file))) {
      const needs = SECTION_REQUIREMENTS[entryOf(file, section)];
      assert.ok(needs, `${file}: ${section} has no entry in SECTION_REQUIREMENTS`);
      const progType = progTypeOf(section);
      const probed = Object.entries(HELPER_PROBES).filter(([, p]) => p.progType === progType);
      const calledProbed = [...(calledByEntry.get(entryOf(file, section)) ?? [])];
      const listed = needs.filter((n) => n.startsWith('helper_'));
      assert.deepEqual(listed.sort(), calledProbed.sort(), `${file}: ${section}: helper needs`);
      const probedIds = new Set(probed.map(([, p]) => p.helperId));
      const unknown = [...used].filter((h) => !probedIds.has(h) && !BASELINE.has(h));
      assert.deepEqual(unknown, [], `${file}: ${section} calls helpers neither probed nor baseline`);
      assert.ok(
        needs.some((n) => n.startsWith('attach_') || n.startsWith('prog_')),
        `${file}: ${section}: no program/attach type listed`,
      );
    }
  }
});
