import { newRequestId } from '../generation/request-id.ts';
import { Generation } from '../generation/generation.ts';
import type { GatewayContext } from '../generation/context.ts';
import type { Principal } from '../auth/key-ring.ts';
import { validateRequest } from '../openai/request.ts';
import type { WsChannel } from './channel.ts';
import { WsStreamWriter, type WsFraming } from './ws-writer.ts';

export interface WsGeneration {
  gen: Generation;
  writer: WsStreamWriter;
}

/**
 * Starts one streamed generation asked for over a WebSocket: the WebSocket adapter of a generation
 * (src/generation/generation.ts), with the same validation, admission, routing, relay and log line as the HTTP
 * endpoints and a WebSocket writer. A request refused before it starts (invalid body, unknown model) is answered
 * through the writer, in the framing's own terms, and ends it.
 */
export function startWsGeneration(
  ctx: GatewayContext,
  g: { kind: 'chat' | 'completion' | 'responses'; path: string; body: Record<string, unknown>; channel: WsChannel; principal: Principal; framing: WsFraming; onEnd: () => void; requestId?: string | undefined },
): WsGeneration {
  const gen = new Generation(ctx, { id: g.requestId ?? newRequestId(), method: 'WS', path: g.path, kind: g.kind, startedPerf: performance.now(), principal: g.principal });
  const writer = new WsStreamWriter(g.channel, g.framing, g.onEnd);
  let parsed;
  try {
    // Over a WebSocket every generation streams, whatever the body says.
    parsed = validateRequest(g.kind, { ...g.body, stream: true });
  } catch (err) {
    gen.log.stream = true;
    writer.fail(gen.reject(err), () => {});
    return { gen, writer };
  }
  void gen.stream(parsed, writer);
  return { gen, writer };
}
