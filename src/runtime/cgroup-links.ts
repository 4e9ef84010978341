import { closeSync, constants, existsSync, mkdirSync, openSync, readdirSync, rmSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { BpfProgram } from './bpf-object.js';
import { type Cgroup2View, guardCgroupFd } from './cgroup2.js';
import { check } from './errors.js';
import { libbpf } from './libbpf.js';

const DIR_PREFIX = 'cg-';

/** A directory CgroupLinks makes: cg-<cgroup id>. */
export const isLinkDirName = (name: string): boolean =>
  name.startsWith(DIR_PREFIX) && /^\d+$/.test(name.slice(DIR_PREFIX.length));

/**
 * Programs attached to cgroups through bpf_link, each link pinned at
 * <linksDir>/cg-<cgroup id>/<program>. A pinned link outlives the daemon, so a
 * restart or a stop never drops traffic; unpinning the last reference detaches it.
 */
export class CgroupLinks {
  constructor(
    private readonly linksDir: string,
    private readonly cgroups: Cgroup2View,
  ) {
    mkdirSync(linksDir, { recursive: true });
  }

  /**
   * Make exactly `programs` attached to the cgroup: existing pinned links are switched
   * to the new program atomically (bpf_link_update), missing ones created, extra ones dropped.
   */
  attach(cgroupPath: string, programs: readonly BpfProgram[]): bigint {
    const cgroupFd = openSync(cgroupPath, constants.O_RDONLY | constants.O_DIRECTORY);
    try {
      // Checked on the fd the links are made with: what was checked is what gets the programs.
      const id = guardCgroupFd(cgroupFd, cgroupPath, this.cgroups);
      const dir = this.dirOf(id);
      mkdirSync(dir, { recursive: true });
      const wanted = new Set(programs.map((p) => p.name));
      for (const stale of readdirSync(dir).filter((name) => !wanted.has(name))) unlinkSync(join(dir, stale));
      for (const prog of programs) this.attachOne(join(dir, prog.name), prog, cgroupFd);
      return id;
    } finally {
      closeSync(cgroupFd);
    }
  }

  /** Drops every link of the cgroup; detaching is immediate once the pins are gone. */
  detach(id: bigint): void {
    rmSync(this.dirOf(id), { recursive: true, force: true });
  }

  /** Cgroup ids that have pinned links, from a previous or the current run. */
  attachedIds(): bigint[] {
    if (!existsSync(this.linksDir)) return [];
    return readdirSync(this.linksDir)
      .filter(isLinkDirName)
      .map((name) => BigInt(name.slice(DIR_PREFIX.length)));
  }

  programsOf(id: bigint): string[] {
    const dir = this.dirOf(id);
    return existsSync(dir) ? readdirSync(dir).sort() : [];
  }

  private attachOne(pinPath: string, prog: BpfProgram, cgroupFd: number): void {
    if (existsSync(pinPath)) {
      const linkFd = check(`open link ${pinPath}`, libbpf.objGet(pinPath));
      try {
        check(`update link ${pinPath}`, libbpf.linkUpdate(linkFd, prog.fd, null));
      } finally {
        closeSync(linkFd);
      }
      return;
    }
    const linkFd = check(`attach ${prog.name}`, libbpf.linkCreate(prog.fd, cgroupFd, prog.attachType, null));
    try {
      check(`pin link ${pinPath}`, libbpf.objPin(linkFd, pinPath));
    } finally {
      closeSync(linkFd);
    }
  }

  private dirOf(id: bigint): string {
    return join(this.linksDir, `${DIR_PREFIX}${id}`);
  }
}
