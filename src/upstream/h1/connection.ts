import { connect as netConnect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions as TlsOptions } from 'node:tls';
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { ResponseParser, type ParserLimits, type ResponseHead } from './response-parser.ts';
import { H1Error, connectTimeout, socketClosed } from './errors.ts';
import type { Exchange, ExchangeOwner } from './exchange.ts';

/** Where and how a connection connects. */
export interface Origin {
  /** Host name or address (IPv6 without brackets). */
  hostname: string;
  port: number;
  /** The `host` header: host, with the port when it is not the scheme's default. */
  hostHeader: string;
  tls: boolean;
  connectTimeoutMs: number;
  /** Extra TLS options (a private CA in tests); the system's trust otherwise. */
  tlsOptions: TlsOptions | undefined;
  limits: ParserLimits | undefined;
}

/** What a connection tells its pool. */
export interface ConnectionPool {
  /** The response ended cleanly and the connection may carry another request. */
  released(conn: H1Connection, keepAliveMs: number | undefined): void;
  /** The connection is closed (or closing) and must not be used again. */
  closed(conn: H1Connection): void;
}

/**
 * One HTTP/1.1 connection to an upstream (TCP or TLS): one request at a time, no pipelining. The request's head and
 * body go out in one write; the response is parsed from the socket's 'data' events as they come (no Readable in
 * between). Backpressure is the socket's: `pause()` stops reading it (and parsing: the rest of a read waits), `resume()`
 * goes on. Any failure, an abort, or a response that did not end cleanly closes the connection.
 */
export class H1Connection implements ExchangeOwner {
  readonly #origin: Origin;
  readonly #pool: ConnectionPool;
  readonly #socket: Socket;
  readonly #parser: ResponseParser;
  #connectTimer: NodeJS.Timeout | undefined;
  #connected = false;
  #closed = false;
  #exchange: Exchange | undefined;
  /** What the current response's head said about reuse. */
  #head: ResponseHead | undefined;
  /** The current request was written whole. */
  #written = false;
  /** The response ended (set by the parser's onEnd; handled once `execute` returns). */
  #ended: IncomingHttpHeaders | undefined;
  /** The rest of a read that arrived while paused. */
  #rest: Buffer | undefined;
  #restAt = 0;
  #feeding = false;
  /** The server closed its side while a paused read was still unparsed: handled once that read is. */
  #eof = false;
  /** Idle: when the pool's idle timer closes it. */
  idleTimer: NodeJS.Timeout | undefined;

  constructor(origin: Origin, pool: ConnectionPool) {
    this.#origin = origin;
    this.#pool = pool;
    this.#parser = new ResponseParser(
      {
        onHead: (head) => {
          this.#head = head;
          return this.#exchange?.head(head.status, head.headers, head.statusText) ?? false;
        },
        onBody: (chunk) => this.#exchange?.data(chunk) ?? false,
        onEnd: (trailers) => {
          this.#ended = trailers;
        },
      },
      origin.limits,
    );
    const { hostname, port } = origin;
    const socket = origin.tls
      ? tlsConnect({ host: hostname, port, ALPNProtocols: ['http/1.1'], ...(isIP(hostname) === 0 ? { servername: hostname } : {}), ...origin.tlsOptions })
      : netConnect({ host: hostname, port });
    this.#socket = socket;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 60_000);
    socket.on(origin.tls ? 'secureConnect' : 'connect', () => this.#onConnect());
    socket.on('data', (buf: Buffer) => this.#onData(buf));
    socket.on('end', () => this.#onEof());
    socket.on('error', (err) => this.#fail(err));
    socket.on('close', () => {
      if (!(this.#eof && this.#rest !== undefined)) this.#fail(socketClosed());
    });
    if (origin.connectTimeoutMs > 0) {
      this.#connectTimer = setTimeout(() => this.#fail(connectTimeout(`${hostname}:${port}`, origin.connectTimeoutMs)), origin.connectTimeoutMs);
      this.#connectTimer.unref();
    }
  }

  /** Still usable for a new request (idle, its socket open both ways). */
  get usable(): boolean {
    const s = this.#socket;
    return !this.#closed && this.#exchange === undefined && !s.destroyed && s.writable && s.readable;
  }

  /** Sends `exchange`'s request (once connected) and parses its response. */
  run(exchange: Exchange): void {
    this.#exchange = exchange;
    exchange.owner = this;
    this.#head = undefined;
    this.#ended = undefined;
    this.#written = false;
    this.#parser.expect(exchange.options.method);
    if (this.#connected) this.#send(exchange);
  }

  /** Closes the connection; its request (if any) fails with `err`. */
  destroy(err: Error): void {
    this.#fail(err);
  }

  abandon(exchange: Exchange): void {
    if (this.#exchange !== exchange) return;
    this.#exchange = undefined;
    this.#close();
  }

  pause(): void {
    this.#socket.pause();
  }

  resume(): void {
    if (this.#closed) return;
    this.#socket.resume();
    const rest = this.#rest;
    if (rest !== undefined && !this.#feeding) {
      this.#rest = undefined;
      this.#feed(rest, this.#restAt);
      if (this.#eof && this.#rest === undefined) this.#atEof();
    }
  }

  #onConnect(): void {
    clearTimeout(this.#connectTimer);
    this.#connectTimer = undefined;
    this.#connected = true;
    const exchange = this.#exchange;
    if (exchange !== undefined) this.#send(exchange);
  }

  #send(exchange: Exchange): void {
    const { options } = exchange;
    let head: string;
    try {
      head = requestHead(options, this.#origin.hostHeader);
    } catch (err) {
      exchange.abort(err as Error);
      return;
    }
    const body = options.body;
    if (body === undefined || body === null || typeof body === 'string') {
      const length = body ? Buffer.byteLength(body) : 0;
      const bytes = `${head}content-length: ${length}\r\n\r\n${body ?? ''}`;
      this.#write(exchange, /^[\x00-\x7f]*$/.test(head) ? Buffer.from(bytes, 'utf8') : Buffer.concat([Buffer.from(head, 'latin1'), Buffer.from(bytes.slice(head.length), 'utf8')]));
    } else if (body instanceof Uint8Array) {
      this.#write(exchange, Buffer.concat([Buffer.from(`${head}content-length: ${body.byteLength}\r\n\r\n`, 'latin1'), body]));
    } else if (isReadable(body)) {
      // A body handed over as a stream (src/generation/forward.ts does so for large prompts, to free them once sent):
      // read whole, then one write, so the connection never waits on the stream mid-request.
      void readAll(body).then(
        (bytes) => {
          if (this.#exchange !== exchange) return;
          const declared = headerValue(options.headers, 'content-length');
          if (declared !== undefined && Number(declared) !== bytes.length) {
            exchange.abort(new H1Error('UND_ERR_REQ_CONTENT_LENGTH_MISMATCH', 'Request body length does not match content-length header'));
            return;
          }
          this.#write(exchange, Buffer.concat([Buffer.from(`${head}content-length: ${bytes.length}\r\n\r\n`, 'latin1'), bytes]));
        },
        (err: Error) => exchange.abort(err),
      );
    } else {
      exchange.abort(new H1Error('UND_ERR_INVALID_ARG', 'unsupported request body'));
    }
  }

  #write(exchange: Exchange, bytes: Buffer): void {
    this.#socket.write(bytes, (err) => {
      if (err === undefined || err === null) {
        if (this.#exchange === exchange) this.#written = true;
      }
    });
  }

  #onData(buf: Buffer): void {
    if (this.#exchange === undefined || this.#parser.idle) {
      // Bytes nobody asked for (on an idle connection, or after a response ended): the connection's framing is lost.
      this.#fail(new H1Error('UND_ERR_SOCKET', 'bad response'));
      return;
    }
    if (this.#rest !== undefined) {
      // A read while paused (the socket delivers what it had): kept behind the rest.
      this.#rest = Buffer.concat([this.#rest.subarray(this.#restAt), buf]);
      this.#restAt = 0;
      return;
    }
    this.#feed(buf, 0);
  }

  #feed(buf: Buffer, from: number): void {
    const exchange = this.#exchange;
    if (exchange === undefined) return;
    let at = from;
    while (at < buf.length) {
      const before = at;
      this.#feeding = true;
      try {
        at = this.#parser.execute(buf, at);
      } catch (err) {
        this.#feeding = false;
        this.#fail(err as Error);
        return;
      }
      this.#feeding = false;
      if (this.#exchange !== exchange) return; // aborted by its handler meanwhile
      if (this.#ended !== undefined) {
        this.#finish(exchange, this.#ended, at < buf.length);
        return;
      }
      if (exchange.paused && at < buf.length) {
        // Paused by the handler in the middle of a read: the rest waits for `resume()`.
        this.#rest = buf;
        this.#restAt = at;
        this.#socket.pause();
        return;
      }
      if (at === before) {
        this.#fail(new H1Error('UND_ERR_SOCKET', 'bad response'));
        return;
      }
    }
  }

  /** The response ended: reuse the connection if it ended cleanly and may be, then tell the handler. */
  #finish(exchange: Exchange, trailers: IncomingHttpHeaders, extra: boolean): void {
    const head = this.#head;
    this.#exchange = undefined;
    this.#ended = undefined;
    const reusable = !extra && !this.#eof && (this.#written || this.#socket.writableLength === 0) && head !== undefined && head.keepAlive && this.usable;
    if (reusable) {
      this.#socket.resume(); // an idle connection must notice a close or stray bytes
      this.#pool.released(this, head.keepAliveMs);
    } else this.#close();
    exchange.end(trailers);
  }

  #onEof(): void {
    this.#eof = true;
    if (this.#rest === undefined) this.#atEof();
  }

  #atEof(): void {
    const exchange = this.#exchange;
    if (exchange !== undefined && this.#parser.closeDelimited) {
      // The body ran to the close: this is its end.
      this.#parser.eof();
      this.#exchange = undefined;
      this.#close();
      exchange.end(this.#ended ?? {});
      return;
    }
    this.#fail(socketClosed());
  }

  /** The connection is over; its exchange, if any, fails with `err`. */
  #fail(err: Error): void {
    const exchange = this.#exchange;
    this.#exchange = undefined;
    this.#close();
    exchange?.fail(err);
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#rest = undefined;
    clearTimeout(this.#connectTimer);
    clearTimeout(this.idleTimer);
    this.#socket.destroy();
    this.#pool.closed(this);
  }
}

const FORBIDDEN = new Set(['host', 'connection', 'content-length', 'transfer-encoding', 'keep-alive', 'upgrade', 'expect', 'te']);
const UNSAFE = /[\r\n\0]/;

/** The request line and header lines (without content-length and the blank line). Throws on a header that could
 * split the request (CR, LF or NUL in a name or value). */
function requestHead(options: Dispatcher.DispatchOptions, hostHeader: string): string {
  const { method, path } = options;
  if (typeof path !== 'string' || path[0] !== '/' || UNSAFE.test(path) || path.includes(' ')) throw new H1Error('UND_ERR_INVALID_ARG', 'invalid request path');
  if (!/^[A-Z]+$/.test(method)) throw new H1Error('UND_ERR_INVALID_ARG', 'invalid request method');
  let host = hostHeader;
  let lines = '';
  for (const [name, value] of headerPairs(options.headers)) {
    if (UNSAFE.test(name) || UNSAFE.test(value) || name.includes(':')) throw new H1Error('UND_ERR_INVALID_ARG', `invalid request header ${JSON.stringify(name)}`);
    const lower = name.toLowerCase();
    if (lower === 'host') host = value;
    else if (!FORBIDDEN.has(lower)) lines += `${name}: ${value}\r\n`;
  }
  return `${method} ${path} HTTP/1.1\r\nhost: ${host}\r\nconnection: keep-alive\r\n${lines}`;
}

/** The request headers in any of the forms undici takes: a record, a flat [name, value, …] array, or pairs. */
function* headerPairs(headers: Dispatcher.DispatchOptions['headers']): Generator<[string, string]> {
  if (headers === undefined || headers === null) return;
  if (Array.isArray(headers)) {
    for (let i = 0; i + 1 < headers.length; i += 2) yield [String(headers[i]), String(headers[i + 1])];
    return;
  }
  const entries: Iterable<[string, unknown]> =
    typeof (headers as Iterable<unknown>)[Symbol.iterator] === 'function' ? (headers as Iterable<[string, unknown]>) : Object.entries(headers as Record<string, unknown>);
  for (const [name, value] of entries) {
    if (value === undefined || value === null) continue;
    if (Array.isArray(value)) for (const v of value) yield [name, String(v)];
    else yield [name, String(value)];
  }
}

function headerValue(headers: Dispatcher.DispatchOptions['headers'], wanted: string): string | undefined {
  for (const [name, value] of headerPairs(headers)) if (name.toLowerCase() === wanted) return value;
  return undefined;
}

function isReadable(body: unknown): body is Readable {
  return typeof body === 'object' && body !== null && typeof (body as Readable).pipe === 'function' && typeof (body as Readable)[Symbol.asyncIterator] === 'function';
}

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(parts);
}
