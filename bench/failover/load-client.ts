/**
 * Load for the failover measurement: CONCURRENCY loops that each connect to HOST:PORT, read the one-line reply
 * and close, for DURATION_MS; prints one JSON array of [epoch ms (performance.timeOrigin based, comparable across
 * processes), reply or "error:CODE"].
 * Waits for a line on stdin first (the caller moves it into the registered cgroup, then says go).
 */
import { connect } from 'node:net';

const [host = '', port = '0', concurrency = '8', durationMs = '3000'] = process.argv.slice(2);
const results: Array<[number, string]> = [];
const now = () => performance.timeOrigin + performance.now();
let started = 0;

function once(): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host, port: Number(port) });
    let data = '';
    socket.setTimeout(5000, () => socket.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    socket.on('data', (chunk) => {
      data += chunk;
      if (data.includes('\n')) {
        socket.destroy();
        resolve(data.trim());
      }
    });
    socket.on('error', (err: NodeJS.ErrnoException) => resolve(`error:${err.code ?? err.message}`));
    socket.on('close', () => resolve(data ? data.trim() : 'error:closed'));
  });
}

async function loop(end: number): Promise<void> {
  while (now() < end) {
    const at = now();
    results.push([Math.round(at * 1000) / 1000, await once()]);
  }
}

await new Promise<void>((resolve) => process.stdin.once('data', () => resolve()));
process.stdin.destroy();
started = now();
await Promise.all(Array.from({ length: Number(concurrency) }, () => loop(started + Number(durationMs))));
process.stdout.write(`${JSON.stringify(results)}\n`);
