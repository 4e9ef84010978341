/** Backends that fail the ways a real one does: refusing, resetting, and blackholing SYNs. */
import { spawn } from 'node:child_process';
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { Backends } from './peers.js';

/**
 * Listens, retrying while the port is taken: ports 34000-34999 lie in the ephemeral range, so another
 * process's client socket may hold one, in TIME_WAIT up to 60 s.
 */
async function listenOn(server: Server, host: string, port: number): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 70) throw err;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

/** Answers every connection with its name and closes (as peers.ts tcpBackends, retrying a taken port). */
export async function replyingBackends(ports: number[], host: string): Promise<Backends> {
  const servers: Server[] = [];
  for (const port of ports) {
    const server = createServer((socket) => socket.end(`${port}\n`));
    await listenOn(server, host, port);
    servers.push(server);
  }
  return {
    close: () =>
      Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())))).then(() => undefined),
  };
}

/** Greets every connection with its name and keeps it open (held connections count as active). */
export async function greetingBackend(name: string, host: string, port: number): Promise<Backends> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.write(`${name}\n`);
  });
  await listenOn(server, host, port);
  return {
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Accepts and resets every connection (RST right after the handshake). */
export async function resettingBackend(host: string, port: number): Promise<Backends> {
  const server = createServer((socket) => socket.resetAndDestroy());
  await listenOn(server, host, port);
  return { close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/**
 * A listener whose accept queue is full and never drained: the kernel drops every further SYN, so a
 * connect to it hangs in SYN_SENT (a SYN blackhole on loopback, no firewall rule needed). A child
 * process listens with backlog 1 (Node takes 0 for its default) and blocks its event loop; two
 * connections from here fill the queue.
 */
export async function synBlackhole(host: string, port: number): Promise<Backends> {
  const code = `require('node:net').createServer().listen({ host: ${JSON.stringify(host)}, port: ${port}, backlog: 1 }, () => {
    process.stdout.write('ready\\n');
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
  });`;
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (c) => reject(new Error(`blackhole listener exited ${c}`)));
    child.stdout.once('data', () => resolve());
  });
  const fill = (): Promise<Socket> =>
    new Promise((resolve, reject) => {
      const s = connect({ host, port }, () => resolve(s));
      s.once('error', reject);
    });
  const fillers = [await fill(), await fill()];
  return {
    close: async () => {
      for (const s of fillers) s.destroy();
      child.kill('SIGKILL');
    },
  };
}
