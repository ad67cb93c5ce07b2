import type { SluiceError } from '../errors.ts';
import type { TokenUsage } from '../openai/usage.ts';
import type { UpstreamIdentity } from '../openai/upstream-error.ts';
import type { SseEvent } from '../sse/parser.ts';
import type { ChunkNormalizer } from './normalizer.ts';
import type { StreamWriter } from './writer.ts';

/**
 * What one upstream event meant: `undefined` go on, `'end'` the answer is complete (whatever completes it on the
 * wire, such as `[DONE]`, is already written), or the error the stream fails with (an in-band upstream error, a
 * truncated or malformed stream).
 */
export type EventVerdict = undefined | 'end' | SluiceError;

/**
 * The meaning of one API's stream, for the relay: which events finish it, carry usage or report an error, how an
 * error is written after the headers, and whether a read may pass through as bytes. One object per stream (it keeps
 * the stream's own state: finish reasons seen, usage, a terminal event); the relay itself reads no JSON.
 * Implementations: src/openai/chat-stream.ts (chat and completions), src/openai/responses-stream.ts.
 */
export interface StreamProtocol {
  /**
   * A new upstream body is about to be relayed (the first, or another replica's), with its dialect's normalizer and
   * the upstream itself (its name, and the redaction of its secrets from the errors it reports). Returns whether
   * reads may be offered to `passRaw` (no rewriting, bare `data:` framing).
   */
  attach(normalizer: ChunkNormalizer | undefined, upstream: UpstreamIdentity | undefined): boolean;
  /**
   * Offered a whole upstream read when `attach` allowed it: true when the read can go to the client byte for byte
   * (its events were accounted for), false when it must be parsed into events.
   */
  passRaw(read: Buffer): boolean;
  /** One parsed upstream event: writes what the client gets for it and says what it meant. */
  onEvent(ev: SseEvent, writer: StreamWriter): EventVerdict;
  /** The upstream body ended: `'end'` when the answer is complete (its end written), else the truncation error. */
  onUpstreamEnd(writer: StreamWriter): 'end' | SluiceError;
  /** Writes the in-band error event of this API after the headers (chat frame or Responses `error` event). */
  writeError(writer: StreamWriter, err: SluiceError): void;
  /** The usage the upstream reported, once it did. */
  readonly usage: TokenUsage | undefined;
}
