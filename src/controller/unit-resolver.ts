/** How a systemd unit name becomes a cgroup; implemented over systemd's D-Bus API in systemd-units.ts. */
export interface UnitCgroupResolver {
  /** The unit's ControlGroup relative to the cgroup2 mount, or null when it is not running. Throws KmeshError('NotFound') for a unit systemd does not know. */
  resolve(unit: string): Promise<string | null>;
  /** onChange runs whenever the unit may have a new cgroup (start, stop, restart); returns the unsubscribe. */
  watch(unit: string, onChange: () => void): () => void;
  close(): Promise<void> | void;
}
