/** The one rule for a systemd unit name Kmesh can follow, for the TOML, D-Bus and the systemd client alike. */

/** Unit types that own a cgroup (systemd puts processes of these, and only these, into one). */
export const UNIT_TYPES = ['service', 'scope', 'slice', 'socket', 'mount', 'swap'] as const;
export type UnitType = (typeof UNIT_TYPES)[number];

/** A name systemd would accept: `name.type`, no path separators, bounded (unit_name_is_valid, simplified). */
const UNIT_NAME = new RegExp(`^[A-Za-z0-9:_.\\\\@-]{1,250}\\.(${UNIT_TYPES.join('|')})$`);

export const UNIT_NAME_RULE = `not a systemd unit name Kmesh can follow (expected e.g. "orders.service"; types: ${UNIT_TYPES.join(', ')})`;

export function isUnitName(unit: string): boolean {
  return UNIT_NAME.test(unit);
}

/** The type of a valid unit name. */
export function unitType(unit: string): UnitType {
  return unit.slice(unit.lastIndexOf('.') + 1) as UnitType;
}
