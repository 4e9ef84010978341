/**
 * Guest client: dials the VIP over TCP, unconnected UDP (sendmsg hook) and connected
 * UDP (connect + recvmsg hooks), and sends one HTTP request with x-canary: 1 to the
 * http listener (L7 VIP, same port); prints one JSON line with what answered.
 * usage: node client.js VIP PORT L7VIP   (run by daemon-check.ts inside a chosen cgroup;
 * answers each "check" line on stdin)
 */
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';

interface Answer {
  reply?: string;
  peer?: string;
  error?: string;
}

const TIMEOUT_MS = 4000;

function tcp(host: string, port: number, request = 'ping\n'): Promise<Answer> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    let data = '';
    let peer = '';
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ error: 'timeout', reply: data });
    }, TIMEOUT_MS);
    s.on('connect', () => {
      peer = `${s.remoteAddress}:${s.remotePort}`;
      s.write(request);
    });
    s.on('data', (d) => {
      data += d.toString();
    });
    s.on('end', () => {
      clearTimeout(timer);
      resolve({ reply: data.trim(), peer });
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      resolve({ error: (e as NodeJS.ErrnoException).code ?? e.message });
    });
  });
}

function udp(host: string, port: number, connected: boolean): Promise<Answer> {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    const timer = setTimeout(() => {
      s.close();
      resolve({ error: 'timeout' });
    }, TIMEOUT_MS);
    s.on('message', (msg, rinfo) => {
      clearTimeout(timer);
      s.close();
      resolve({ reply: msg.toString().trim(), peer: `${rinfo.address}:${rinfo.port}` });
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      s.close();
      resolve({ error: (e as NodeJS.ErrnoException).code ?? e.message });
    });
    if (connected) {
      s.connect(port, host, () => s.send('ping'));
    } else {
      s.send('ping', port, host);
    }
  });
}

/**
 * Agent mode: one process per cgroup for the whole guest run (node starts slowly
 * under TCG). Each "check" line on stdin runs the three dials and answers with one
 * JSON line; the sockets are new each time, so the cgroup's current programs apply.
 */
async function main(): Promise<void> {
  if (process.env.KMESH_GUEST !== '1') return;
  const [host = '127.10.0.5', portText = '9080', l7Host = '127.10.0.6'] = process.argv.slice(2);
  const port = Number(portText);
  const check = async () => ({
    tcp: await tcp(host, port),
    udp: await udp(host, port, false),
    udpConnected: await udp(host, port, true),
    l7: await tcp(l7Host, port, 'GET / HTTP/1.1\r\nHost: vip\r\nx-canary: 1\r\nConnection: close\r\n\r\n'),
  });
  process.stdout.write('ready\n');
  let pending = '';
  for await (const chunk of process.stdin) {
    pending += chunk.toString();
    let nl = pending.indexOf('\n');
    while (nl >= 0) {
      const cmd = pending.slice(0, nl).trim();
      pending = pending.slice(nl + 1);
      if (cmd === 'check') process.stdout.write(`${JSON.stringify(await check())}\n`);
      nl = pending.indexOf('\n');
    }
  }
}

await main();
