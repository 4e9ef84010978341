/**
 * Plain method calls over dbus-next's Message API. Proxy objects would introspect every peer first (a round trip
 * and an XML parse per object); the few calls Kmesh makes have fixed signatures, so they are spelled out here.
 */
import dbus from 'dbus-next';

export interface CallSpec {
  destination: string;
  path: string;
  iface: string;
  member: string;
  signature?: string;
  body?: unknown[];
}

/** How long a call may wait for its reply; dbus-next itself waits forever (e.g. after the connection broke). */
export const DEFAULT_CALL_TIMEOUT_MS = 25_000;

/**
 * Call and return the reply body; rejects with dbus-next's DBusError (`type`, `text`) on an error reply, and with
 * an Error when no reply came within timeoutMs.
 */
export function callMethod(
  bus: dbus.MessageBus,
  spec: CallSpec,
  timeoutMs = DEFAULT_CALL_TIMEOUT_MS,
): Promise<unknown[]> {
  const call = bus.call(
    new dbus.Message({
      destination: spec.destination,
      path: spec.path,
      interface: spec.iface,
      member: spec.member,
      signature: spec.signature ?? '',
      body: spec.body ?? [],
    }),
  );
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no reply from ${spec.destination} to ${spec.member} within ${timeoutMs / 1000} s`)),
      timeoutMs,
    );
    // An open connection keeps the process alive by itself; a call left pending on a closed one must not.
    timer.unref();
  });
  return Promise.race([call, timeout])
    .then((reply) => reply?.body ?? [])
    .finally(() => clearTimeout(timer));
}

/** org.freedesktop.DBus.Properties.Get, unwrapped from its variant. */
export async function getProperty(
  bus: dbus.MessageBus,
  destination: string,
  path: string,
  iface: string,
  name: string,
): Promise<unknown> {
  const [v] = await callMethod(bus, {
    destination,
    path,
    iface: 'org.freedesktop.DBus.Properties',
    member: 'Get',
    signature: 'ss',
    body: [iface, name],
  });
  return (v as dbus.Variant).value;
}

/** Calls on the bus daemon itself (GetConnectionUnixUser, AddMatch, …). */
export function callBus(
  bus: dbus.MessageBus,
  member: string,
  signature = '',
  body: unknown[] = [],
): Promise<unknown[]> {
  return callMethod(bus, {
    destination: 'org.freedesktop.DBus',
    path: '/org/freedesktop/DBus',
    iface: 'org.freedesktop.DBus',
    member,
    signature,
    body,
  });
}

/** The D-Bus error name of a rejection, or undefined when it is not a D-Bus error reply. */
export function dbusErrorName(err: unknown): string | undefined {
  if (err && typeof err === 'object' && 'type' in err && typeof (err as { type: unknown }).type === 'string') {
    return (err as { type: string }).type;
  }
  return undefined;
}

/** The readable text of a D-Bus error reply (falls back to the JS message). */
export function dbusErrorText(err: unknown): string {
  if (err && typeof err === 'object' && 'text' in err && typeof (err as { text: unknown }).text === 'string') {
    return (err as { text: string }).text;
  }
  return err instanceof Error ? err.message : String(err);
}
