/** HTTP backends on loopback and clients run inside a test cgroup, for the L7 tests. */
import { execFile, spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';

export interface HttpBackends {
  /** Sockets accepted per backend name. */
  accepted: Map<string, number>;
  /** Sockets the backends hold open now. */
  open(): number;
  /** Closes every open connection of the backends (as a server restart would). */
  dropConnections(): void;
  close(): Promise<void>;
}

/**
 * Each backend answers `<name> <method> <path>` (keep-alive); `/big/<n>` answers n bytes,
 * `/reset` resets the connection, `/close` answers and closes; a path containing `/fail-on/<name>`
 * is answered 503 by the backend of that name (200 by the others). Request bodies are read and
 * their length reported. `host`: an address of the test's own 127.x range (fixed ports on
 * 127.0.0.1 can be taken as ephemeral ports by anything else).
 */
export async function httpBackends(
  list: Array<{ name: string; port: number }>,
  host = '127.0.0.1',
): Promise<HttpBackends> {
  const servers: Server[] = [];
  const sockets = new Set<Socket>();
  const accepted = new Map<string, number>();
  for (const b of list) {
    const server = createServer((req, res) => {
      let body = 0;
      req.on('data', (c: Buffer) => {
        body += c.length;
      });
      req.on('end', () => {
        const path = req.url ?? '';
        if (path === '/reset') {
          req.socket.resetAndDestroy();
          return;
        }
        if (path.startsWith('/big/')) {
          const n = Number(path.slice(5));
          res.writeHead(200, { 'content-length': n, 'x-backend': b.name });
          res.end(Buffer.alloc(n, 'x'));
          return;
        }
        if (path === '/close') res.setHeader('connection', 'close');
        const text = `${b.name} ${req.method} ${path}${body ? ` body=${body}` : ''}\n`;
        const status = /\/fail-on\/([^/?]+)/.exec(path)?.[1] === b.name ? 503 : 200;
        res.writeHead(status, { 'content-type': 'text/plain', 'x-backend': b.name });
        res.end(text);
      });
    });
    server.keepAliveTimeout = 30_000;
    server.on('connection', (s: Socket) => {
      accepted.set(b.name, (accepted.get(b.name) ?? 0) + 1);
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(b.port, host, resolve);
    });
    servers.push(server);
  }
  return {
    accepted,
    open: () => sockets.size,
    dropConnections: () => {
      for (const s of sockets) s.destroy();
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    },
  };
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command as a process of `cgroup` (it moves itself in before exec). */
export function runIn(cgroup: string, cmd: string, args: string[], timeoutMs = 20_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup, cmd, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => {
      stdout += c;
    });
    child.stderr.on('data', (c) => {
      stderr += c;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Runs a command outside any test cgroup. */
export function run(cmd: string, args: string[]): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 20_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}
