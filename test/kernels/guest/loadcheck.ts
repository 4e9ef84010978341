/**
 * Verifier check for the compatibility guests: every program of every BPF object is
 * loaded through the system libbpf, one program at a time (the others set to
 * autoload=false), so one refused program does not hide the verdict on the others.
 * libbpf's own messages are captured through libbpf_set_print, the verifier log
 * through bpf_program__set_log_buf.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import koffi from 'koffi';

const lib = koffi.load('libbpf.so.1');
const libc = koffi.load('libc.so.6');

koffi.pointer('kk_bpf_object', koffi.opaque());
koffi.pointer('kk_bpf_program', koffi.opaque());
koffi.pointer('kk_bpf_map', koffi.opaque());
type H = object;

const openFile = lib.func('kk_bpf_object *bpf_object__open_file(const char *path, void *opts)') as (
  p: string,
  o: null,
) => H | null;
const objLoad = lib.func('int bpf_object__load(kk_bpf_object *obj)') as (o: H) => number;
const objClose = lib.func('void bpf_object__close(kk_bpf_object *obj)') as (o: H) => void;
const nextProg = lib.func('kk_bpf_program *bpf_object__next_program(kk_bpf_object *obj, kk_bpf_program *prev)') as (
  o: H,
  p: H | null,
) => H | null;
const nextMap = lib.func('kk_bpf_map *bpf_object__next_map(kk_bpf_object *obj, kk_bpf_map *prev)') as (
  o: H,
  p: H | null,
) => H | null;
const progName = lib.func('const char *bpf_program__name(kk_bpf_program *p)') as (p: H) => string;
const progSection = lib.func('const char *bpf_program__section_name(kk_bpf_program *p)') as (p: H) => string;
const progType = lib.func('int bpf_program__type(kk_bpf_program *p)') as (p: H) => number;
const progSetAutoload = lib.func('int bpf_program__set_autoload(kk_bpf_program *p, bool v)') as (
  p: H,
  v: boolean,
) => number;
const progSetLogBuf = lib.func('int bpf_program__set_log_buf(kk_bpf_program *p, void *buf, size_t size)') as (
  p: H,
  b: Buffer,
  n: number,
) => number;
const progSetLogLevel = lib.func('int bpf_program__set_log_level(kk_bpf_program *p, uint32_t level)') as (
  p: H,
  l: number,
) => number;
const mapName = lib.func('const char *bpf_map__name(kk_bpf_map *m)') as (m: H) => string;
const mapType = lib.func('int bpf_map__type(kk_bpf_map *m)') as (m: H) => number;
const mapIsInternal = lib.func('bool bpf_map__is_internal(kk_bpf_map *m)') as (m: H) => boolean;

const PrintFn = koffi.proto('int kk_libbpf_print_fn(int level, const char *fmt, void *args)');
const setPrint = lib.func('void *libbpf_set_print(kk_libbpf_print_fn *fn)');
const vsnprintf = libc.func('int vsnprintf(_Out_ uint8_t *buf, size_t n, const char *fmt, void *ap)') as (
  b: Buffer,
  n: number,
  f: string,
  ap: unknown,
) => number;

const LEVELS = ['warn', 'info', 'debug'];
let captured: string[] = [];
const printBuf = Buffer.alloc(8192);
const printCb = koffi.register((level: number, fmt: string, args: unknown): number => {
  if (level > 1) return 0; // skip debug
  const n = vsnprintf(printBuf, printBuf.length, fmt, args);
  const text = printBuf.subarray(0, Math.max(0, Math.min(n, printBuf.length - 1))).toString('utf8');
  captured.push(`${LEVELS[level] ?? level}: ${text.trimEnd()}`);
  return 0;
}, koffi.pointer(PrintFn));
setPrint(printCb);

export interface ProgramVerdict {
  object: string;
  program: string;
  section: string;
  progType: number;
  ok: boolean;
  errno?: number;
  /** Last lines of the verifier log (on failure). */
  verifierLog?: string;
  /** libbpf warnings during this load (on failure). */
  libbpf?: string[];
}

export interface ObjectVerdict {
  object: string;
  openOk: boolean;
  maps: { name: string; type: number }[];
  programs: ProgramVerdict[];
  /** Whole-object load (all programs at once), as the daemon does it. */
  wholeObjectOk: boolean;
  wholeObjectErrno?: number;
  wholeObjectLibbpf?: string[];
}

const tail = (s: string, max: number): string => (s.length > max ? `…${s.slice(s.length - max)}` : s);

function programsOf(obj: H): H[] {
  const out: H[] = [];
  for (let p = nextProg(obj, null); p; p = nextProg(obj, p)) out.push(p);
  return out;
}

/**
 * Load one program of `path` alone; `name` null means: all programs together. `withLog`: with the
 * verifier log (level 1), which 5.10 fails with ENOSPC for a program whose log outgrows the buffer:
 * like libbpf, a program is loaded without it first and again with it only to tell why it failed.
 */
function loadOne(path: string, name: string | null, withLog = false): { rc: number; log: string; msgs: string[] } {
  captured = [];
  const obj = openFile(path, null);
  if (!obj) return { rc: -koffi.errno(), log: '', msgs: captured };
  const logBuf = Buffer.alloc(1 << 20);
  try {
    for (const p of programsOf(obj)) {
      const mine = name === null || progName(p) === name;
      progSetAutoload(p, mine);
      if (mine && name !== null && withLog) {
        progSetLogBuf(p, logBuf, logBuf.length);
        progSetLogLevel(p, 1);
      }
    }
    const rc = objLoad(obj);
    const end = logBuf.indexOf(0);
    const log = logBuf.subarray(0, end < 0 ? logBuf.length : end).toString('utf8');
    return { rc, log, msgs: captured };
  } finally {
    objClose(obj);
  }
}

export function checkObject(path: string): ObjectVerdict {
  const object = path.split('/').pop() ?? path;
  captured = [];
  const obj = openFile(path, null);
  if (!obj) return { object, openOk: false, maps: [], programs: [], wholeObjectOk: false, wholeObjectLibbpf: captured };
  const maps: { name: string; type: number }[] = [];
  const progs: { name: string; section: string; type: number }[] = [];
  try {
    for (let m = nextMap(obj, null); m; m = nextMap(obj, m)) {
      if (!mapIsInternal(m)) maps.push({ name: mapName(m), type: mapType(m) });
    }
    for (const p of programsOf(obj)) progs.push({ name: progName(p), section: progSection(p), type: progType(p) });
  } finally {
    objClose(obj);
  }
  const programs: ProgramVerdict[] = progs.map((p) => {
    const first = loadOne(path, p.name);
    const r = first.rc === 0 ? first : loadOne(path, p.name, true);
    const v: ProgramVerdict = { object, program: p.name, section: p.section, progType: p.type, ok: first.rc === 0 };
    if (first.rc !== 0) {
      v.errno = -first.rc;
      v.verifierLog = tail(r.log, 1500);
      v.libbpf = r.msgs.slice(-12).map((m) => tail(m, 400));
    }
    return v;
  });
  const whole = loadOne(path, null);
  const verdict: ObjectVerdict = { object, openOk: true, maps, programs, wholeObjectOk: whole.rc === 0 };
  if (whole.rc !== 0) {
    verdict.wholeObjectErrno = -whole.rc;
    verdict.wholeObjectLibbpf = whole.msgs.slice(-12).map((m) => tail(m, 400));
  }
  return verdict;
}

export function checkAll(dir: string): ObjectVerdict[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.o'))
    .sort()
    .map((f) => checkObject(join(dir, f)));
}
