import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BpfMap } from './bpf-map.js';
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
  /** Programs to leave out of the load (features the kernel lacks). */
  skipPrograms?: ReadonlySet<string>;
}

/** One compiled BPF object (build/bpf/*.bpf.o), opened and loaded through libbpf. */
export class BpfObject {
  private readonly maps = new Map<string, BpfMap>();
  private readonly programs = new Map<string, BpfProgram>();
  private loaded = false;

  private constructor(
    readonly path: string,
    private handle: Handle | null,
    private readonly skipPrograms: ReadonlySet<string>,
  ) {}

  static open(path: string, options: OpenOptions): BpfObject {
    if (!existsSync(path)) throw new BpfError(`open ${path}`, 2);
    const handle = libbpf.objectOpenFile(path, null);
    if (!handle) throw new BpfError(`open ${path}`, errnoNow());
    const obj = new BpfObject(path, handle, options.skipPrograms ?? new Set());
    for (const map of obj.mapHandles()) {
      if (libbpf.mapIsInternal(map)) continue;
      check(
        `pin path for ${libbpf.mapName(map)}`,
        libbpf.mapSetPinPath(map, join(options.pinMapsDir, libbpf.mapName(map))),
      );
    }
    for (const prog of obj.programHandles()) {
      if (obj.skipPrograms.has(libbpf.programName(prog))) libbpf.programSetAutoload(prog, false);
    }
    return obj;
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
        new BpfMap(
          name,
          libbpf.mapFd(map),
          libbpf.mapKeySize(map),
          libbpf.mapValueSize(map),
          libbpf.mapMaxEntries(map),
        ),
      );
    }
    for (const prog of this.programHandles()) {
      const name = libbpf.programName(prog);
      if (this.skipPrograms.has(name)) continue;
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
