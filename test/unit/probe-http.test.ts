/** The /metrics endpoint's own HTTP/1.1: what it promises to real clients, and what bad input gets (real sockets). */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { test } from 'node:test';
import { runInNewContext } from 'node:vm';
import pino from 'pino';
import { Gauge, Registry } from 'prom-client';
import { fullGc } from '../../src/probe/full-gc.js';
import { headEnd, parseHead } from '../../src/probe/http-head.js';
import { METRICS_LIMITS, type MetricsLimits, type MetricsServer, startMetricsServer } from '../../src/probe/server.js';

test('headEnd finds the blank line (CRLF or bare LF), parseHead reads what matters', () => {
  assert.equal(headEnd(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n')), -1);
  assert.equal(headEnd(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\nGET')), 27);
  assert.equal(headEnd(Buffer.from('GET / HTTP/1.1\nHost: x\n\n')), 24);
  assert.deepEqual(parseHead('GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n'), {
    method: 'GET',
    path: '/metrics',
    keepAlive: true,
    hasBody: false,
  });
  assert.deepEqual(parseHead('HEAD /metrics HTTP/1.1\r\nhost: a\r\nConnection: Keep-Alive, Close\r\n\r\n'), {
    method: 'HEAD',
    path: '/metrics',
    keepAlive: false,
    hasBody: false,
  });
  assert.equal((parseHead('GET /metrics HTTP/1.0\r\n\r\n') as { keepAlive: boolean }).keepAlive, false);
  assert.deepEqual(parseHead('POST /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n'), {
    method: 'POST',
    path: '/metrics',
    keepAlive: false,
    hasBody: true,
  });
  const bad: [string, number, string][] = [
    ['GET /metrics\r\n\r\n', 400, 'malformed request line'],
    ['GET  /metrics HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'malformed request line'],
    ['\r\n\r\n', 400, 'malformed request line'],
    ['GET /metrics HTTP/1.1\r\nHost a\r\n\r\n', 400, 'malformed header line'],
    ['GET /metrics HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n', 400, 'malformed header line'],
    ['GET /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n', 400, 'malformed Content-Length'],
    ['GET /metrics HTTP/1.1\r\n\r\n', 400, 'no Host header'],
    ['GET /metrics HTTP/2.0\r\n\r\n', 505, 'HTTP/2.0 is not supported, only HTTP/1.1 and 1.0'],
  ];
  for (const [head, status, why] of bad) assert.deepEqual(parseHead(head), { status, why }, JSON.stringify(head));
});

const silent = pino({ level: 'silent' });

async function serve(limits: MetricsLimits = METRICS_LIMITS): Promise<MetricsServer> {
  const registry = new Registry();
  new Gauge({ name: 'kmesh_test_value', help: 'a value to serve', registers: [registry] }).set(7);
  return startMetricsServer('127.0.0.1:0', registry, silent, limits);
}

/**
 * Sends `bytes` (then the FIN if `end`), and collects what the server sends until it closes the connection;
 * `closedAfter` is how long that took (ms).
 */
function exchange(port: number, bytes: string | Buffer, end = false): Promise<{ text: string; closedAfter: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const chunks: Buffer[] = [];
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(bytes);
      if (end) socket.end();
    });
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () =>
      resolve({ text: Buffer.concat(chunks).toString('latin1'), closedAfter: Date.now() - started }),
    );
  });
}

const GET = 'GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n';
const statusLines = (text: string) => text.match(/^HTTP\/1\.1 \d+ [^\r]*/gm) ?? [];

test('bad requests get their status and reason, and the connection closes', async () => {
  const server = await serve({ ...METRICS_LIMITS, keepAliveTimeoutMs: 300, checkIntervalMs: 50 });
  const { port } = server.address;
  try {
    const cases: [string | Buffer, string, string][] = [
      ['BLAH\r\n\r\n', 'HTTP/1.1 400 Bad Request', 'malformed request line'],
      ['GET /metrics HTTP/1.1\r\n\r\n', 'HTTP/1.1 400 Bad Request', 'no Host header'],
      ['GET /metrics HTTP/3.0\r\nHost: x\r\n\r\n', 'HTTP/1.1 505 HTTP Version Not Supported', 'HTTP/3.0 is not'],
      [Buffer.alloc(20_000, 'a'), 'HTTP/1.1 431 Request Header Fields Too Large', 'request head over 8192 bytes'],
      [
        `GET /metrics HTTP/1.1\r\nHost: x\r\nX: ${'b'.repeat(9000)}\r\n\r\n`,
        'HTTP/1.1 431 Request Header Fields Too Large',
        'request head over 8192 bytes',
      ],
      [`GET / HTTP/1.1\r\nHost: x\r\n\r\n`, 'HTTP/1.1 404 Not Found', 'not found: try /metrics'],
    ];
    for (const [bytes, status, why] of cases) {
      const { text, closedAfter } = await exchange(port, bytes);
      assert.equal(statusLines(text)[0], status, String(bytes).slice(0, 40));
      assert.ok(text.includes(why), text);
      // 404 keeps the connection: it closes at the keep-alive timeout; the refusals close at once.
      if (!status.includes('404')) assert.ok(closedAfter < 1000, `closed after ${closedAfter} ms`);
    }
    const posted = await exchange(port, 'POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello');
    assert.match(posted.text, /^HTTP\/1\.1 405 Method Not Allowed\r\n/);
    assert.match(posted.text, /\r\nAllow: GET, HEAD\r\n/);
    assert.match(posted.text, /\r\nConnection: close\r\n/, 'a body is never read: the connection closes');
    assert.equal((await exchange(port, GET, true)).text.match(/^HTTP\/1\.1 200 OK/)?.length, 1, 'works after');
  } finally {
    await server.close();
  }
});

test('GET and HEAD, pipelined on one kept-alive connection; a half-closed client still gets its answer', async () => {
  const limits = { ...METRICS_LIMITS, keepAliveTimeoutMs: 300, checkIntervalMs: 50 };
  const server = await serve(limits);
  const { port } = server.address;
  try {
    const head = 'HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n';
    const { text, closedAfter } = await exchange(port, GET + head + GET);
    assert.deepEqual(statusLines(text), ['HTTP/1.1 200 OK', 'HTTP/1.1 200 OK', 'HTTP/1.1 200 OK']);
    const lengths = [...text.matchAll(/\r\nContent-Length: (\d+)\r\n/g)].map((m) => Number(m[1]));
    assert.equal(lengths.length, 3);
    assert.equal(new Set(lengths).size, 1, 'HEAD says the length GET sends');
    const bodies = text.split(/HTTP\/1\.1 200 OK\r\n/).slice(1);
    assert.ok(lengths[0] && lengths[0] > 0);
    assert.match(bodies[0] ?? '', /\r\n\r\n# HELP kmesh_test_value a value to serve\n[\s\S]*^kmesh_test_value 7\n$/m);
    assert.equal(bodies[1]?.endsWith('\r\n\r\n'), true, 'HEAD sends no body');
    assert.match(text, /\r\nContent-Type: text\/plain; version=0\.0\.4; charset=utf-8\r\n/);
    assert.match(text, /\r\nDate: \w{3}, \d\d \w{3} \d{4} /);
    assert.ok(!text.includes('Connection: close'), 'HTTP/1.1 stays open');
    assert.ok(closedAfter >= 300 && closedAfter < 2000, `idle kept-alive connection closed after ${closedAfter} ms`);

    const closing = await exchange(port, 'GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.match(closing.text, /\r\nConnection: close\r\n/);
    assert.ok(closing.closedAfter < 300, `Connection: close honoured after ${closing.closedAfter} ms`);
    const old = await exchange(port, 'GET /metrics HTTP/1.0\r\n\r\n');
    assert.match(old.text, /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\nConnection: close\r\n/);
    const halfClosed = await exchange(port, GET, true);
    assert.deepEqual(statusLines(halfClosed.text), ['HTTP/1.1 200 OK']);
    assert.ok(halfClosed.closedAfter < 300);
  } finally {
    await server.close();
  }
});

test('a request head sent byte by byte is answered; a partial one gets 408 at the header timeout', async () => {
  const limits = { ...METRICS_LIMITS, headersTimeoutMs: 400, checkIntervalMs: 50 };
  const server = await serve(limits);
  const { port } = server.address;
  try {
    const trickled = await new Promise<string>((resolve, reject) => {
      const chunks: Buffer[] = [];
      const socket = connect(port, '127.0.0.1', async () => {
        for (const c of 'GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n') {
          socket.write(c);
          await new Promise((r) => setTimeout(r, 2));
        }
      });
      socket.on('data', (c) => chunks.push(c));
      socket.on('error', reject);
      socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    });
    assert.deepEqual(statusLines(trickled), ['HTTP/1.1 200 OK']);
    const partial = await exchange(port, 'GET /metrics HTTP/1.1\r\nHost');
    assert.deepEqual(statusLines(partial.text), ['HTTP/1.1 408 Request Timeout']);
    assert.ok(partial.closedAfter >= 400 && partial.closedAfter < 1500, `closed after ${partial.closedAfter} ms`);
  } finally {
    await server.close();
  }
});

test('fullGc collects what is unreachable, and leaves no gc behind for other code', async () => {
  const ref = (() => new WeakRef({ big: Buffer.alloc(1024) }))();
  await new Promise((r) => setImmediate(r)); // a WeakRef's target lives to the end of the job that made it
  fullGc();
  assert.equal(ref.deref(), undefined);
  assert.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined');
  assert.equal(runInNewContext('typeof gc'), 'undefined');
});

test('a burst of connections is followed by one full GC once the endpoint is idle', async () => {
  const lines: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => lines.push(line) });
  const limits = { ...METRICS_LIMITS, fullGcAfterConnections: 20 };
  const server = await startMetricsServer('127.0.0.1:0', new Registry(), logger, limits);
  const gcs = () => lines.filter((l) => l.includes('metrics: full GC after a burst of connections')).length;
  try {
    const burst = (n: number) => Promise.all(Array.from({ length: n }, () => exchange(server.address.port, GET, true)));
    await burst(10);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(gcs(), 0, 'not after 10 connections');
    await burst(15);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(gcs(), 1, 'once after 25');
  } finally {
    await server.close();
  }
});

test('a read of the registry that does not finish: 503 at the answer timeout, the connection closed', async () => {
  const hung = { contentType: 'text/plain', metrics: () => new Promise<string>(() => {}) } as unknown as Registry;
  const limits = { ...METRICS_LIMITS, answerTimeoutMs: 300, checkIntervalMs: 50 };
  const server = await startMetricsServer('127.0.0.1:0', hung, silent, limits);
  try {
    const { text, closedAfter } = await exchange(server.address.port, GET);
    assert.deepEqual(statusLines(text), ['HTTP/1.1 503 Service Unavailable']);
    assert.ok(text.endsWith('the response was not ready in time\n'), text);
    assert.ok(closedAfter >= 300 && closedAfter < 1500, `closed after ${closedAfter} ms`);
  } finally {
    await server.close();
  }
});
