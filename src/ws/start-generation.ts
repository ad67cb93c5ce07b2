import { newRequestId } from '../http/request-id.ts';
import { toSluiceError, type SluiceError } from '../errors.ts';
import type { GatewayContext } from '../http/context.ts';
import { logWhenDone, newLogEntry, routeRequest, startStream } from '../http/generate.ts';
import { validateRequest } from '../openai/request.ts';
import type { StreamKind, StreamRelay } from '../relay/stream-relay.ts';
import type { WsChannel } from './channel.ts';
import { WsStreamWriter, type WsFraming } from './ws-writer.ts';

export interface WsGeneration {
  relay: StreamRelay;
  writer: WsStreamWriter;
}

/**
 * Starts one streamed generation asked for over a WebSocket: the same validation, routing, relay and log line as the
 * HTTP endpoints, with a WebSocket writer. Returns the error instead when the request is refused before it starts
 * (invalid body, unknown model); the caller reports it in its protocol's terms.
 */
export function startWsGeneration(
  ctx: GatewayContext,
  g: { kind: StreamKind; path: string; body: Record<string, unknown>; channel: WsChannel; framing: WsFraming; onEnd: () => void },
): WsGeneration | SluiceError {
  const id = newRequestId();
  const entry = newLogEntry({ id, method: 'WS', path: g.path, startedPerf: performance.now() });
  const done = logWhenDone(ctx, entry, performance.now());
  entry.stream = true;
  let parsed;
  let routed;
  try {
    // Over a WebSocket every generation streams, whatever the body says.
    parsed = validateRequest(g.kind, { ...g.body, stream: true });
    entry.model = parsed.model;
    routed = routeRequest(ctx, parsed, id);
  } catch (err) {
    const e = toSluiceError(err);
    entry.outcome = 'rejected';
    entry.status = e.status;
    entry.error_code = e.code;
    done();
    return e;
  }
  const writer = new WsStreamWriter(g.channel, g.framing, g.onEnd);
  const relay = startStream(ctx, g.kind, parsed, routed, writer, entry, done);
  return { relay, writer };
}
