/**
 * Boot a Debian rootfs with systemd-nspawn for end-to-end tests, and clean every trace up again.
 *
 * - The cached rootfs (test/e2e/rootfs.sh) stays pristine: the container runs on an overlay of it.
 * - The container gets its own network namespace (--private-network), so its 127.x traffic never meets the host's.
 * - nspawn runs inside cgroups this harness creates (kmesh-e2e-<pid> in every writable hierarchy), so whatever
 *   the container's systemd creates lives below them and is removed with them — never the host's root cgroup.
 * - /sys/fs/bpf inside is a bpffs instance mounted by the harness: pins made inside are visible (and checked) from
 *   here, and unmounting it at the end drops every pin left behind.
 * - Stop: SIGTERM to the nspawn pid (it halts the container), SIGKILL after a timeout; no machinectl needed.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ContainerOptions {
  rootfs: string;
  /** host path → container path, read-only. */
  bindRo?: Record<string, string>;
  log?: (line: string) => void;
}

/** Where cgroup hierarchies are that we can create a directory in (cgroup2 and the named systemd v1 one). */
function cgroupRoots(): string[] {
  const roots: string[] = [];
  for (const line of readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
    const [, mnt, fs, opts] = line.split(' ');
    if (!mnt || !opts) continue;
    if (fs === 'cgroup2' || (fs === 'cgroup' && opts.split(',').includes('name=systemd'))) roots.push(mnt);
  }
  return roots;
}

function rmCgroupTree(dir: string): void {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) rmCgroupTree(join(dir, e.name));
  try {
    rmdirSync(dir);
  } catch {
    // Still populated (a process outlived the container): leave it rather than fail the cleanup.
  }
}

async function run(cmd: string, args: string[]): Promise<ExecResult> {
  try {
    const { stdout, stderr } = await execFileP(cmd, args, { maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(err) };
  }
}

export class Container {
  readonly dir: string;
  readonly root: string;
  readonly bpffs: string;
  private readonly cgroups: string[] = [];
  private nspawn: ChildProcess | null = null;
  private initPid = 0;
  private mounted: string[] = [];
  readonly consoleLog: string;

  private constructor(private readonly opts: ContainerOptions) {
    this.dir = mkdtempSync('/tmp/kmesh-e2e-');
    this.root = join(this.dir, 'root');
    this.bpffs = join(this.dir, 'bpffs');
    this.consoleLog = join(this.dir, 'console.log');
  }

  static async boot(opts: ContainerOptions): Promise<Container> {
    const c = new Container(opts);
    try {
      await c.start();
      return c;
    } catch (err) {
      await c.destroy();
      throw err;
    }
  }

  private async mount(args: string[], target: string): Promise<void> {
    const r = await run('mount', [...args, target]);
    if (r.code !== 0) throw new Error(`mount ${args.join(' ')} ${target}: ${r.stderr}`);
    this.mounted.unshift(target);
  }

  private async start(): Promise<void> {
    for (const d of ['upper', 'work', 'root', 'bpffs']) mkdirSync(join(this.dir, d));
    await this.mount(
      [
        '-t',
        'overlay',
        'overlay',
        '-o',
        `lowerdir=${this.opts.rootfs},upperdir=${join(this.dir, 'upper')},workdir=${join(this.dir, 'work')}`,
      ],
      this.root,
    );
    await this.mount(['-t', 'bpf', '-o', 'mode=700', 'bpf'], this.bpffs);
    const name = `kmesh-e2e-${process.pid}-${Date.now()}`;
    for (const r of cgroupRoots()) {
      const d = join(r, name);
      mkdirSync(d);
      this.cgroups.push(d);
    }
    const binds = Object.entries(this.opts.bindRo ?? {}).map(([h, c]) => `--bind-ro=${h}:${c}`);
    const nspawnArgs = [
      '-D',
      this.root,
      '--boot',
      '--register=no',
      '--keep-unit',
      '--private-network',
      '--machine=kmesh-e2e',
      // CAP_BPF/CAP_PERFMON are not in nspawn's default set; its seccomp filter also blocks bpf() without this.
      '--capability=CAP_BPF,CAP_PERFMON,CAP_SYS_RESOURCE',
      '--system-call-filter=bpf perf_event_open',
      `--bind=${this.bpffs}:/sys/fs/bpf`,
      ...binds,
      '--console=read-only',
    ];
    // Enter our cgroups before exec'ing nspawn so the container's whole tree lives below them.
    const enter = this.cgroups.map((d) => `echo $$ > '${d}/cgroup.procs'`).join('; ');
    const out = openSync(this.consoleLog, 'a');
    this.nspawn = spawn('sh', ['-c', `${enter}; exec systemd-nspawn "$@"`, 'sh', ...nspawnArgs], {
      stdio: ['ignore', out, out],
    });
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      if (this.nspawn.exitCode !== null) throw new Error(`systemd-nspawn exited: ${this.console().slice(-2000)}`);
      this.initPid = this.findInit();
      if (this.initPid) {
        const r = await this.exec('systemctl is-system-running');
        const state = r.stdout.trim();
        if (state === 'running' || state === 'degraded') return;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`container did not boot within 60 s: ${this.console().slice(-2000)}`);
  }

  /** The container's PID 1 as seen from here: the nspawn child whose innermost pid is 1. */
  private findInit(): number {
    const pid = this.nspawn?.pid;
    if (!pid) return 0;
    const queue = [pid];
    while (queue.length > 0) {
      const p = queue.shift() as number;
      try {
        const status = readFileSync(`/proc/${p}/status`, 'utf8');
        const ns = /^NSpid:\s+(.*)$/m.exec(status)?.[1]?.trim().split(/\s+/) ?? [];
        if (p !== pid && ns.length > 1 && ns[ns.length - 1] === '1') return p;
        for (const t of readdirSync(`/proc/${p}/task`)) {
          const kids = readFileSync(`/proc/${p}/task/${t}/children`, 'utf8').trim();
          if (kids) queue.push(...kids.split(/\s+/).map(Number));
        }
      } catch {
        // The process went away meanwhile.
      }
    }
    return 0;
  }

  console(): string {
    try {
      return readFileSync(this.consoleLog, 'utf8');
    } catch {
      return '';
    }
  }

  /** Run a shell command inside the container (all its namespaces), as root, with a clean environment. */
  exec(command: string): Promise<ExecResult> {
    this.opts.log?.(`# ${command}`);
    return run('nsenter', [
      '-t',
      String(this.initPid),
      '-a',
      '--',
      'env',
      '-i',
      'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      'HOME=/root',
      'LANG=C.UTF-8',
      'DEBIAN_FRONTEND=noninteractive',
      'SYSTEMD_PAGER=',
      'SYSTEMD_COLORS=0',
      'sh',
      '-c',
      command,
    ]).then((r) => {
      if (r.code !== 0) this.opts.log?.(`  exit ${r.code}: ${r.stderr.trim().slice(0, 500)}`);
      return r;
    });
  }

  /** Like exec, but throws with the output on a non-zero exit. */
  async sh(command: string): Promise<string> {
    const r = await this.exec(command);
    if (r.code !== 0) throw new Error(`"${command}" exited ${r.code}\n${r.stdout}\n${r.stderr}`);
    return r.stdout;
  }

  /**
   * Names pinned on the container's bpffs (checked from the host side). The kernel's bpf_preload puts
   * maps.debug/progs.debug into every new bpffs; they are not ours and are left out.
   */
  pinned(): string[] {
    const out: string[] = [];
    const walk = (d: string, prefix: string) => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        if (!prefix && (e.name === 'maps.debug' || e.name === 'progs.debug')) continue;
        const rel = prefix ? `${prefix}/${e.name}` : e.name;
        out.push(rel);
        if (e.isDirectory()) walk(join(d, e.name), rel);
      }
    };
    walk(this.bpffs, '');
    return out;
  }

  /** Stop the container and undo everything start() did, also after a failed start. */
  async destroy(): Promise<void> {
    const child = this.nspawn;
    if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      process.kill(child.pid, 'SIGTERM');
      const timedOut = await Promise.race([
        exited.then(() => false),
        new Promise((r) => setTimeout(() => r(true), 30_000)),
      ]);
      if (timedOut && child.exitCode === null) {
        // Killing the container's init ends its whole pid namespace; then nspawn itself.
        if (this.initPid) {
          try {
            process.kill(this.initPid, 'SIGKILL');
          } catch {
            // Already gone.
          }
        }
        process.kill(child.pid, 'SIGKILL');
        await exited;
      }
    }
    for (const m of this.mounted) {
      const r = await run('umount', [m]);
      if (r.code !== 0) await run('umount', ['-l', m]);
    }
    this.mounted = [];
    for (const d of this.cgroups) rmCgroupTree(d);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
