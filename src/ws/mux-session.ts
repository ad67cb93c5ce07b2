import { SluiceError } from '../errors.ts';
import type { Principal } from '../auth/key-ring.ts';
import type { GatewayContext } from '../generation/context.ts';
import { wsErrorMessage } from '../openai/error-wire.ts';
import type { WsChannel } from './channel.ts';
import { startWsGeneration, type WsGeneration } from './start-generation.ts';
import type { WsFraming } from './ws-writer.ts';
import { CLOSE, parseClientMessage, type WsSession } from './session.ts';

/** The syntax of a request id (as `X-Request-Id`, src/http/server.ts). */
const REQUEST_ID = /^[\w.:\-]{1,128}$/;

/** The endpoints a `create` message may name, with the stream each one relays. */
const ENDPOINTS: Record<string, 'chat' | 'completion'> = {
  '/v1/chat/completions': 'chat',
  '/v1/completions': 'completion',
};

const MAX_ID_LENGTH = 256;

/** Messages of one generation: the SSE stream's JSON objects, spliced in unparsed (docs/websocket.md). */
function muxFraming(id: string): WsFraming {
  const head = `{"id":${JSON.stringify(id)},"type":`;
  return {
    data: (json) => `${head}"chunk","data":${json}}`,
    named: (event, json) => `${head}"chunk","event":${JSON.stringify(event)},"data":${json}}`,
    done: () => `${head}"done"}`,
    error: (err) => errorMessage(err, id),
    cancelled: () => `${head}"cancelled"}`,
  };
}

const errorMessage = (err: SluiceError, id: string | undefined): string => wsErrorMessage(err, id === undefined ? {} : { id });

/**
 * `/v1/ws`: Sluice's multiplexed protocol for chat and completions (docs/websocket.md). A client runs several
 * generations at once on one socket, each under an id it chose; chunks carry the same JSON objects as the SSE
 * stream; `cancel` aborts one upstream; closing the socket aborts them all.
 */
export class MuxSession implements WsSession {
  readonly #ctx: GatewayContext;
  readonly #channel: WsChannel;
  readonly #max: number;
  readonly #streams = new Map<string, WsGeneration>();
  #draining = false;

  /** Who opened the socket: each generation checks the key again (revoked keys stop at the next one). */
  readonly #principal: Principal;

  constructor(ctx: GatewayContext, channel: WsChannel, principal: Principal) {
    this.#ctx = ctx;
    this.#principal = principal;
    this.#channel = channel;
    this.#max = ctx.config.websocket.max_concurrent_per_connection;
  }

  get active(): number {
    return this.#streams.size;
  }

  onMessage(text: string): void {
    const msg = parseClientMessage(text);
    if (msg instanceof SluiceError) {
      this.#channel.fail(errorMessage(msg, undefined), CLOSE.INVALID_PAYLOAD, 'invalid message');
      return;
    }
    const rawId = msg['id'];
    const id = typeof rawId === 'string' && rawId.length > 0 && rawId.length <= MAX_ID_LENGTH ? rawId : undefined;
    switch (msg['type']) {
      case 'create':
        return this.#create(msg, id, rawId);
      case 'cancel':
        return this.#cancel(id, rawId);
      case 'ping':
        return this.#channel.send('{"type":"pong"}');
      default:
        this.#reply(
          new SluiceError('SLUICE_WS_UNKNOWN_MESSAGE_TYPE', `Unknown message type ${JSON.stringify(msg['type'])}; expected 'create', 'cancel' or 'ping'.`, { param: 'type' }),
          id,
        );
    }
  }

  #create(msg: Record<string, unknown>, id: string | undefined, rawId: unknown): void {
    if (id === undefined) return this.#reply(badId(rawId), undefined);
    if (this.#streams.has(id)) {
      return this.#reply(new SluiceError('SLUICE_WS_DUPLICATE_ID', `A generation with id '${id}' is already running on this connection.`, { param: 'id' }), id);
    }
    if (this.#draining) return this.#reply(new SluiceError('SLUICE_SHUTTING_DOWN', 'the gateway is shutting down; open a new connection'), id);
    if (this.#streams.size >= this.#max) {
      return this.#reply(
        new SluiceError('SLUICE_WS_TOO_MANY_GENERATIONS', `This connection already runs ${this.#max} generations, its limit; wait for one to end or open another connection.`),
        id,
      );
    }
    const endpoint = msg['endpoint'] ?? '/v1/chat/completions';
    const kind = typeof endpoint === 'string' ? ENDPOINTS[endpoint] : undefined;
    if (kind === undefined) {
      return this.#reply(
        new SluiceError('SLUICE_INVALID_REQUEST', `Unknown endpoint ${JSON.stringify(endpoint)}; expected '/v1/chat/completions' or '/v1/completions'.`, { param: 'endpoint' }),
        id,
      );
    }
    const body = msg['body'];
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      return this.#reply(new SluiceError('SLUICE_INVALID_REQUEST', "The 'body' of a create message must be the request's JSON object.", { param: 'body' }), id);
    }
    // A create refused at once (an invalid body) ends inside this call, before `g` is assigned: its error message
    // went out through the writer, and nothing is registered.
    let g: WsGeneration | undefined;
    g = startWsGeneration(this.#ctx, {
      kind,
      path: endpoint as string,
      body: body as Record<string, unknown>,
      channel: this.#channel,
      principal: this.#principal,
      framing: muxFraming(id),
      // As `X-Request-Id` over HTTP: a valid one names the generation in logs and upstream, else a new one is made.
      requestId: typeof msg['request_id'] === 'string' && REQUEST_ID.test(msg['request_id']) ? msg['request_id'] : undefined,
      onEnd: () => {
        if (g !== undefined && this.#streams.get(id) === g) this.#streams.delete(id);
        if (this.#draining && this.#streams.size === 0) this.#channel.close(CLOSE.GOING_AWAY, 'server shutting down');
      },
    });
    if (!g.writer.closed) this.#streams.set(id, g);
  }

  #cancel(id: string | undefined, rawId: unknown): void {
    if (id === undefined) return this.#reply(badId(rawId), undefined);
    const g = this.#streams.get(id);
    if (g === undefined) {
      return this.#reply(new SluiceError('SLUICE_WS_UNKNOWN_ID', `No generation with id '${id}' is running on this connection (it may have ended).`, { param: 'id' }), id);
    }
    g.writer.cancel();
    g.gen.cancel(); // aborts the upstream request; the writer answers `cancelled`
  }

  #reply(err: SluiceError, id: string | undefined): void {
    this.#channel.send(errorMessage(err, id));
  }

  onClose(): void {
    for (const g of [...this.#streams.values()]) g.gen.cancel();
    this.#streams.clear();
  }

  drain(): void {
    this.#draining = true;
    if (this.#streams.size === 0) this.#channel.close(CLOSE.GOING_AWAY, 'server shutting down');
  }
}

const badId = (rawId: unknown): SluiceError =>
  new SluiceError(
    'SLUICE_WS_INVALID_MESSAGE',
    rawId === undefined ? "Missing 'id': every create and cancel names its generation." : `Invalid 'id': a string of 1 to ${MAX_ID_LENGTH} characters is required.`,
    { param: 'id' },
  );
