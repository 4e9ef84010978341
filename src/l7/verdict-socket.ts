/**
 * A loopback socket pair whose receiving end sits in a one-entry socket map: the stream
 * parser and verdict attached to that map run on whatever the daemon writes. The daemon
 * uses this to make the kernel act on its behalf, in order and without racing the
 * programs that write the same maps (drain markers, reports to outlier detection).
 */
import { connect, createServer, type Socket } from 'node:net';
import type { BpfMap } from '../runtime/bpf-map.js';
import { socketFd, u32Key } from './pool.js';

export interface VerdictSocket {
  /** What is written here reaches the map's verdict program. */
  readonly writer: Socket;
  close(): void;
}

export async function openVerdictSocket(map: BpfMap, address: string): Promise<VerdictSocket> {
  const server = createServer({ noDelay: true });
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: address, port: 0 }, resolve);
  });
  const { port } = server.address() as { port: number };
  const writer = connect({ host: address, port, noDelay: true });
  await new Promise<void>((resolve, reject) => {
    writer.once('connect', resolve);
    writer.once('error', reject);
  });
  const reader = await accepted;
  server.close();
  const fd = Buffer.alloc(8);
  fd.writeUInt32LE(socketFd(reader));
  map.update(u32Key(0), fd);
  writer.on('error', () => {});
  reader.on('error', () => {});
  return {
    writer,
    close() {
      writer.destroy();
      reader.destroy();
    },
  };
}
