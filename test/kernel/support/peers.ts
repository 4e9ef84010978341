/** Real backends on loopback and a real client process inside a test cgroup. */
import { spawn } from 'node:child_process';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Server } from 'node:net';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { movePid } from './cgroup.js';

const CLIENT = join(dirname(fileURLToPath(import.meta.url)), 'traffic-client.js');

export interface Backends {
  close(): Promise<void>;
}

/** Each TCP server answers its own name and closes. */
export async function tcpBackends(list: Array<{ name: string; host: string; port: number }>): Promise<Backends> {
  const servers: Server[] = [];
  for (const b of list) {
    const server = createServer((socket) => socket.end(`${b.name}\n`));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(b.port, b.host, resolve);
    });
    servers.push(server);
  }
  return {
    close: () =>
      Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())))).then(() => undefined),
  };
}

export async function udpBackends(list: Array<{ name: string; host: string; port: number }>): Promise<Backends> {
  const sockets: UdpSocket[] = [];
  for (const b of list) {
    const socket = createSocket(b.host.includes(':') ? 'udp6' : 'udp4');
    socket.on('message', (_msg, rinfo) => socket.send(`${b.name}\n`, rinfo.port, rinfo.address));
    await new Promise<void>((resolve) => socket.bind(b.port, b.host, resolve));
    sockets.push(socket);
  }
  return {
    close: () =>
      Promise.all(sockets.map((s) => new Promise<void>((resolve) => s.close(() => resolve())))).then(() => undefined),
  };
}

export interface DialResult {
  reply?: string;
  peer?: string;
  from?: string;
  error?: string;
}

/** Dials from a fresh process placed in `cgroup` (or left where it is when cgroup is null). */
export function dialFrom(
  cgroup: string | null,
  mode: 'tcp' | 'udp',
  host: string,
  port: number,
  count: number,
): Promise<DialResult[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLIENT, mode, host, String(port), String(count)], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`traffic client exited ${code}`));
      try {
        resolve(JSON.parse(out) as DialResult[]);
      } catch (err) {
        reject(err);
      }
    });
    if (cgroup && child.pid) movePid(cgroup, child.pid);
    child.stdin.end('go\n');
  });
}

export const count = (results: DialResult[]): Map<string, number> => {
  const tally = new Map<string, number>();
  for (const r of results) {
    const key = r.reply ?? `error:${r.error}`;
    tally.set(key, (tally.get(key) ?? 0) + 1);
  }
  return tally;
};

/** Echoes every line back, prefixed with its name; connections stay open. */
export async function echoBackend(name: string, host: string, port: number): Promise<Backends> {
  const server = createServer((socket) => socket.on('data', (chunk) => socket.write(`${name}:${chunk}`)));
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  return { close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

export interface HeldConnection {
  /** Sends a line, resolves with the echoed line. */
  roundTrip(line: string): Promise<string>;
  close(): void;
}

/** One long-lived connection from a process in `cgroup`. */
export async function holdFrom(cgroup: string, host: string, port: number): Promise<HeldConnection> {
  const child = spawn(process.execPath, [CLIENT, 'hold', host, String(port)], { stdio: ['pipe', 'pipe', 'inherit'] });
  if (child.pid) movePid(cgroup, child.pid);
  child.stdin.write('go\n');
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const nextLine = async (): Promise<string> => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('no answer on the held connection')), 3000);
    });
    try {
      const { value, done } = await Promise.race([lines.next(), timeout]);
      if (done) throw new Error('held connection: client exited');
      return value;
    } finally {
      clearTimeout(timer);
    }
  };
  const first = await nextLine();
  if (first !== 'connected') throw new Error(`held connection: ${first}`);
  return {
    roundTrip(line: string) {
      child.stdin.write(`${line}\n`);
      return nextLine();
    },
    close() {
      child.kill('SIGKILL');
    },
  };
}
