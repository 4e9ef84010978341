import { closeSync, existsSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { BpfMap, MAP_INFO } from './bpf-map.js';
import { ENOENT } from './errno.js';
import { BpfError, check } from './errors.js';
import { errnoNow, type Handle, libbpf } from './libbpf.js';

export interface BpfProgram {
  name: string;
  fd: number;
  /** enum bpf_attach_type, from the program's SEC() name. */
  attachType: number;
}

export interface OpenOptions {
  /**
   * Maps are pinned by name here; a map already pinned there is reused, so a second
   * object (or a restarted daemon) shares the live maps instead of creating new ones.
   */
  pinMapsDir: string;
  /**
   * A map pinned by an earlier build whose definition differs from this object's (type,
   * key or value size, capacity, flags) cannot be reused, and libbpf would fail the load
   * on it: its pin is removed, the load creates the map anew, and this is told why.
   */
  onStalePin?: (map: string, why: string) => void;
}

/** An onStalePin for a (pino-like) logger: the operator learns which map was renewed and why. */
export function warnStalePins(logger: { warn(obj: object, msg: string): void }): OpenOptions['onStalePin'] {
  return (map, why) =>
    logger.warn({ map, why }, 'a pinned map from an earlier build does not fit this one: replaced by a new, empty map');
}

/** What of `map`'s definition the map pinned at `path` does not match (libbpf's reuse test); null if it can be reused. */
function pinMismatch(map: Handle, path: string): string | null {
  const fd = libbpf.objGet(path);
  if (fd < 0) return null; // nothing there, or not ours to judge: the load reports it
  try {
    const info = Buffer.alloc(MAP_INFO.size);
    if (libbpf.objGetInfoByFd(fd, info, [info.length]) < 0) return null;
    const wanted = {
      type: libbpf.mapType(map),
      key_size: libbpf.mapKeySize(map),
      value_size: libbpf.mapValueSize(map),
      max_entries: libbpf.mapMaxEntries(map),
      map_flags: libbpf.mapFlags(map),
    };
    const pinned = {
      type: info.readUInt32LE(MAP_INFO.type),
      key_size: info.readUInt32LE(MAP_INFO.keySize),
      value_size: info.readUInt32LE(MAP_INFO.valueSize),
      max_entries: info.readUInt32LE(MAP_INFO.maxEntries),
      map_flags: info.readUInt32LE(MAP_INFO.mapFlags),
    };
    const differs = (Object.keys(wanted) as Array<keyof typeof wanted>).filter((k) => wanted[k] !== pinned[k]);
    return differs.length === 0 ? null : differs.map((k) => `${k} ${pinned[k]} (pinned) vs ${wanted[k]}`).join(', ');
  } finally {
    closeSync(fd);
  }
}

/** One compiled BPF object (build/bpf/*.bpf.o), opened and loaded through libbpf. */
export class BpfObject {
  private readonly maps = new Map<string, BpfMap>();
  private readonly programs = new Map<string, BpfProgram>();
  private loaded = false;
  private readonly skipped = new Set<string>();

  private constructor(
    readonly path: string,
    private handle: Handle | null,
  ) {}

  static open(path: string, options: OpenOptions): BpfObject {
    if (!existsSync(path)) throw new BpfError(`open ${path}`, ENOENT);
    const handle = libbpf.objectOpenFile(path, null);
    if (!handle) throw new BpfError(`open ${path}`, errnoNow());
    const obj = new BpfObject(path, handle);
    for (const map of obj.mapHandles()) {
      if (libbpf.mapIsInternal(map)) continue;
      const name = libbpf.mapName(map);
      const pinPath = join(options.pinMapsDir, name);
      const stale = existsSync(pinPath) ? pinMismatch(map, pinPath) : null;
      if (stale) {
        // programs still using the old map keep it alive until they are replaced
        unlinkSync(pinPath);
        options.onStalePin?.(name, stale);
      }
      check(`pin path for ${name}`, libbpf.mapSetPinPath(map, pinPath));
    }
    return obj;
  }

  /** Program name → SEC() name (before or after the load). */
  sections(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const prog of this.programHandles()) out[libbpf.programName(prog)] = libbpf.programSectionName(prog);
    return out;
  }

  /** enum bpf_map_type of every map the object defines (its own, not libbpf's internal ones). */
  mapTypes(): number[] {
    return [...this.mapHandles()].filter((m) => !libbpf.mapIsInternal(m)).map((m) => libbpf.mapType(m));
  }

  /** Leaves programs out of the load (features the kernel lacks); call before load(). */
  skipPrograms(names: Iterable<string>): void {
    const wanted = new Set(names);
    for (const prog of this.programHandles()) {
      const name = libbpf.programName(prog);
      if (!wanted.has(name)) continue;
      check(`skip ${name}`, libbpf.programSetAutoload(prog, false));
      this.skipped.add(name);
    }
  }

  /** Runs the verifier on every program; libbpf prints the verifier log to stderr on failure. */
  load(): void {
    const handle = this.requireHandle();
    check(`load ${this.path}`, libbpf.objectLoad(handle));
    this.loaded = true;
    for (const map of this.mapHandles()) {
      const name = libbpf.mapName(map);
      this.maps.set(
        name,
        new BpfMap({
          name,
          fd: libbpf.mapFd(map),
          type: libbpf.mapType(map),
          keySize: libbpf.mapKeySize(map),
          valueSize: libbpf.mapValueSize(map),
          maxEntries: libbpf.mapMaxEntries(map),
        }),
      );
    }
    for (const prog of this.programHandles()) {
      const name = libbpf.programName(prog);
      if (this.skipped.has(name)) continue;
      this.programs.set(name, { name, fd: libbpf.programFd(prog), attachType: libbpf.programExpectedAttachType(prog) });
    }
  }

  map(name: string): BpfMap {
    const map = this.maps.get(name);
    if (!map) throw new Error(`${this.path}: no map ${name}${this.loaded ? '' : ' (object not loaded)'}`);
    return map;
  }

  allMaps(): BpfMap[] {
    return [...this.maps.values()];
  }

  program(name: string): BpfProgram {
    const prog = this.programs.get(name);
    if (!prog) throw new Error(`${this.path}: no program ${name}${this.loaded ? '' : ' (object not loaded)'}`);
    return prog;
  }

  allPrograms(): BpfProgram[] {
    return [...this.programs.values()];
  }

  /** Closes the fds; pinned maps and links stay in the kernel. */
  close(): void {
    if (this.handle) libbpf.objectClose(this.handle);
    this.handle = null;
    this.maps.clear();
    this.programs.clear();
  }

  private requireHandle(): Handle {
    if (!this.handle) throw new Error(`${this.path}: object closed`);
    return this.handle;
  }

  private *mapHandles(): Generator<Handle> {
    const handle = this.requireHandle();
    for (let map = libbpf.objectNextMap(handle, null); map; map = libbpf.objectNextMap(handle, map)) yield map;
  }

  private *programHandles(): Generator<Handle> {
    const handle = this.requireHandle();
    for (let prog = libbpf.objectNextProgram(handle, null); prog; prog = libbpf.objectNextProgram(handle, prog)) {
      yield prog;
    }
  }
}
