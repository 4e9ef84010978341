/**
 * The daemon step of the compatibility guest: the project's own kmesh-daemon runs on
 * a small TOML config with one registered test cgroup. A client in that cgroup must
 * reach the backends through the VIP (TCP and UDP); a client in an unregistered
 * cgroup must reach whatever really listens on the VIP (a decoy), i.e. be untouched.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdirSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';

const VIP = '127.10.0.5';
const VIP_PORT = 9080;
/** An http listener with an L7 header route: x-canary: 1 goes to L7_CANARY, the rest to L7_DEFAULT. */
const L7_VIP = '127.10.0.6';
const L7_DEFAULT = 9083;
const L7_CANARY = 9084;
const TCP_BACKEND = 9081;
const UDP_BACKEND = 9082;
const CG_ROOT = '/sys/fs/cgroup';
const REGISTERED = `${CG_ROOT}/kmesh-registered`;
const UNREGISTERED = `${CG_ROOT}/kmesh-unregistered`;
const CONFIG = '/tmp/k.toml';
const PIN_DIR = '/sys/fs/bpf/kmesh';
const METRICS_PORT = 15020;
/** Under TCG on a busy 2-core box a daemon start measured 3-15 s. */
const READY_TIMEOUT_MS = 60_000;

export const DAEMON_CONFIG = `[daemon]
log_level = "info"
pin_dir = "${PIN_DIR}"

[metrics]
listen = "127.0.0.1:${METRICS_PORT}"

[[services]]
cgroup = "${REGISTERED}"

[[clusters]]
name = "tcp-backend"
lb_policy = "round_robin"
endpoints = [ { address = "127.0.0.1", port = ${TCP_BACKEND}, weight = 1 } ]

[[clusters]]
name = "udp-backend"
lb_policy = "round_robin"
endpoints = [ { address = "127.0.0.1", port = ${UDP_BACKEND}, weight = 1 } ]

[[listeners]]
name = "vip-tcp"
address = "${VIP}"
port = ${VIP_PORT}
protocol = "tcp"
cluster = "tcp-backend"

[[listeners]]
name = "vip-udp"
address = "${VIP}"
port = ${VIP_PORT}
protocol = "udp"
cluster = "udp-backend"

[[clusters]]
name = "http-v1"
endpoints = [ { address = "127.0.0.1", port = ${L7_DEFAULT} } ]

[[clusters]]
name = "http-v2"
endpoints = [ { address = "127.0.0.1", port = ${L7_CANARY} } ]

[[listeners]]
name = "vip-http"
address = "${L7_VIP}"
port = ${VIP_PORT}
protocol = "http"
cluster = "http-v1"

[[listeners.routes]]
name = "canary"
match = { headers = [ { name = "x-canary", exact = "1" } ] }
cluster = "http-v2"
`;

export interface ClientAnswer {
  reply?: string;
  peer?: string;
  error?: string;
}
export interface ClientResult {
  tcp: ClientAnswer;
  udp: ClientAnswer;
  udpConnected: ClientAnswer;
  /** GET with x-canary: 1 to the http listener: the body names the backend the kernel routed to. */
  l7: ClientAnswer;
  stderr?: string;
}
export interface ScenarioResult {
  /** Extra environment of the daemon (KMESH_DISABLE_FEATURES acts out an older kernel). */
  env: Record<string, string>;
  started: boolean;
  readyMs?: number;
  exitCode?: number | null;
  /** Daemon log lines (pino JSON) at warn level and above, plus feature/ready lines. */
  log: string[];
  registered?: ClientResult;
  unregistered?: ClientResult;
  /** GET /metrics after the clients ran (kmesh-probe: sockops counters). */
  metrics?: { status?: number; error?: string; connectionsOpened?: number; lines?: string[] };
  /** Files under <pin_dir>/links after the daemon stopped or failed (before --cleanup). */
  pinnedLinks?: string[];
  /** Whether the in-process equivalent of `kmesh-daemon --cleanup` found pins to remove. */
  cleanedUp?: boolean;
  error?: string;
}

export interface DaemonCheckResult {
  /** Every feature the kernel has: the whole data path. */
  full: ScenarioResult;
  /** getpeername hooks off (as on a kernel < 5.8): the rest must keep working. */
  getpeernameOff: ScenarioResult;
  /** connect4 off: the daemon must refuse to start and attach nothing. */
  connect4Off: ScenarioResult;
  error?: string;
}

type Closer = () => Promise<void>;

const step = (what: string): void => {
  process.stderr.write(`KMESH-STEP daemon: ${what} (uptime ${process.uptime().toFixed(1)}s)\n`);
};

/** A TCP server whose closer also ends the connections still open. */
function tcpListener(host: string, port: number, onConnection: (sock: Socket) => void): Promise<Closer> {
  return new Promise((resolve, reject) => {
    const open = new Set<Socket>();
    const srv: Server = createServer((sock) => {
      open.add(sock);
      sock.on('close', () => open.delete(sock));
      sock.on('error', () => {});
      onConnection(sock);
    });
    srv.on('error', reject);
    srv.listen(port, host, () =>
      resolve(
        () =>
          new Promise((r) => {
            for (const sock of open) sock.destroy();
            srv.close(() => r());
          }),
      ),
    );
  });
}

function tcpServer(host: string, port: number, reply: string): Promise<Closer> {
  return tcpListener(host, port, (sock) => sock.end(`${reply}\n`));
}

/** Answers one HTTP/1.1 request per connection with `reply` as the body, then closes. */
function httpServer(host: string, port: number, reply: string): Promise<Closer> {
  return tcpListener(host, port, (sock) => {
    let head = '';
    sock.on('data', (d) => {
      head += d.toString();
      if (!head.includes('\r\n\r\n')) return;
      sock.end(`HTTP/1.1 200 OK\r\ncontent-length: ${reply.length}\r\nconnection: close\r\n\r\n${reply}`);
    });
  });
}

function udpServer(host: string, port: number, reply: string): Promise<Closer> {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4');
    s.on('error', reject);
    s.on('message', (_msg, rinfo) => s.send(reply, rinfo.port, rinfo.address));
    s.bind(port, host, () => resolve(() => new Promise((r) => s.close(() => r()))));
  });
}

/** A client process living in one cgroup; ask() runs one round of dials. */
interface ClientAgent {
  ask(): Promise<ClientResult>;
  stop(): void;
}

function startAgent(root: string, cgroup: string): Promise<ClientAgent> {
  const client = join(root, 'dist/test/kernels/guest/client.js');
  // The shell moves itself into the cgroup, then becomes the client: every socket
  // the client creates belongs to that cgroup.
  const p = spawn(
    'sh',
    ['-c', `echo $$ > ${cgroup}/cgroup.procs && exec node ${client} ${VIP} ${VIP_PORT} ${L7_VIP}`],
    {
      stdio: ['pipe', 'pipe', 'pipe'],
    },
  );
  let err = '';
  p.stderr.on('data', (d) => {
    err += d.toString();
  });
  const waiting: Array<(line: string) => void> = [];
  let buf = '';
  p.stdout.on('data', (d) => {
    buf += d.toString();
    let nl = buf.indexOf('\n');
    while (nl >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      waiting.shift()?.(line);
      nl = buf.indexOf('\n');
    }
  });
  p.on('exit', () => {
    for (const w of waiting.splice(0)) w('');
  });
  const next = (ms: number) =>
    new Promise<string>((resolve) => {
      const timer = setTimeout(() => resolve(''), ms);
      waiting.push((line) => {
        clearTimeout(timer);
        resolve(line);
      });
    });
  const agent: ClientAgent = {
    async ask() {
      const answer = next(30_000);
      p.stdin.write('check\n');
      const line = await answer;
      try {
        return { ...(JSON.parse(line) as ClientResult), ...(err ? { stderr: err.slice(-800) } : {}) };
      } catch {
        const fail = { error: `client printed no result: "${line}" ${err}`.slice(0, 800) };
        return { tcp: fail, udp: fail, udpConnected: fail, l7: fail };
      }
    },
    stop() {
      p.stdin.end();
      p.kill('SIGKILL');
    },
  };
  return next(60_000).then((line) => {
    if (line !== 'ready') throw new Error(`client agent in ${cgroup} did not start: "${line}" ${err}`);
    return agent;
  });
}

function startDaemon(
  root: string,
  result: ScenarioResult,
  env: Record<string, string>,
): Promise<{ proc: ChildProcess; ready: boolean }> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const proc = spawn('node', [join(root, 'dist/src/bin/kmesh-daemon.js'), '--config', CONFIG], {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let buf = '';
    let done = false;
    const finish = (ready: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ proc, ready });
    };
    const keep = (line: string) => {
      if (!line.trim()) return;
      let level = 50;
      let msg = line;
      try {
        const j = JSON.parse(line) as { level?: number; msg?: string };
        level = j.level ?? 50;
        msg = j.msg ?? '';
      } catch {
        /* not JSON: keep */
      }
      if (level >= 40 || /feature|ready|disabled|kernel/i.test(msg)) result.log.push(line.slice(0, 1500));
      step(`daemon: ${line.slice(0, 300)}`);
      if (/kmesh-daemon ready/.test(msg)) {
        result.readyMs = Date.now() - t0;
        finish(true);
      }
    };
    proc.stdout?.on('data', (d) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      lines.forEach(keep);
    });
    proc.stderr?.on('data', (d) => {
      for (const l of d.toString().split('\n')) {
        if (!l.trim()) continue;
        result.log.push(`stderr: ${l}`.slice(0, 1500));
        step(`daemon stderr: ${l}`);
      }
    });
    proc.on('exit', (code) => {
      result.exitCode = code;
      keep(buf);
      finish(false);
    });
    const timer = setTimeout(() => finish(false), READY_TIMEOUT_MS);
  });
}

/** The probe's counters: the registered client opened one TCP connection through the VIP. */
async function scrapeMetrics(): Promise<NonNullable<ScenarioResult['metrics']>> {
  // The ring buffer is drained asynchronously; give it a moment.
  let last: NonNullable<ScenarioResult['metrics']> = {};
  for (let i = 0; i < 5; i++) {
    try {
      const res = await fetch(`http://127.0.0.1:${METRICS_PORT}/metrics`, { signal: AbortSignal.timeout(3000) });
      const text = await res.text();
      const lines = text.split('\n').filter((l) => l.startsWith('kmesh_tcp_connections_opened_total'));
      const opened = lines.reduce((n, l) => n + Number(l.split(' ').pop() ?? 0), 0);
      last = { status: res.status, connectionsOpened: opened, lines: lines.slice(0, 5) };
      if (opened > 0) return last;
    } catch (err) {
      last = { error: (err as Error).message };
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  return last;
}

function listFiles(dir: string): string[] {
  try {
    return readdirSync(dir, { recursive: true, withFileTypes: true })
      .filter((e) => !e.isDirectory())
      .map((e) => join(e.parentPath ?? (e as unknown as { path: string }).path, e.name));
  } catch {
    return [];
  }
}

/** What `kmesh-daemon --cleanup` does, in-process (a node start costs seconds under TCG). */
async function runCleanup(): Promise<boolean> {
  const { cleanupPins } = await import('../../../src/controller/cleanup.js');
  return cleanupPins(PIN_DIR).removed > 0;
}

interface Agents {
  registered: ClientAgent;
  unregistered: ClientAgent;
}

async function scenario(
  root: string,
  agents: Agents,
  env: Record<string, string>,
  clients: { registered: boolean; unregistered: boolean; metrics?: boolean },
): Promise<ScenarioResult> {
  const result: ScenarioResult = { env, started: false, log: [] };
  let daemon: ChildProcess | undefined;
  try {
    step(`scenario ${JSON.stringify(env)}: starting kmesh-daemon`);
    const { proc, ready } = await startDaemon(root, result, env);
    daemon = proc;
    result.started = ready;
    step(`daemon ready=${ready} exit=${result.exitCode}`);
    // A daemon that refused to start must have left no program attached: the
    // registered client is then checked to be untouched too.
    if (clients.registered) {
      result.registered = await agents.registered.ask();
      step(`registered client: ${JSON.stringify(result.registered)}`);
    }
    if (clients.unregistered) {
      result.unregistered = await agents.unregistered.ask();
      step(`unregistered client: ${JSON.stringify(result.unregistered)}`);
    }
    if (clients.metrics && ready) {
      result.metrics = await scrapeMetrics();
      step(`metrics: ${JSON.stringify(result.metrics).slice(0, 600)}`);
    }
  } catch (err) {
    result.error = (err as Error).stack ?? String(err);
  } finally {
    if (daemon && daemon.exitCode === null && daemon.signalCode === null) {
      const exited = new Promise((r) => daemon?.once('exit', r));
      daemon.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
    }
    result.pinnedLinks = listFiles(`${PIN_DIR}/links`);
    result.cleanedUp = await runCleanup();
  }
  return result;
}

export async function runDaemonCheck(root: string): Promise<DaemonCheckResult> {
  const closers: Closer[] = [];
  const agentList: ClientAgent[] = [];
  const skipped = (why: string): ScenarioResult => ({ env: {}, started: false, log: [], error: why });
  const out: DaemonCheckResult = {
    full: skipped('not run'),
    getpeernameOff: skipped('not run'),
    connect4Off: skipped('not run'),
  };
  try {
    mkdirSync(REGISTERED, { recursive: true });
    mkdirSync(UNREGISTERED, { recursive: true });
    writeFileSync(CONFIG, DAEMON_CONFIG);
    closers.push(await tcpServer('127.0.0.1', TCP_BACKEND, 'backend-tcp'));
    closers.push(await udpServer('127.0.0.1', UDP_BACKEND, 'backend-udp'));
    closers.push(await httpServer('127.0.0.1', L7_DEFAULT, 'l7-default'));
    closers.push(await httpServer('127.0.0.1', L7_CANARY, 'l7-canary'));
    // Decoys on the VIP itself: what an untouched client must reach.
    closers.push(await tcpServer(VIP, VIP_PORT, 'direct-tcp'));
    closers.push(await udpServer(VIP, VIP_PORT, 'direct-udp'));
    step('backends up');
    const agents: Agents = {
      registered: await startAgent(root, REGISTERED),
      unregistered: await startAgent(root, UNREGISTERED),
    };
    agentList.push(agents.registered, agents.unregistered);
    step('client agents up');

    out.full = await scenario(root, agents, {}, { registered: true, unregistered: true, metrics: true });
    if (!out.full.started) {
      // It would not start in the other scenarios either: fail fast, with the first log.
      const why = 'not run: the daemon did not start in the full scenario';
      out.getpeernameOff = skipped(why);
      out.connect4Off = skipped(why);
      return out;
    }
    out.getpeernameOff = await scenario(
      root,
      agents,
      { KMESH_DISABLE_FEATURES: 'attach_getpeername4,attach_getpeername6' },
      { registered: true, unregistered: false },
    );
    out.connect4Off = await scenario(
      root,
      agents,
      { KMESH_DISABLE_FEATURES: 'attach_connect4' },
      { registered: true, unregistered: false },
    );
  } catch (err) {
    out.error = (err as Error).stack ?? String(err);
  } finally {
    step('stopping');
    for (const a of agentList) a.stop();
    for (const c of closers) await Promise.race([c().catch(() => {}), new Promise((r) => setTimeout(r, 1000))]);
    for (const cg of [REGISTERED, UNREGISTERED]) {
      try {
        rmdirSync(cg);
      } catch {
        /* the guest is thrown away anyway */
      }
    }
    step('stopped');
  }
  return out;
}
