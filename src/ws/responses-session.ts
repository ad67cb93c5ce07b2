import { SluiceError } from '../errors.ts';
import type { Principal } from '../auth/key-ring.ts';
import type { GatewayContext } from '../generation/context.ts';
import { wsErrorMessage } from '../openai/error-wire.ts';
import type { WsChannel } from './channel.ts';
import { startWsGeneration, type WsGeneration } from './start-generation.ts';
import type { WsFraming } from './ws-writer.ts';
import { CLOSE, parseClientMessage, type WsSession } from './session.ts';

/** Adds `"stream_id"` to an event's JSON object without parsing it (OpenAI echoes the lane a response runs on). */
function withStreamId(json: string, field: string | undefined): string {
  if (field === undefined || json.charCodeAt(0) !== 0x7b) return json;
  return json.charCodeAt(1) === 0x7d ? `{${field}}` : `{${field},${json.slice(1)}`;
}

/** OpenAI's WebSocket error event for a request refused before its stream started (it carries an HTTP status). */
const refusal = (err: SluiceError, streamId: string | undefined): string => wsErrorMessage(err, streamId === undefined ? {} : { stream_id: streamId });

function responsesFraming(streamId: string | undefined): WsFraming {
  const field = streamId === undefined ? undefined : `"stream_id":${JSON.stringify(streamId)}`;
  return {
    // Each SSE event's data is already the event object with its `type`: it is the WebSocket message as it is.
    data: (json) => withStreamId(json, field),
    named: (_event, json) => withStreamId(json, field),
    done: () => undefined,
    // After the stream started, the relay's in-band `error` event (the SSE stream's own) is sent instead.
    error: (err, opened) => (opened ? undefined : refusal(err, streamId)),
    cancelled: () => undefined,
  };
}

interface Pending {
  body: Record<string, unknown>;
  streamId: string | undefined;
}

/**
 * `/v1/responses` in OpenAI's WebSocket mode: each `response.create` carries the usual Responses body (without
 * `stream`, which is implied); the answer is the same events the SSE stream carries, one JSON message each. Responses
 * run one at a time per connection, in order; a `response.create` sent while one runs waits its turn (OpenAI runs
 * the requests of one `stream_id` lane FIFO; Sluice runs every lane as one). Closing the socket aborts the response.
 */
export class ResponsesSession implements WsSession {
  readonly #ctx: GatewayContext;
  readonly #channel: WsChannel;
  readonly #max: number;
  readonly #queue: Pending[] = [];
  #current: WsGeneration | undefined;
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
    return this.#queue.length + (this.#current ? 1 : 0);
  }

  onMessage(text: string): void {
    const msg = parseClientMessage(text);
    if (msg instanceof SluiceError) {
      this.#channel.fail(refusal(msg, undefined), CLOSE.INVALID_PAYLOAD, 'invalid message');
      return;
    }
    const { type, stream_id: sid, ...body } = msg;
    const streamId = typeof sid === 'string' ? sid : undefined;
    if (type !== 'response.create') {
      return this.#refuse(
        new SluiceError('SLUICE_WS_UNKNOWN_MESSAGE_TYPE', `Unsupported event type ${JSON.stringify(type)}: this endpoint accepts 'response.create'.`, { param: 'type', wireCode: 'unsupported_event_type' }),
        streamId,
      );
    }
    if (body['background'] === true) {
      return this.#refuse(new SluiceError('SLUICE_INVALID_REQUEST', "'background' is not supported in WebSocket mode.", { param: 'background', wireCode: 'unsupported_parameter' }), streamId);
    }
    if (this.#draining) return this.#refuse(new SluiceError('SLUICE_SHUTTING_DOWN', 'the gateway is shutting down; open a new connection'), streamId);
    if (this.active >= this.#max) {
      return this.#refuse(
        new SluiceError('SLUICE_WS_TOO_MANY_GENERATIONS', `This connection already has ${this.#max} responses running or waiting, its limit.`),
        streamId,
      );
    }
    this.#queue.push({ body, streamId });
    this.#next();
  }

  #next(): void {
    while (this.#current === undefined && this.#queue.length > 0 && this.#channel.open) {
      const p = this.#queue.shift() as Pending;
      // A request refused at once (an invalid body) ends inside this call, before `g` is assigned: its refusal went
      // out through the writer, and the loop goes on with the next one.
      let g: WsGeneration | undefined;
      g = startWsGeneration(this.#ctx, {
        kind: 'responses',
        path: '/v1/responses',
        body: p.body,
        channel: this.#channel,
      principal: this.#principal,
        framing: responsesFraming(p.streamId),
        onEnd: () => {
          if (g === undefined || this.#current !== g) return;
          this.#current = undefined;
          if (this.#draining && this.active === 0) this.#channel.close(CLOSE.GOING_AWAY, 'server shutting down');
          else this.#next();
        },
      });
      if (!g.writer.closed) this.#current = g;
    }
  }

  #refuse(err: SluiceError, streamId: string | undefined): void {
    this.#channel.send(refusal(err, streamId));
  }

  onClose(): void {
    this.#queue.length = 0;
    const g = this.#current;
    this.#current = undefined;
    g?.gen.cancel();
  }

  drain(): void {
    this.#draining = true;
    for (const p of this.#queue.splice(0)) this.#refuse(new SluiceError('SLUICE_SHUTTING_DOWN', 'the gateway is shutting down; open a new connection'), p.streamId);
    if (this.active === 0) this.#channel.close(CLOSE.GOING_AWAY, 'server shutting down');
  }
}
