/**
 * Runs inside a test cgroup (the test moves this process there before it acts):
 * dials a target N times and prints JSON of what it saw.
 *   tcp HOST PORT N        -> [{ reply, peer } | { error }]
 *   udp HOST PORT N        -> [{ reply, from } | { error }]
 *   hold HOST PORT         -> keeps one connection open, echoes lines from stdin through it
 */
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { createInterface } from 'node:readline';

const [mode, host = '', portText = '0', countText = '1'] = process.argv.slice(2);
const port = Number(portText);
const count = Number(countText);

function tcpOnce(): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    let data = '';
    let peer = '';
    socket.setTimeout(3000, () => socket.destroy(new Error('timeout')));
    socket.on('connect', () => {
      peer = `${socket.remoteAddress}:${socket.remotePort}`;
    });
    // the first line is the reply: a server may keep the connection open after it
    socket.on('data', (chunk) => {
      data += chunk;
      if (!data.includes('\n')) return;
      resolve({ reply: data.trim(), peer });
      socket.destroy();
    });
    socket.on('end', () => resolve({ reply: data.trim(), peer }));
    socket.on('error', (err) => resolve({ error: (err as NodeJS.ErrnoException).code ?? err.message }));
  });
}

function udpOnce(): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    const timer = setTimeout(() => {
      socket.close();
      resolve({ error: 'timeout' });
    }, 2000);
    socket.on('message', (msg, rinfo) => {
      clearTimeout(timer);
      socket.close();
      resolve({ reply: msg.toString().trim(), from: `${rinfo.address}:${rinfo.port}` });
    });
    socket.send('ping', port, host, (err) => {
      if (!err) return;
      clearTimeout(timer);
      socket.close();
      resolve({ error: err.message });
    });
  });
}

async function hold(): Promise<void> {
  const socket = connect({ host, port });
  socket.on('connect', () => process.stdout.write('connected\n'));
  socket.on('data', (chunk) => process.stdout.write(chunk));
  socket.on('error', (err) => {
    process.stdout.write(`error ${err.message}\n`);
    process.exit(1);
  });
  for await (const line of createInterface({ input: process.stdin })) socket.write(`${line}\n`);
  socket.end();
}

// The test writes our pid into the cgroup, then a line to stdin: only then may we dial.
await new Promise<void>((resolve) => process.stdin.once('data', () => resolve()));
if (mode === 'hold') {
  await hold();
} else {
  process.stdin.destroy();
  const results: Array<Record<string, unknown>> = [];
  for (let i = 0; i < count; i++) results.push(await (mode === 'udp' ? udpOnce() : tcpOnce()));
  process.stdout.write(`${JSON.stringify(results)}\n`);
}
