/**
 * The management service on the system bus: org.openeuler.Kmesh1 at /org/openeuler/Kmesh1, interface
 * org.openeuler.Kmesh1.Manager. Everything goes through DaemonControl; this file only translates.
 *
 * Method calls are dispatched here rather than by dbus-next's Interface machinery because that machinery hides
 * the caller: mutating methods must check the caller's uid (GetConnectionUnixUser) in addition to the bus policy,
 * and wrong argument types deserve a readable InvalidArgs error. The Interface subclass still provides
 * introspection, Properties.Get/GetAll, PropertiesChanged and signals.
 */
import dbus from 'dbus-next';
import type { DaemonControl, DaemonEvents } from '../../contracts/control.js';
import { KmeshError } from '../../contracts/errors.js';
import type { ServiceSpec } from '../../model/types.js';
import { callBus, dbusErrorName, dbusErrorText } from './call.js';
import {
  encodeService,
  encodeStatus,
  PROPERTY_SIGNATURES,
  type PropertyName,
  type PropertySnapshot,
  propertySnapshot,
  SERVICE_SIGNATURE,
} from './codec.js';
import {
  BUS_NAME,
  DBUS_ERROR_ACCESS_DENIED,
  DBUS_ERROR_INVALID_ARGS,
  ERROR_PREFIX,
  MANAGER_IFACE,
  OBJECT_PATH,
} from './names.js';

/** The subset of a pino logger this module uses. */
export interface DbusLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

export interface DbusServiceOptions {
  /** Connect here instead of the system bus (tests run a private dbus-daemon). */
  busAddress?: string;
  /** How often properties are compared for PropertiesChanged besides daemon events (XdsConnected has none); ms. */
  pollMs?: number;
  /** uids allowed to call mutating methods; default root only. */
  privilegedUids?: number[];
}

export interface DbusService {
  stop(): Promise<void>;
}

/** Longest string argument accepted (a cgroup path or unit name is far shorter). */
const MAX_ARG = 4096;

interface MethodDef {
  in: string;
  out: string;
  mutating: boolean;
  run(control: DaemonControl, args: unknown[]): Promise<unknown[]> | unknown[];
}

function stringArg(args: unknown[], what: string): string {
  const s = String(args[0] ?? '').trim();
  if (s.length === 0) throw new KmeshError('InvalidArgument', `${what} must not be empty`);
  if (s.length > MAX_ARG) throw new KmeshError('InvalidArgument', `${what} is longer than ${MAX_ARG} characters`);
  return s;
}

/** `RegisterService("orders.service")` or `RegisterService("/sys/fs/cgroup/…")`: a leading slash means a cgroup. */
export function parseServiceArg(arg: string): ServiceSpec {
  return arg.startsWith('/') ? { cgroup: arg } : { unit: arg };
}

const METHODS: Record<string, MethodDef> = {
  GetStatus: { in: '', out: 'a{sv}', mutating: false, run: (c) => [encodeStatus(c.status())] },
  ListServices: {
    in: '',
    out: `a${SERVICE_SIGNATURE}`,
    mutating: false,
    run: (c) => [c.listServices().map(encodeService)],
  },
  DumpConfig: { in: '', out: 's', mutating: false, run: async (c) => [JSON.stringify(await c.dumpConfig(), null, 2)] },
  RegisterService: {
    in: 's',
    out: SERVICE_SIGNATURE,
    mutating: true,
    run: async (c, a) => [encodeService(await c.registerService(parseServiceArg(stringArg(a, 'unit or cgroup'))))],
  },
  UnregisterService: {
    in: 's',
    out: '',
    mutating: true,
    run: async (c, a) => {
      await c.unregisterService(stringArg(a, 'service name'));
      return [];
    },
  },
  Reload: { in: '', out: 'u', mutating: true, run: async (c) => [await c.reload()] },
  SetLogLevel: {
    in: 's',
    out: '',
    mutating: true,
    run: (c, a) => {
      c.setLogLevel(stringArg(a, 'log level'));
      return [];
    },
  },
  SetAccessLog: {
    in: 'b',
    out: '',
    mutating: true,
    run: (c, a) => {
      c.setAccessLog(Boolean(a[0]));
      return [];
    },
  },
};

/** Introspection, properties and signals; methods are declared for introspection only (see file comment). */
class ManagerInterface extends dbus.interface.Interface {
  constructor(private readonly snapshot: () => PropertySnapshot) {
    super(MANAGER_IFACE);
  }
  get Version() {
    return this.snapshot().Version;
  }
  get State() {
    return this.snapshot().State;
  }
  get XdsConnected() {
    return this.snapshot().XdsConnected;
  }
  get ConfigVersion() {
    return this.snapshot().ConfigVersion;
  }
  get ServiceCount() {
    return this.snapshot().ServiceCount;
  }
  get ListenerCount() {
    return this.snapshot().ListenerCount;
  }
  get ClusterCount() {
    return this.snapshot().ClusterCount;
  }
  ConfigApplied(configVersion: number): number {
    return configVersion;
  }
  ServiceChanged(name: string, change: string): [string, string] {
    return [name, change];
  }
}

const proto = ManagerInterface.prototype as unknown as Record<string, unknown>;
for (const name of Object.keys(METHODS)) {
  proto[name] = () => {
    throw new dbus.DBusError(`${ERROR_PREFIX}Failed`, 'internal dispatch error');
  };
}
ManagerInterface.configureMembers({
  properties: Object.fromEntries(
    Object.entries(PROPERTY_SIGNATURES).map(([k, signature]) => [k, { signature, access: dbus.interface.ACCESS_READ }]),
  ),
  methods: Object.fromEntries(Object.entries(METHODS).map(([k, m]) => [k, { inSignature: m.in, outSignature: m.out }])),
  signals: { ConfigApplied: { signature: 'u' }, ServiceChanged: { signature: 'ss' } },
});

/** KmeshError → org.openeuler.Kmesh1.Error.<code>; anything else → …Error.Failed, message only (no stack). */
export function toDbusError(err: unknown): { name: string; text: string } {
  if (err instanceof KmeshError) return { name: `${ERROR_PREFIX}${err.code}`, text: err.message };
  const name = dbusErrorName(err);
  if (name) return { name, text: dbusErrorText(err) };
  return { name: `${ERROR_PREFIX}Failed`, text: err instanceof Error ? err.message : String(err) };
}

function sigText(sig: string): string {
  return `(${sig})`;
}

export async function startDbusService(
  control: DaemonControl,
  logger: DbusLogger,
  options: DbusServiceOptions = {},
): Promise<DbusService> {
  const bus = options.busAddress ? dbus.sessionBus({ busAddress: options.busAddress }) : dbus.systemBus();
  const privileged = new Set(options.privilegedUids ?? [0]);
  let last = propertySnapshot(control.status());
  const iface = new ManagerInterface(() => propertySnapshot(control.status()));

  // A bus that cannot be reached fails the start instead of leaving requestName waiting forever.
  let connectionFailed: (err: unknown) => void = () => {};
  const connectionError = new Promise<never>((_, reject) => {
    connectionFailed = reject;
  });
  connectionError.catch(() => {});
  bus.on('error', (err: unknown) => {
    logger.error({ err: String(err) }, 'D-Bus connection error');
    connectionFailed(err);
  });

  const reply = (msg: dbus.Message, signature: string, body: unknown[]) =>
    bus.send(dbus.Message.newMethodReturn(msg, signature, body));
  // dbus-next's typings say newError takes a string; it takes the call message.
  const replyError = (msg: dbus.Message, name: string, text: string) =>
    bus.send(dbus.Message.newError(msg as unknown as string, name, text));

  async function callerUid(sender: string): Promise<number> {
    const [uid] = await callBus(bus, 'GetConnectionUnixUser', 's', [sender]);
    return Number(uid);
  }

  async function dispatch(msg: dbus.Message, name: string, def: MethodDef): Promise<void> {
    try {
      if (def.mutating) {
        const uid = await callerUid(msg.sender);
        if (!privileged.has(uid)) {
          logger.warn({ method: name, uid, sender: msg.sender }, 'refused D-Bus call from unprivileged caller');
          replyError(msg, DBUS_ERROR_ACCESS_DENIED, `${name} changes the mesh and requires root (caller uid ${uid})`);
          return;
        }
        logger.info({ method: name, uid, args: msg.body }, 'D-Bus management call');
      }
      const body = await def.run(control, msg.body ?? []);
      reply(msg, def.out, body);
    } catch (err) {
      const e = toDbusError(err);
      logger.debug({ method: name, error: e.name, text: e.text }, 'D-Bus call failed');
      replyError(msg, e.name, e.text);
    }
  }

  const handler = (msg: dbus.Message): boolean => {
    if (msg.path !== OBJECT_PATH) return false;
    // dbus-next's own Properties.Set replies twice for read-only properties; answer it here once.
    if (msg.interface === 'org.freedesktop.DBus.Properties' && msg.member === 'Set') {
      replyError(
        msg,
        'org.freedesktop.DBus.Error.PropertyReadOnly',
        'all org.openeuler.Kmesh1 properties are read-only',
      );
      return true;
    }
    // The interface field is optional in a call; a bare member name of ours is ours.
    if (msg.interface && msg.interface !== MANAGER_IFACE) return false;
    const def = METHODS[msg.member];
    if (!def) return false;
    const got = msg.signature ?? '';
    if (got !== def.in) {
      replyError(
        msg,
        DBUS_ERROR_INVALID_ARGS,
        `${msg.member} takes arguments ${sigText(def.in)}, got ${sigText(got)}` +
          (def.in === 's' ? ' — pass a unit name like "orders.service" or a cgroup path' : ''),
      );
      return true;
    }
    void dispatch(msg, msg.member, def);
    return true;
  };

  // PropertiesChanged for whatever differs from the last snapshot; cheap, so also run on a timer for XdsConnected.
  const publishChanges = () => {
    const now = propertySnapshot(control.status());
    const changed: Partial<PropertySnapshot> = {};
    for (const k of Object.keys(now) as PropertyName[]) if (now[k] !== last[k]) changed[k] = now[k];
    last = now;
    if (Object.keys(changed).length > 0) dbus.interface.Interface.emitPropertiesChanged(iface, changed, []);
  };
  const onConfigApplied = (...[v]: DaemonEvents['config-applied']) => {
    iface.ConfigApplied(v);
    publishChanges();
  };
  const onServiceChanged = (...[name, change]: DaemonEvents['service-changed']) => {
    iface.ServiceChanged(name, change);
    publishChanges();
  };
  const onStateChanged = () => publishChanges();

  bus.addMethodHandler(handler);
  bus.export(OBJECT_PATH, iface);
  try {
    const result = await Promise.race([bus.requestName(BUS_NAME, dbus.NameFlag.DO_NOT_QUEUE), connectionError]);
    if (result !== dbus.RequestNameReply.PRIMARY_OWNER && result !== dbus.RequestNameReply.ALREADY_OWNER) {
      throw new KmeshError('AlreadyExists', await nameTakenMessage(bus));
    }
  } catch (err) {
    bus.disconnect();
    if (err instanceof KmeshError) throw err;
    if (dbusErrorName(err) === DBUS_ERROR_ACCESS_DENIED) {
      throw new KmeshError(
        'Failed',
        `not allowed to own ${BUS_NAME} on the system bus: run as root and install the policy ` +
          `/usr/share/dbus-1/system.d/${BUS_NAME}.conf (${dbusErrorText(err)})`,
      );
    }
    throw new KmeshError('Failed', `cannot register ${BUS_NAME} on the bus: ${dbusErrorText(err)}`);
  }

  control.on('config-applied', onConfigApplied);
  control.on('service-changed', onServiceChanged);
  control.on('state-changed', onStateChanged);
  const timer = setInterval(publishChanges, options.pollMs ?? 1000);
  timer.unref();
  logger.info({ name: BUS_NAME, path: OBJECT_PATH }, 'D-Bus management service ready');

  let stopped = false;
  return {
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      control.off('config-applied', onConfigApplied);
      control.off('service-changed', onServiceChanged);
      control.off('state-changed', onStateChanged);
      bus.removeMethodHandler(handler);
      try {
        await bus.releaseName(BUS_NAME);
      } catch {
        // The bus may already be gone; disconnecting releases the name anyway.
      }
      bus.unexport(OBJECT_PATH, iface);
      bus.disconnect();
    },
  };
}

/** "owned by pid N (uid U)" when the bus tells us, so the operator can find the other instance. */
async function nameTakenMessage(bus: dbus.MessageBus): Promise<string> {
  let who = 'another process';
  try {
    const [owner] = await callBus(bus, 'GetNameOwner', 's', [BUS_NAME]);
    const [pid] = await callBus(bus, 'GetConnectionUnixProcessID', 's', [owner]);
    who = `pid ${pid}`;
  } catch {
    // Best effort only.
  }
  return `${BUS_NAME} is already owned on the bus by ${who}: is another kmesh-daemon running? (systemctl status kmesh)`;
}
