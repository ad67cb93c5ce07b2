import { isErrorBody, safeContentType } from '../openai/upstream-error.ts';
import { upstreamFailure } from '../openai/upstream-failure.ts';
import type { UpstreamStream } from '../relay/protocol.ts';
import type { StreamRelay } from '../relay/stream-relay.ts';
import { streamCoding } from '../upstream/content-encoding.ts';
import type { Forwarded } from './forward.ts';

/** Largest error body read from an upstream to word the client's error. */
export const MAX_ERROR_BYTES = 64 * 1024;

/**
 * The decision on an upstream's answer to a streamed request, once failover has settled on it: a 2xx
 * `text/event-stream` without a content coding is attached to the relay (through the normalizer of the dialect that
 * upstream speaks); anything else fails the stream with the error the client sees: a 4xx passed on cleanly (bad
 * request, unknown model upstream, context too long), a 2xx whose body is an error, a 2xx that is not a stream, a
 * compressed stream, a redirect.
 */
export async function attachStreamAnswer(relay: StreamRelay, forwarded: Forwarded, source: () => UpstreamStream): Promise<void> {
  const { upstream, response } = forwarded;
  const { statusCode, headers, body } = response;
  if (relay.finished) {
    body.destroy();
    return;
  }
  const contentType = String(headers['content-type'] ?? '');
  const ok = statusCode >= 200 && statusCode < 300;
  if (ok && contentType.includes('text/event-stream')) {
    const coding = streamCoding(headers);
    if (coding !== undefined) {
      body.destroy();
      relay.fail(upstreamFailure({ kind: 'encoded_stream', upstream: upstream.name, coding }));
      return;
    }
    relay.attach(body, source());
    return;
  }
  const { text } = await body.text(MAX_ERROR_BYTES);
  if (ok && !isErrorBody(text)) {
    relay.fail(upstreamFailure({ kind: 'bad_response', message: `upstream ${upstream.name} answered a stream request with '${contentType || 'no content type'}' instead of text/event-stream` }));
    return;
  }
  relay.fail(upstreamFailure({ kind: 'answer', upstream, status: statusCode, headers, body: text }));
}

/** A non-streamed answer as the client gets it. */
export interface UnaryAnswer {
  status: number;
  contentType: string;
  body: string;
}

/**
 * The decision on an upstream's answer to a non-streamed request: its JSON passed on whole, or the error the client
 * sees (an error answer by the one status rule, a 2xx whose body is an error, an answer cut short, over `maxBytes`
 * or undecodable). The upstream's content type is passed on only when it is a plain media type.
 */
export async function readUnaryAnswer(forwarded: Forwarded, maxBytes: number): Promise<UnaryAnswer> {
  const { upstream, response } = forwarded;
  const { statusCode, headers, body } = response;
  if (statusCode < 200 || statusCode >= 300) {
    const { text } = await body.text(MAX_ERROR_BYTES);
    throw upstreamFailure({ kind: 'answer', upstream, status: statusCode, headers, body: text });
  }
  const text = await body.wholeText(maxBytes, upstream.name);
  if (isErrorBody(text)) throw upstreamFailure({ kind: 'answer', upstream, status: statusCode, headers, body: text });
  return { status: statusCode, contentType: safeContentType(headers['content-type']), body: text };
}
