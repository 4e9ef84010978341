/**
 * An HTTP client process for the L7 tests (run inside a test cgroup). argv: mode, JSON
 * options; prints one JSON result.
 *  keepalive {url, requests: [{path, headers}]}: one keep-alive agent, one socket, in order.
 *  many {url, count, headers, concurrency}: `count` requests, each on a new connection, `concurrency`
 *    at a time (default 1); tallies x-backend.
 *  raw {host, port, chunks: [text], gapMs}: writes the chunks apart, prints what came back and whether EOF came.
 *  keyed {url, path, keys: [headers], count}: for each header set, `count` requests on new connections, one at a
 *    time; the x-backend values that answered each set, in order.
 *  breaker {url, path, hold, gapMs, retries}: `hold` requests, each on a keep-alive connection of its own that
 *    stays open; after gapMs one more on a new connection (its status, x-envoy-overloaded and time); the held
 *    ones' outcomes; then, held connections closed, a new request until it gets a 200 (at most `retries` tries).
 *  load {url, ms, keepalive: {count, headers}, fresh: {count, headers}}: for `ms`, `keepalive.count` loops of
 *    requests each on its own keep-alive connection and `fresh.count` loops of a new connection per request;
 *    answers by x-backend per kind, errors by message, and the connections the keep-alive loops opened.
 */
import { Agent, request } from 'node:http';
import { connect } from 'node:net';

const [mode, json] = process.argv.slice(2);
const opts = JSON.parse(json ?? '{}');

interface Answer {
  status: number;
  body: string;
  backend: string;
  overloaded: boolean;
}

function get(url: string, path: string, headers: Record<string, string>, agent: Agent | false) {
  return new Promise<Answer>((resolve, reject) => {
    const req = request(`${url}${path}`, { agent, headers }, (res) => {
      let body = '';
      res.on('data', (c) => {
        body += c;
      });
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          body,
          backend: String(res.headers['x-backend']),
          overloaded: res.headers['x-envoy-overloaded'] === 'true',
        }),
      );
    });
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

async function main(): Promise<unknown> {
  if (mode === 'keepalive') {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const out = [];
    for (const r of opts.requests) out.push((await get(opts.url, r.path, r.headers ?? {}, agent)).body.trim());
    agent.destroy();
    return out;
  }
  if (mode === 'many') {
    const tally: Record<string, number> = {};
    let next = 0;
    const loop = async () => {
      while (next++ < opts.count) {
        try {
          const r = await get(opts.url, opts.path ?? '/', opts.headers ?? {}, false);
          tally[r.backend] = (tally[r.backend] ?? 0) + 1;
        } catch (err) {
          const key = `error:${(err as Error).message}`;
          tally[key] = (tally[key] ?? 0) + 1;
        }
      }
    };
    await Promise.all(Array.from({ length: opts.concurrency ?? 1 }, loop));
    return tally;
  }
  if (mode === 'keyed') {
    const out: string[][] = [];
    for (const headers of opts.keys as Array<Record<string, string>>) {
      const seen: string[] = [];
      for (let i = 0; i < (opts.count ?? 1); i++) {
        seen.push(
          await get(opts.url, opts.path ?? '/', headers, false).then(
            (r) => r.backend,
            (e) => `error:${e.message}`,
          ),
        );
      }
      out.push(seen);
    }
    return out;
  }
  if (mode === 'breaker') {
    const outcome = (p: Promise<Answer>) =>
      p.then(
        (r) => `${r.status}${r.overloaded ? ' overloaded' : ''}`,
        (e: Error) => `error:${e.message}`,
      );
    const agents = Array.from({ length: opts.hold }, () => new Agent({ keepAlive: true, maxSockets: 1 }));
    const held = agents.map((agent) => outcome(get(opts.url, opts.path, {}, agent)));
    await new Promise((r) => setTimeout(r, opts.gapMs));
    const start = Date.now();
    const over = await outcome(get(opts.url, opts.path, {}, false));
    const overMs = Date.now() - start;
    const heldOutcomes = await Promise.all(held);
    for (const agent of agents) agent.destroy();
    let after = '';
    for (let i = 0; i < (opts.retries ?? 0) && !after.startsWith('200'); i++) {
      await new Promise((r) => setTimeout(r, 100));
      after = await outcome(get(opts.url, opts.path, {}, false));
    }
    return { held: heldOutcomes, over, overMs, after };
  }
  if (mode === 'load') {
    const end = Date.now() + opts.ms;
    const tally: Record<string, number> = {};
    const add = (key: string) => {
      tally[key] = (tally[key] ?? 0) + 1;
    };
    const sockets = new Set<unknown>();
    const loop = async (kind: string, headers: Record<string, string>, agent: Agent | false) => {
      while (Date.now() < end) {
        try {
          const r = await get(opts.url, '/', headers, agent);
          add(r.status === 200 ? `${kind}:${r.backend}` : `${kind}:status ${r.status}`);
        } catch (err) {
          add(`error:${kind}:${(err as Error).message}`);
        }
      }
    };
    const agents = Array.from({ length: opts.keepalive.count }, () => {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      agent.on('free', (socket) => sockets.add(socket));
      return agent;
    });
    await Promise.all([
      ...agents.map((agent) => loop('keepalive', opts.keepalive.headers ?? {}, agent)),
      ...Array.from({ length: opts.fresh.count }, () => loop('fresh', opts.fresh.headers ?? {}, false)),
    ]);
    for (const agent of agents) agent.destroy();
    return { tally, keepaliveConnections: sockets.size };
  }
  if (mode === 'raw') {
    return new Promise((resolve) => {
      const socket = connect(opts.port, opts.host);
      let data = '';
      let eof = false;
      const done = (error?: string) => resolve({ data, eof, ...(error ? { error } : {}) });
      const timer = setTimeout(() => {
        socket.destroy();
        done('timeout');
      }, opts.timeoutMs ?? 3000);
      socket.on('data', (c) => {
        data += c;
      });
      socket.on('end', () => {
        eof = true;
        clearTimeout(timer);
        done();
      });
      socket.on('error', (err) => {
        clearTimeout(timer);
        done(err.message);
      });
      socket.on('connect', async () => {
        for (const [i, chunk] of (opts.chunks as string[]).entries()) {
          if (i > 0) await new Promise((r) => setTimeout(r, opts.gapMs ?? 50));
          socket.write(chunk);
        }
        if (opts.halfClose) socket.end();
      });
    });
  }
  throw new Error(`unknown mode ${mode}`);
}

main().then(
  (r) => console.log(JSON.stringify(r)),
  (err) => {
    console.log(JSON.stringify({ error: (err as Error).message }));
  },
);
