/**
 * A cluster's connect timeout as the kernel can apply it to a steered socket: the sockops program sets the
 * socket's SYN retransmission count (TCP_SYNCNT) and its initial SYN retransmission timeout
 * (BPF_SOCK_OPS_TIMEOUT_INIT, in jiffies). connect() then fails with ETIMEDOUT when the last
 * retransmission goes unanswered. The arithmetic of that schedule depends on the kernel's HZ and, from
 * Linux 6.5, on net.ipv4.tcp_syn_linear_timeouts; both are read here once.
 */
import { existsSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { gunzipSync } from 'node:zlib';

export interface KernelTimers {
  /** Jiffies per second (CONFIG_HZ). */
  hz: number;
  /** net.ipv4.tcp_syn_linear_timeouts: SYN retransmissions before the backoff doubles (0 before 6.5). */
  linearTimeouts: number;
}

export interface SynSchedule {
  rtoJiffies: number;
  retries: number;
}

/** The default initial SYN timeout (TCP_TIMEOUT_INIT) and the kernel's default retries. */
const DEFAULT_RTO_MS = 1000;
const MAX_RETRIES = 6;

/** Time to ETIMEDOUT in units of the initial timeout, for `retries` retransmissions. */
export function synUnits(retries: number, linearTimeouts: number): number {
  // The kernel gives up once retransmits reach retries + linear; the timeout doubles after the linear ones.
  let units = 0;
  let rto = 1;
  for (let sent = 0; sent <= retries + linearTimeouts; sent++) {
    units += rto;
    if (sent + 1 > linearTimeouts) rto *= 2;
  }
  return units;
}

/**
 * The fewest retransmissions whose spacing is no longer than the default 1 s (so a lost SYN is not retried
 * later than without a timeout), spread evenly over the timeout.
 */
export function synSchedule(timeoutMs: number, timers: KernelTimers): SynSchedule {
  let retries = 1;
  while (retries < MAX_RETRIES && timeoutMs / synUnits(retries, timers.linearTimeouts) > DEFAULT_RTO_MS) retries++;
  const rtoMs = timeoutMs / synUnits(retries, timers.linearTimeouts);
  return { rtoJiffies: Math.max(1, Math.round((rtoMs * timers.hz) / 1000)), retries };
}

/** CONFIG_HZ from the kernel's config (/boot or /proc/config.gz); 250 (Debian's) when neither says. */
function kernelHz(): number {
  const sources: Array<() => string> = [
    () => readFileSync(`/boot/config-${release()}`, 'utf8'),
    () => gunzipSync(readFileSync('/proc/config.gz')).toString('utf8'),
  ];
  for (const read of sources) {
    try {
      const hz = /^CONFIG_HZ=(\d+)$/m.exec(read())?.[1];
      if (hz) return Number(hz);
    } catch {
      /* not there: try the next */
    }
  }
  return 250;
}

let cached: KernelTimers | undefined;

export function kernelTimers(): KernelTimers {
  if (cached) return cached;
  const sysctl = '/proc/sys/net/ipv4/tcp_syn_linear_timeouts';
  cached = {
    hz: kernelHz(),
    linearTimeouts: existsSync(sysctl) ? Number(readFileSync(sysctl, 'utf8').trim()) || 0 : 0,
  };
  return cached;
}
