import { upstreamFailure } from '../openai/upstream-failure.ts';
import type { ChunkNormalizer } from '../relay/normalizer.ts';
import type { StreamRelay } from '../relay/stream-relay.ts';
import type { Forwarded } from './forward.ts';

/** Largest error body read from an upstream to word the client's error. */
export const MAX_ERROR_BYTES = 64 * 1024;

/**
 * The decision on an upstream's answer to a streamed request, once failover has settled on it: a 2xx
 * `text/event-stream` is attached to the relay (through the normalizer of the dialect that upstream speaks); anything
 * else fails the stream with the error the client sees: a 4xx passed on cleanly (bad request, unknown model upstream,
 * context too long), or a 2xx that is not a stream.
 */
export async function attachStreamAnswer(relay: StreamRelay, forwarded: Forwarded, normalizer: () => ChunkNormalizer | undefined): Promise<void> {
  const { statusCode, headers, body } = forwarded.response;
  if (relay.finished) {
    body.destroy();
    return;
  }
  const contentType = String(headers['content-type'] ?? '');
  const ok = statusCode >= 200 && statusCode < 300;
  if (ok && contentType.includes('text/event-stream')) {
    relay.attach(body, normalizer());
    return;
  }
  const { text } = await body.text(MAX_ERROR_BYTES);
  if (ok) {
    relay.fail(upstreamFailure({ kind: 'bad_response', message: `upstream ${forwarded.upstream.name} answered a stream request with '${contentType || 'no content type'}' instead of text/event-stream` }));
    return;
  }
  relay.fail(upstreamFailure({ kind: 'status', status: statusCode, body: text }));
}

/** A non-streamed answer as the client gets it. */
export interface UnaryAnswer {
  status: number;
  contentType: string;
  body: string;
}

/**
 * The decision on an upstream's answer to a non-streamed request: its JSON passed on as it is, or the error the client
 * sees (an HTTP error mapped by the one status rule, or an answer over `maxBytes`).
 */
export async function readUnaryAnswer(forwarded: Forwarded, maxBytes: number): Promise<UnaryAnswer> {
  const { statusCode, headers, body } = forwarded.response;
  const { text, truncated } = await body.text(maxBytes);
  if (truncated) throw upstreamFailure({ kind: 'bad_response', message: `upstream response exceeds ${maxBytes} bytes` });
  if (statusCode >= 400) throw upstreamFailure({ kind: 'status', status: statusCode, body: text });
  return { status: statusCode, contentType: String(headers['content-type'] ?? 'application/json'), body: text };
}
