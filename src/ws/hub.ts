import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { STATUS_CODES } from 'node:http';
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import { SluiceError } from '../errors.ts';
import type { GatewayContext } from '../generation/context.ts';
import { errorJson, wsErrorMessage } from '../openai/error-wire.ts';
import { WsChannel } from './channel.ts';
import { checkUpgrade, OriginPolicy, selectProtocol } from './handshake.ts';
import { hostRefusal } from '../auth/host-check.ts';
import type { Principal } from '../auth/key-ring.ts';
import { MuxSession } from './mux-session.ts';
import { ResponsesSession } from './responses-session.ts';
import { CLOSE, type WsSession } from './session.ts';

type SessionFactory = (ctx: GatewayContext, channel: WsChannel, principal: Principal) => WsSession;

const ENDPOINTS: Record<string, SessionFactory> = {
  '/v1/ws': (ctx, channel, principal) => new MuxSession(ctx, channel, principal),
  '/v1/responses': (ctx, channel, principal) => new ResponsesSession(ctx, channel, principal),
};

/**
 * The gateway's WebSocket endpoints: checks each upgrade (path, Origin, key) before the handshake and answers a
 * refusal as a plain HTTP error with OpenAI's JSON body; then runs the endpoint's session on the connection and keeps
 * track of it for shutdown.
 */
export class WebSocketHub {
  readonly #ctx: GatewayContext;
  readonly #wss: WebSocketServer;
  readonly #origins: OriginPolicy;
  readonly #sessions = new Map<WebSocket, WsSession>();
  #stopped = false;

  constructor(ctx: GatewayContext) {
    this.#ctx = ctx;
    const ws = ctx.config.websocket;
    this.#origins = new OriginPolicy(ws.origins ?? ctx.config.cors.origins);
    this.#wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      maxPayload: ws.max_message_bytes,
      // Compression costs CPU and latency per token message and opens the door to decompression bombs.
      perMessageDeflate: false,
      handleProtocols: (offered) => selectProtocol(offered),
    });
    this.#wss.on('headers', (headers) => headers.push(`x-sluice-gateway: ${ctx.version}`));
  }

  /** Handles an HTTP/1.1 upgrade request (wired to the listener's 'upgrade' event). */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const badHost = hostRefusal(this.#ctx.config, req.headers);
    if (badHost) return reject(socket, badHost);
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const factory = ENDPOINTS[q === -1 ? url : url.slice(0, q)];
    if (req.headers.upgrade?.toLowerCase() !== 'websocket') {
      return reject(socket, new SluiceError('SLUICE_INVALID_REQUEST', `Upgrade to '${req.headers.upgrade}' is not supported here.`, { wireCode: 'unsupported_upgrade' }));
    }
    if (factory === undefined || !this.#ctx.config.websocket.enabled) {
      const where = this.#ctx.config.websocket.enabled ? '; there are /v1/responses and /v1/ws' : ' (websocket.enabled is false)';
      return reject(socket, new SluiceError('SLUICE_NOT_FOUND', `No WebSocket endpoint at ${url}${where}.`, { wireCode: 'not_found' }));
    }
    if (this.#stopped) return reject(socket, new SluiceError('SLUICE_SHUTTING_DOWN', 'the gateway is shutting down'));
    const principal = checkUpgrade(req, this.#ctx.keys, this.#origins);
    if (principal instanceof SluiceError) return reject(socket, principal);
    this.#wss.handleUpgrade(req, socket, head, (ws) => this.#run(ws, factory, principal));
  }

  #run(ws: WebSocket, factory: SessionFactory, principal: Principal): void {
    const cfg = this.#ctx.config.websocket;
    const channel = new WsChannel(ws, { maxBufferedBytes: cfg.max_buffered_bytes, pingIntervalMs: cfg.ping_interval_ms, ticker: this.#ctx.ticker });
    const session = factory(this.#ctx, channel, principal);
    this.#sessions.set(ws, session);
    // `ws` closes the connection with 1009 by itself when a message exceeds maxPayload, before any listener could
    // answer; explain the close first (the socket is still open for sending at that moment).
    const close = ws.close.bind(ws);
    ws.close = (code?: number, reason?: string | Buffer) => {
      if (code === CLOSE.MESSAGE_TOO_BIG && reason === undefined) {
        const limit = cfg.max_message_bytes;
        channel.send(wsErrorMessage(new SluiceError('SLUICE_WS_MESSAGE_TOO_BIG', `Message exceeds the limit of ${limit} bytes (websocket.max_message_bytes).`)));
        return close(code, `message exceeds ${limit} bytes`);
      }
      return close(code, reason);
    };
    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (!channel.open) return; // closing: what the client sent after a protocol error is not acted on
      if (isBinary) {
        channel.fail(
          wsErrorMessage(new SluiceError('SLUICE_WS_INVALID_MESSAGE', 'Binary messages are not supported; send JSON text messages.')),
          CLOSE.UNSUPPORTED_DATA,
          'binary messages are not supported',
        );
        return;
      }
      // The default binaryType: a Buffer, fragments already joined.
      session.onMessage((data as Buffer).toString('utf8'));
    });
    channel.onClose(() => {
      this.#sessions.delete(ws);
      session.onClose();
    });
    if (this.#stopped) session.drain();
  }

  /** Sockets open now. */
  get size(): number {
    return this.#sessions.size;
  }

  /** Refuses new sockets; each open one refuses new work and closes (1001) once its generations have ended. */
  stop(): void {
    this.#stopped = true;
    for (const s of this.#sessions.values()) s.drain();
  }

  /** Closes every socket still open (after the drain timeout): their generations were already ended. */
  closeAll(): void {
    for (const ws of this.#sessions.keys()) ws.close(CLOSE.GOING_AWAY, 'server shutting down');
    for (const ws of this.#sessions.keys()) setTimeout(() => ws.terminate(), 1_000).unref();
  }
}

/** Refuses an upgrade with a plain HTTP response: the status and OpenAI's error body, as the HTTP endpoints do. */
function reject(socket: Duplex, err: SluiceError): void {
  const text = errorJson(err);
  const auth = err.status === 401 ? 'WWW-Authenticate: Bearer\r\n' : '';
  socket.end(
    `HTTP/1.1 ${err.status} ${STATUS_CODES[err.status] ?? ''}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\n${auth}\r\n${text}`,
  );
}
