import { createServer as createHttp1Server, type IncomingMessage } from 'node:http';
import { constants, createSecureServer, createServer as createH2cServer, Http2ServerRequest, type Http2Session } from 'node:http2';
import type { Server, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { HTTP1_OPTIONS } from './server.ts';
import { deferContinue } from './expect-continue.ts';
import { guardSession, HTTP2_LIMITS, type Http2Limits } from './h2-guard.ts';
import type { HttpRequest, HttpResponse } from './http-types.ts';

/** Which protocols the gateway's port speaks (config keys `tls` and `h2c`). */
export interface ListenerOptions {
  /** PEM certificate and key: HTTPS, with HTTP/2 or HTTP/1.1 chosen by ALPN. */
  tls?: { cert: Buffer; key: Buffer } | undefined;
  /** Cleartext HTTP/2 with prior knowledge, told apart from HTTP/1.1 by the connection preface. */
  h2c: boolean;
  /** Overrides of the HTTP/2 connection bounds (src/http/h2-guard.ts); the defaults suit every deployment, tests
   * shorten the timeouts. */
  http2?: Partial<Http2Limits> | undefined;
}

export type RequestHandler = (req: HttpRequest, res: HttpResponse) => void;
/** An HTTP/1.1 `Upgrade: websocket` request (WebSocket has no HTTP/2 binding here; browsers fall back to 1.1). */
export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

export interface Listener {
  /** The server that listens on the port. */
  readonly server: Server;
  readonly secure: boolean;
  /** HTTP/2 sessions open now get GOAWAY: their streams in flight go on, their clients open a new connection for the
   * next request (the first step of a shutdown; HTTP/1.1 connections get `Connection: close` on their responses). */
  goAway(): void;
  /** Stops accepting connections: idle HTTP/1.1 connections close, HTTP/2 sessions get GOAWAY; requests in flight go on. */
  stop(): void;
  /** Ends every connection still open. */
  destroyAll(): void;
}

/** The HTTP/2 connection preface (RFC 9113 §3.4): what a prior-knowledge h2c client sends first. */
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
/** A connection that has not sent enough bytes to tell its protocol within this time is dropped. */
const SNIFF_TIMEOUT_MS = 30_000;
/** After a response that refused a request body it did not read, a body declared at most this long is read and dropped
 * to keep the HTTP/1.1 connection for the next request; a longer one closes the connection instead. */
const DISCARD_BYTES = 64 * 1024;

const isWebSocketUpgrade = (req: IncomingMessage): boolean => req.headers.upgrade?.toLowerCase() === 'websocket';

/**
 * Creates the gateway's listening server for the configured protocols, all serving the same handlers:
 * - plain: HTTP/1.1;
 * - `tls`: HTTPS with ALPN `h2` and `http/1.1` (Node's HTTP/2 compatibility API; `allowHTTP1` for the rest);
 * - `h2c`: one cleartext port for HTTP/1.1 and prior-knowledge HTTP/2, routed by the first bytes of a connection.
 * WebSocket upgrades arrive over HTTP/1.1 in every mode. On cleartext ports other `Upgrade` requests (curl's `--http2`
 * asks for `h2c`) are served as plain HTTP/1.1 requests, as RFC 9110 §7.8 allows; over TLS, where HTTP/2 comes by
 * ALPN, the upgrade handler refuses them.
 */
export function createListener(options: ListenerOptions, handler: RequestHandler, onUpgrade: UpgradeHandler): Listener {
  const onRequest = guardRequest(handler);
  // `Expect: 100-continue`: no automatic 100; the body reader sends it once the request is accepted (expect-continue.ts).
  const onCheckContinue = (req: HttpRequest, res: HttpResponse): void => {
    deferContinue(req, res);
    onRequest(req, res);
  };
  const limits: Http2Limits = { ...HTTP2_LIMITS, ...options.http2 };
  const http2Options = { settings: { maxConcurrentStreams: limits.maxConcurrentStreams } };
  const sockets = new Set<Socket>();
  const sessions = new Set<Http2Session>();
  const track = (socket: Socket): void => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  };
  const trackSession = (session: Http2Session): void => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    guardSession(session, limits);
  };

  if (options.tls) {
    const server = createSecureServer(
      // The TLS handshake gets the HTTP/2 handshake's bound (Node's default is 120 s) for HTTP/1.1 and HTTP/2 alike.
      { cert: options.tls.cert, key: options.tls.key, allowHTTP1: true, handshakeTimeout: limits.handshakeTimeoutMs, ...http2Options },
      onRequest,
    );
    server.on('connection', track);
    server.on('session', trackSession);
    server.on('upgrade', onUpgrade);
    // One listener covers both protocols: Node's HTTP/1.1 code emits 'checkContinue' on this server too (allowHTTP1).
    server.on('checkContinue', onCheckContinue);
    return {
      server,
      secure: true,
      goAway() {
        for (const s of sessions) s.close();
      },
      stop() {
        server.close();
        for (const s of sessions) s.close();
      },
      destroyAll() {
        for (const s of sessions) s.destroy();
        for (const s of sockets) s.destroy();
      },
    };
  }

  const http1 = createHttp1Server({ ...HTTP1_OPTIONS, shouldUpgradeCallback: isWebSocketUpgrade }, onRequest);
  http1.on('upgrade', onUpgrade);
  http1.on('checkContinue', onCheckContinue);
  if (options.h2c) {
    const h2 = createH2cServer(http2Options, onRequest);
    h2.on('session', trackSession);
    h2.on('checkContinue', onCheckContinue);
    // The HTTP/1.1 server listens, so its connection tracking and request timeouts run as usual; its own connection
    // listener (the one Node's http.Server registers) is called only for connections that are not HTTP/2.
    const http1OnConnection = http1.listeners('connection');
    http1.removeAllListeners('connection');
    http1.on('connection', (socket: Socket) => {
      track(socket);
      sniff(socket, (isH2) => {
        if (isH2) h2.emit('connection', socket);
        else for (const l of http1OnConnection) l.call(http1, socket);
      });
    });
  } else {
    http1.on('connection', track);
  }
  return {
    server: http1,
    secure: false,
    goAway() {
      for (const s of sessions) s.close(); // HTTP/2 sessions, with --h2c only
    },
    stop() {
      http1.close();
      http1.closeIdleConnections();
      for (const s of sessions) s.close(); // HTTP/2 sessions, with --h2c only
    },
    destroyAll() {
      http1.closeAllConnections();
      for (const s of sessions) s.destroy();
      for (const s of sockets) s.destroy(); // upgraded (WebSocket) sockets are no longer the HTTP server's
    },
  };
}

/**
 * What every request gets before the handler:
 * - HTTP/1.1 bounds the time to receive a whole request (`requestTimeout`); HTTP/2 has no such setting, so a stream
 *   whose request body has not arrived within the same time is reset, as a slow-loris defence on both protocols.
 * - A response sent before the request body was read whole (a refusal: 413, 401, 404, 415…) stops the rest of it.
 *   HTTP/2: the stream is closed with RST_STREAM NO_ERROR once the response is out (RFC 9113 §8.1); Node sends the
 *   response's DATA first (Http2Stream.close waits for it). The stream's own 'finish' is the signal: the compatibility
 *   response emits 'finish' only when the stream closes. HTTP/1.1: Node would read and drop the rest to reuse the
 *   connection, however long it is; that is kept for a declared remainder of at most `DISCARD_BYTES`, and anything
 *   longer (or chunked, of unknown length) closes the connection. A refusal that says `Connection: close`
 *   (src/http/body.ts) is closed by Node anyway.
 */
function guardRequest(handler: RequestHandler): RequestHandler {
  return (req, res) => {
    if (req instanceof Http2ServerRequest) {
      if (!req.readableEnded) {
        const stream = req.stream;
        const timer = setTimeout(() => stream.close(constants.NGHTTP2_CANCEL), HTTP1_OPTIONS.requestTimeout);
        timer.unref();
        const clear = (): void => clearTimeout(timer);
        req.once('end', clear);
        res.once('close', clear);
        stream.once('finish', () => {
          if (!req.complete) stream.close(constants.NGHTTP2_NO_ERROR);
        });
      }
    } else if (!req.complete) {
      res.once('finish', () => {
        if (req.complete) return;
        const declared = Number(req.headers['content-length']);
        if (!(declared <= DISCARD_BYTES)) req.socket.destroy();
      });
    }
    handler(req, res);
  };
}

/** Reads just enough of a new connection to tell the HTTP/2 preface from HTTP/1.1, then hands the bytes back. */
function sniff(socket: Socket, route: (isH2: boolean) => void): void {
  let seen: Buffer = Buffer.alloc(0);
  const onError = (): void => void socket.destroy();
  const onData = (chunk: Buffer): void => {
    seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
    const n = Math.min(seen.length, PREFACE.length);
    const h2 = seen.subarray(0, n).equals(PREFACE.subarray(0, n));
    if (h2 && seen.length < PREFACE.length) return; // a prefix of the preface so far: wait for more
    socket.off('data', onData);
    socket.off('error', onError);
    socket.setTimeout(0);
    socket.pause();
    socket.unshift(seen);
    route(h2);
    // The HTTP servers attach their readers synchronously; let the unshifted bytes flow to them.
    process.nextTick(() => socket.resume());
  };
  socket.on('data', onData);
  socket.on('error', onError);
  socket.setTimeout(SNIFF_TIMEOUT_MS, () => socket.destroy());
}
