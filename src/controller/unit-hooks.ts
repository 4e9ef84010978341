/**
 * Race-free restarts of registered units: a systemd drop-in per registered service unit whose
 * ExecStartPre= asks the daemon (D-Bus AttachUnit) to attach to the unit's new cgroup. systemd runs
 * ExecStartPre= to completion, inside that cgroup, before the main process starts — so the unit's very
 * first connect is steered. Written to /run (gone at reboot, rewritten when the daemon starts).
 */
import { existsSync, mkdirSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';

export const UNIT_HOOK_FILE = '50-kmesh-attach.conf';
/** systemd's runtime unit directory: drop-ins there last until reboot. */
export const SYSTEMD_RUNTIME_UNITS = '/run/systemd/system';

/** `-`: a stopped daemon must not keep the unit from starting; `+`: as root, whatever User= the unit has. */
export function unitHookDropIn(unit: string): string {
  return `# Written by kmesh-daemon: ${unit} is registered with Kmesh (removed when it is unregistered).
# systemd finishes ExecStartPre= before the main process starts: the daemon attaches to the new cgroup first.
[Service]
ExecStartPre=-+/usr/bin/busctl call --timeout=5 org.openeuler.Kmesh1 /org/openeuler/Kmesh1 org.openeuler.Kmesh1.Manager AttachUnit s %n
`;
}

export class UnitStartHooks {
  private pending: NodeJS.Timeout | undefined;

  constructor(
    private readonly dir: string,
    /** systemd's daemon-reload, so it reads the drop-ins. */
    private readonly reloadSystemd: () => Promise<void>,
    private readonly logger: Logger,
  ) {}

  /** Only services have ExecStartPre=; scopes and slices follow systemd's signals alone. */
  static applies(unit: string): boolean {
    return unit.endsWith('.service');
  }

  install(unit: string): void {
    if (!UnitStartHooks.applies(unit)) return;
    const dropInDir = join(this.dir, `${unit}.d`);
    const file = join(dropInDir, UNIT_HOOK_FILE);
    const text = unitHookDropIn(unit);
    try {
      mkdirSync(dropInDir, { recursive: true });
      writeFileSync(file, text);
      this.scheduleReload();
    } catch (err) {
      this.logger.warn({ unit, err: (err as Error).message }, 'cannot install the start hook: restarts may race');
    }
  }

  remove(unit: string): void {
    const dropInDir = join(this.dir, `${unit}.d`);
    const file = join(dropInDir, UNIT_HOOK_FILE);
    if (!existsSync(file)) return;
    rmSync(file, { force: true });
    try {
      rmdirSync(dropInDir);
    } catch {
      /* other drop-ins live there */
    }
    this.scheduleReload();
  }

  /** One daemon-reload for a burst of registrations (a config with many units). */
  private scheduleReload(): void {
    if (this.pending) return;
    this.pending = setTimeout(() => {
      this.pending = undefined;
      this.reloadSystemd().catch((err) =>
        this.logger.warn({ err: (err as Error).message }, 'systemd daemon-reload for the start hooks failed'),
      );
    }, 50);
  }
}
