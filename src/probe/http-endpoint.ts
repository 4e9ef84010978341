/**
 * A bounded HTTP/1.1 responder on `node:net` sockets, for one small public endpoint (/metrics): it reads
 * request heads itself and writes each response as a head and a shared body Buffer. No request or response
 * objects are made per request — with `node:http` those were the daemon's memory growth under 200
 * concurrent scrapers (docs/metrics.md). Per connection it keeps one small record; the event handlers are
 * shared by all connections (they get the socket as `this`).
 */
import type { Socket } from 'node:net';
import { dateLine, HEAD_END, headEnd, makeResponse, parseHead, type RequestHead, type Response } from './http-head.js';

/** The limits the responder enforces (the server's METRICS_LIMITS). */
export interface EndpointLimits {
  /** Connections being read at once (a turn); the rest wait, accepted but not read, in arrival order. */
  maxActive: number;
  /** A turn without a complete request head is given up after this (the connection stays open). */
  turnWithoutRequestMs: number;
  /** A connection's first request head must be complete within this of the accept. */
  headersTimeoutMs: number;
  /** A kept-alive connection's next request head must be complete within this of the last response. */
  keepAliveTimeoutMs: number;
  /** A request head over this many bytes is refused (431). */
  maxHeadBytes: number;
  /** A response not ready within this of its request is given up: 503, and the connection closed. */
  answerTimeoutMs: number;
  /** How often the timeouts above are enforced. */
  checkIntervalMs: number;
}

/**
 * What answers a request: `arrivedAt` (performance.now()) is when the request counts as arrived — a
 * connection's first request when the connection was accepted (it may have waited for its turn), a later
 * one on a kept-alive connection when its head was complete.
 */
export type Answer = (request: RequestHead, arrivedAt: number) => Response | Promise<Response>; // never rejects

interface Connection {
  phase: 'waiting' | 'reading' | 'answering' | 'closing';
  acceptedAt: number;
  /** Past this (performance.now()) the sweep closes the connection. */
  deadline: number;
  /** Holding a turn: the timer that gives it up if no head comes; null once a head came; undefined: no turn. */
  turn: NodeJS.Timeout | null | undefined;
  /** Received bytes not yet answered: an incomplete head, or requests pipelined behind the one being answered. */
  unread: Buffer | undefined;
  answered: number;
  /** The peer sent its FIN: answer what was asked, then close. */
  peerEnded: boolean;
}

const ignore = (): void => {};
const TIMED_OUT = makeResponse(408, '', Buffer.alloc(0));
const NOT_READY = makeResponse(
  503,
  'Content-Type: text/plain\r\n',
  Buffer.from('the response was not ready in time\n'),
);

export class HttpEndpoint {
  /** Called when no connection holds or waits for a turn. */
  onIdle: () => void = ignore;
  private readonly connections = new Map<Socket, Connection>();
  private readonly waiting: Socket[] = [];
  private turns = 0;
  private stopped = false;
  private offered = 0;
  private readonly sweep: NodeJS.Timeout;
  private readonly onData: (this: Socket, chunk: Buffer) => void;
  private readonly onEnd: (this: Socket) => void;
  private readonly onClose: (this: Socket) => void;
  private readonly giveUp: (socket: Socket) => void;

  constructor(
    private readonly limits: EndpointLimits,
    private readonly answer: Answer,
  ) {
    const self = this;
    this.onData = function (chunk) {
      self.received(this, chunk);
    };
    this.onEnd = function () {
      self.peerEnded(this);
    };
    this.onClose = function () {
      self.closed(this);
    };
    this.giveUp = (socket) => {
      const connection = this.connections.get(socket);
      if (connection?.turn) this.endTurn(connection);
    };
    this.sweep = setInterval(() => this.expire(), limits.checkIntervalMs).unref();
  }

  /** Connections accepted so far. */
  get accepted(): number {
    return this.offered;
  }

  /** A connection accepted paused (nothing read yet): read it now if a turn is free, else when one is. */
  offer(socket: Socket): void {
    if (this.stopped) {
      socket.destroy();
      return;
    }
    this.offered++;
    const acceptedAt = performance.now();
    this.connections.set(socket, {
      phase: 'waiting',
      acceptedAt,
      deadline: acceptedAt + this.limits.headersTimeoutMs,
      turn: undefined,
      unread: undefined,
      answered: 0,
      peerEnded: false,
    });
    socket.on('error', ignore); // a peer's reset: the connection just closes
    socket.on('close', this.onClose);
    if (this.turns < this.limits.maxActive) this.admit(socket);
    else this.waiting.push(socket);
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.sweep);
    this.waiting.length = 0;
    for (const [socket, connection] of this.connections) {
      if (connection.turn) clearTimeout(connection.turn);
      socket.destroy();
    }
    this.connections.clear();
  }

  private admit(socket: Socket): void {
    const connection = this.connections.get(socket);
    if (!connection) return;
    this.turns++;
    connection.phase = 'reading';
    connection.turn = setTimeout(this.giveUp, this.limits.turnWithoutRequestMs, socket);
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.resume();
  }

  private endTurn(connection: Connection): void {
    if (connection.turn === undefined) return;
    if (connection.turn) clearTimeout(connection.turn);
    connection.turn = undefined;
    this.turns--;
    this.next();
  }

  private next(): void {
    while (!this.stopped && this.turns < this.limits.maxActive) {
      const socket = this.waiting.shift();
      if (!socket) break;
      if (!socket.destroyed) this.admit(socket);
    }
    if (this.turns === 0 && this.waiting.length === 0) this.onIdle();
  }

  private received(socket: Socket, chunk: Buffer): void {
    const connection = this.connections.get(socket);
    if (!connection || connection.phase === 'closing') return; // after a response that closes: discarded
    const buf = connection.unread ? Buffer.concat([connection.unread, chunk]) : chunk;
    connection.unread = buf;
    if (connection.phase === 'answering') {
      socket.pause(); // pipelined: read after the response, and no more meanwhile
      return;
    }
    this.readHead(socket, connection);
  }

  /** Answers the request head in `connection.unread` if it is complete; refuses a bad or oversized one. */
  private readHead(socket: Socket, connection: Connection): void {
    const buf = connection.unread;
    if (!buf) return;
    const end = headEnd(buf);
    if (end === -1 ? buf.length > this.limits.maxHeadBytes : end > this.limits.maxHeadBytes) {
      this.refuse(socket, connection, 431, `request head over ${this.limits.maxHeadBytes} bytes`);
      return;
    }
    if (end === -1) return;
    connection.unread = end < buf.length ? buf.subarray(end) : undefined;
    const head = parseHead(buf.toString('latin1', 0, end));
    if ('why' in head) {
      this.refuse(socket, connection, head.status, head.why);
      return;
    }
    if (connection.turn) {
      clearTimeout(connection.turn);
      connection.turn = null; // the turn lasts until the response is sent
    }
    connection.phase = 'answering';
    connection.deadline = performance.now() + this.limits.answerTimeoutMs;
    const arrivedAt = connection.answered++ === 0 ? connection.acceptedAt : performance.now();
    const response = this.answer(head, arrivedAt);
    if (response instanceof Promise) response.then((r) => this.respond(socket, connection, head, r));
    else this.respond(socket, connection, head, response);
  }

  private respond(socket: Socket, connection: Connection, request: RequestHead, response: Response): void {
    if (socket.destroyed || this.stopped || connection.phase !== 'answering') return; // else timed out
    const keepAlive = request.keepAlive && !connection.peerEnded;
    const sent = [response.head, dateLine(), keepAlive ? HEAD_END.keepAlive : HEAD_END.close];
    if (request.method !== 'HEAD' && response.body.length > 0) sent.push(response.body);
    if (!keepAlive) {
      this.close(socket, connection, sent);
      return;
    }
    socket.cork();
    for (const buf of sent) socket.write(buf);
    socket.uncork();
    connection.phase = 'reading';
    connection.deadline = performance.now() + this.limits.keepAliveTimeoutMs;
    this.endTurn(connection);
    if (connection.unread) {
      socket.resume();
      this.readHead(socket, connection);
    }
  }

  private refuse(socket: Socket, connection: Connection, status: number, why: string): void {
    const response = makeResponse(status, 'Content-Type: text/plain\r\n', Buffer.from(`${why}\n`));
    this.close(socket, connection, [response.head, dateLine(), HEAD_END.close, response.body]);
  }

  /**
   * Sends the last bytes and the FIN, and frees the socket once they are written, as node:http does: not
   * waiting for the peer's FIN keeps the connection cap free for the next burst of scrapers. What the peer
   * sends meanwhile is dropped.
   */
  private close(socket: Socket, connection: Connection, last: Buffer[]): void {
    connection.phase = 'closing';
    connection.unread = undefined;
    connection.deadline = performance.now() + this.limits.checkIntervalMs;
    socket.once('finish', socket.destroy);
    socket.cork();
    for (const buf of last) socket.write(buf);
    socket.end();
    socket.uncork();
    this.endTurn(connection);
  }

  private peerEnded(socket: Socket): void {
    const connection = this.connections.get(socket);
    if (!connection) return;
    connection.peerEnded = true;
    // Reading: no complete request, nothing to answer. Answering: the response closes. Closing: it frees itself.
    if (connection.phase === 'reading') socket.destroy();
  }

  private closed(socket: Socket): void {
    const connection = this.connections.get(socket);
    if (!connection) return;
    this.connections.delete(socket);
    this.endTurn(connection);
  }

  /**
   * Closes what has no complete request head in time — with a 408 if part of one was read (as node:http
   * did), at once if it still waited for its turn or idled kept alive between requests — and what waits for
   * a response too long (503).
   */
  private expire(): void {
    const now = performance.now();
    for (const [socket, connection] of this.connections) {
      if (connection.deadline > now) continue;
      if (connection.phase === 'answering') {
        this.close(socket, connection, [NOT_READY.head, dateLine(), HEAD_END.close, NOT_READY.body]);
        continue;
      }
      const partRead = connection.phase === 'reading' && (connection.answered === 0 || connection.unread);
      if (partRead) this.close(socket, connection, [TIMED_OUT.head, dateLine(), HEAD_END.close]);
      else socket.destroy();
    }
  }
}
