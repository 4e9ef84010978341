/** The D-Bus names users see (DESIGN.md); kmeshctl, the service, the policy file and the tests share them. */
export const BUS_NAME = 'org.openeuler.Kmesh1';
export const OBJECT_PATH = '/org/openeuler/Kmesh1';
export const MANAGER_IFACE = 'org.openeuler.Kmesh1.Manager';
/** KmeshError codes map onto `org.openeuler.Kmesh1.Error.<code>`. */
export const ERROR_PREFIX = 'org.openeuler.Kmesh1.Error.';

export const DBUS_ERROR_ACCESS_DENIED = 'org.freedesktop.DBus.Error.AccessDenied';
export const DBUS_ERROR_INVALID_ARGS = 'org.freedesktop.DBus.Error.InvalidArgs';
/** What the bus answers when nobody owns the destination name. */
export const DBUS_ERROR_SERVICE_UNKNOWN = 'org.freedesktop.DBus.Error.ServiceUnknown';
export const DBUS_ERROR_NAME_HAS_NO_OWNER = 'org.freedesktop.DBus.Error.NameHasNoOwner';
