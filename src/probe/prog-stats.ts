/**
 * BPF program run statistics (bpf_prog_info.run_cnt / run_time_ns). The kernel
 * collects them only while stats are enabled: globally with
 * `sysctl kernel.bpf_stats_enabled=1`, or for as long as a process holds the fd from
 * BPF_ENABLE_STATS (enableBpfStats below). Both cost a few ns per program run.
 */

import { BpfError } from '../runtime/errors.js';
import { libbpf } from '../runtime/libbpf.js';

/** Offsets in struct bpf_prog_info (linux/bpf.h, stable UAPI); test/unit/probe-btf.test.ts checks them against vmlinux BTF. */
export const PROG_INFO = { size: 232, id: 4, runTimeNs: 192, runCnt: 200 } as const;

export interface ProgStats {
  id: number;
  runCount: bigint;
  runTimeNs: bigint;
}

export function progStats(progFd: number): ProgStats {
  const info = Buffer.alloc(PROG_INFO.size);
  const len = [PROG_INFO.size];
  const rc = libbpf.objGetInfoByFd(progFd, info, len);
  if (rc < 0) throw new BpfError(`bpf_obj_get_info_by_fd(${progFd})`, -rc);
  return {
    id: info.readUInt32LE(PROG_INFO.id),
    runCount: info.readBigUInt64LE(PROG_INFO.runCnt),
    runTimeNs: info.readBigUInt64LE(PROG_INFO.runTimeNs),
  };
}

const BPF_STATS_RUN_TIME = 0;

/** Turns run statistics on until the returned fd is closed (fs.closeSync). */
export function enableBpfStats(): number {
  const fd = libbpf.enableStats(BPF_STATS_RUN_TIME);
  if (fd < 0) throw new BpfError('BPF_ENABLE_STATS', -fd);
  return fd;
}
