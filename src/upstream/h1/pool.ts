import type { ConnectionOptions as TlsOptions } from 'node:tls';
import type { Dispatcher } from 'undici';
import { H1Connection, type ConnectionPool, type Origin } from './connection.ts';
import { Exchange, type ExchangeOwner } from './exchange.ts';
import { H1Error } from './errors.ts';
import type { ParserLimits } from './response-parser.ts';

export interface H1PoolOptions {
  /** Most connections open (connecting, busy or idle) at once; 0 = no limit. Requests beyond wait in a FIFO queue. */
  connections?: number;
  connectTimeoutMs?: number;
  /** How long an idle connection is kept; a server's shorter `Keep-Alive: timeout=` wins (less a second). */
  keepAliveTimeoutMs?: number;
  tls?: TlsOptions;
  limits?: ParserLimits;
}

/** A server's Keep-Alive timeout is taken this much shorter, so the client closes first rather than race the server. */
const KEEP_ALIVE_MARGIN_MS = 1_000;

/**
 * Sluice's own HTTP/1.1 client for one upstream origin (`http_client: sluice`, docs/config.md): a pool of keep-alive
 * connections with undici's dispatch protocol, so src/upstream/upstream-body.ts drives it as it drives undici's Pool.
 * - An idle connection is reused last-in first-out (the warmest socket; the others time out), and only after its
 *   previous response ended cleanly: whole, with nothing after it, not `Connection: close`, not HTTP/1.0.
 * - An idle connection the server closed, or that sent bytes nobody asked for, is dropped at once and never used.
 * - At most `connections` connections; requests beyond wait in order.
 * - One request per connection at a time (no pipelining).
 */
export class H1Pool implements ConnectionPool {
  readonly #origin: Origin;
  readonly #max: number;
  readonly #keepAliveMs: number;
  readonly #all = new Set<H1Connection>();
  /** Idle connections, most recently released last. */
  readonly #idle: H1Connection[] = [];
  readonly #queue: Exchange[] = [];
  #state: 'open' | 'closing' | 'destroyed' = 'open';
  #onEmpty: (() => void) | undefined;

  constructor(origin: string | URL, options: H1PoolOptions = {}) {
    const url = typeof origin === 'string' ? new URL(origin) : origin;
    const tls = url.protocol === 'https:';
    const port = url.port === '' ? (tls ? 443 : 80) : Number(url.port);
    this.#origin = {
      hostname: url.hostname.replace(/^\[|\]$/g, ''),
      port,
      hostHeader: url.host,
      tls,
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      tlsOptions: options.tls,
      limits: options.limits,
    };
    this.#max = options.connections ?? 0;
    this.#keepAliveMs = options.keepAliveTimeoutMs ?? 30_000;
  }

  /** Connections open now (connecting, busy or idle). */
  get connections(): number {
    return this.#all.size;
  }

  /** Idle connections kept for reuse. */
  get idle(): number {
    return this.#idle.length;
  }

  /** Requests waiting for a connection. */
  get queued(): number {
    return this.#queue.length;
  }

  /** Sends a request; `handler` gets undici's callbacks (onRequestStart first, then the response or an error). */
  dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const exchange = new Exchange(options, handler);
    exchange.start();
    if (exchange.done) return true;
    if (this.#state !== 'open') {
      exchange.fail(this.#state === 'closing' ? new H1Error('UND_ERR_CLOSED', 'The client is closed') : new H1Error('UND_ERR_DESTROYED', 'The client is destroyed'));
      return false;
    }
    if (options.upgrade !== undefined && options.upgrade !== null) {
      exchange.abort(new H1Error('UND_ERR_INVALID_ARG', 'upgrade is not supported by this client'));
      return true;
    }
    const conn = this.#takeIdle();
    if (conn !== undefined) conn.run(exchange);
    else if (this.#max === 0 || this.#all.size < this.#max) this.#open().run(exchange);
    else {
      exchange.owner = this.#queued;
      this.#queue.push(exchange);
    }
    return true;
  }

  /** Lets requests in flight and queued finish, then closes every connection. */
  close(): Promise<void> {
    if (this.#state === 'open') this.#state = 'closing';
    for (const conn of this.#idle.splice(0)) conn.destroy(new H1Error('UND_ERR_CLOSED', 'The client is closed'));
    return this.#empty();
  }

  /** Closes every connection now; requests in flight and queued fail with `err` (UND_ERR_DESTROYED by default). */
  destroy(err: Error = new H1Error('UND_ERR_DESTROYED', 'The client is destroyed')): Promise<void> {
    this.#state = 'destroyed';
    for (const exchange of this.#queue.splice(0)) exchange.fail(err);
    this.#idle.length = 0;
    for (const conn of [...this.#all]) conn.destroy(err);
    return this.#empty();
  }

  released(conn: H1Connection, keepAliveMs: number | undefined): void {
    if (this.#state === 'destroyed') return void conn.destroy(new H1Error('UND_ERR_DESTROYED', 'The client is destroyed'));
    const next = this.#nextQueued();
    if (next !== undefined) return void conn.run(next);
    if (this.#state === 'closing') return void conn.destroy(new H1Error('UND_ERR_CLOSED', 'The client is closed'));
    const ms = Math.min(this.#keepAliveMs, keepAliveMs === undefined ? Infinity : keepAliveMs - KEEP_ALIVE_MARGIN_MS);
    if (ms <= 0) return void conn.destroy(new H1Error('UND_ERR_INFO', 'keep-alive timeout'));
    this.#idle.push(conn);
    conn.idleTimer = setTimeout(() => conn.destroy(new H1Error('UND_ERR_INFO', 'idle timeout')), ms);
    conn.idleTimer.unref();
  }

  closed(conn: H1Connection): void {
    if (!this.#all.delete(conn)) return;
    const i = this.#idle.indexOf(conn);
    if (i !== -1) this.#idle.splice(i, 1);
    // A slot is free: the first request waiting gets a new connection.
    if (this.#state !== 'destroyed' && this.#queue.length > 0 && (this.#max === 0 || this.#all.size < this.#max)) {
      const next = this.#nextQueued();
      if (next !== undefined) this.#open().run(next);
    }
    if (this.#all.size === 0 && this.#queue.length === 0) this.#onEmpty?.();
  }

  #open(): H1Connection {
    const conn = new H1Connection(this.#origin, this);
    this.#all.add(conn);
    return conn;
  }

  #takeIdle(): H1Connection | undefined {
    for (;;) {
      const conn = this.#idle.pop();
      if (conn === undefined) return undefined;
      clearTimeout(conn.idleTimer);
      conn.idleTimer = undefined;
      if (conn.usable) return conn;
      conn.destroy(new H1Error('UND_ERR_SOCKET', 'other side closed'));
    }
  }

  #nextQueued(): Exchange | undefined {
    for (;;) {
      const exchange = this.#queue.shift();
      if (exchange === undefined || !exchange.done) return exchange;
    }
  }

  /** While queued: an abort takes the request out of the queue. */
  readonly #queued: ExchangeOwner = {
    abandon: (exchange) => {
      const i = this.#queue.indexOf(exchange);
      if (i !== -1) this.#queue.splice(i, 1);
    },
    pause() {},
    resume() {},
  };

  #empty(): Promise<void> {
    if (this.#all.size === 0 && this.#queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const before = this.#onEmpty;
      this.#onEmpty = () => {
        before?.();
        resolve();
      };
    });
  }
}
