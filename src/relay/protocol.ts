import type { SluiceError } from '../errors.ts';
import type { TokenUsage } from '../openai/usage.ts';
import type { UpstreamIdentity } from '../openai/upstream-error.ts';
import type { SseEvent } from '../sse/parser.ts';
import type { ArrivalTrace } from '../upstream/arrival-stats.ts';
import type { ChunkNormalizer, ResponsesNormalizer } from './normalizer.ts';
import type { StreamWriter } from './writer.ts';

/**
 * What one upstream event meant: `undefined` go on, `'end'` the answer is complete (whatever completes it on the
 * wire, such as `[DONE]`, is already written), or the error the stream fails with (an in-band upstream error, a
 * truncated or malformed stream).
 */
export type EventVerdict = undefined | 'end' | SluiceError;

/** What is known of the upstream an answer is relayed from. */
export interface UpstreamStream {
  /** Its dialect's per-chunk fix-up of a chat or completions stream, when it needs one. */
  normalizer?: ChunkNormalizer | undefined;
  /** Its dialect's per-event fix-up of a Responses stream, when it needs one. */
  responsesNormalizer?: ResponsesNormalizer | undefined;
  /** Its name, and the redaction of its secrets from the errors it reports. */
  upstream?: UpstreamIdentity | undefined;
  /** It was asked for usage on every chunk (vLLM's and SGLang's `continuous_usage_stats`). */
  continuousUsage?: boolean | undefined;
  /** Where the relay counts how this upstream's reads arrive (events per read, gaps): src/upstream/arrival-stats.ts. */
  trace?: ArrivalTrace | undefined;
}

/** How the tokens of a stream were metered: reported by the engine, or counted from the chunks relayed. */
export type TokenSource = 'reported' | 'counted';

/**
 * The meaning of one API's stream, for the relay: which events finish it, carry usage or report an error, how an
 * error is written after the headers, and whether a read may pass through as bytes. One object per stream (it keeps
 * the stream's own state: finish reasons seen, usage, a terminal event); the relay itself reads no JSON.
 * Implementations: src/openai/chat-stream.ts (chat and completions), src/openai/responses-stream.ts.
 */
export interface StreamProtocol {
  /**
   * A new upstream body is about to be relayed (the first, or another replica's). Returns whether reads may be
   * offered to `passRaw` (no rewriting, bare `data:` framing).
   */
  attach(source: UpstreamStream): boolean;
  /**
   * Offered a whole upstream read when `attach` allowed it: the bytes the client gets for it (the read itself, or the
   * read with what the client did not ask for cut out; its events are accounted for), or null when it must be parsed
   * into events.
   */
  passRaw(read: Buffer): Buffer | null;
  /** Events in the last read `passRaw` accepted (for the upstream's arrival statistics). */
  readonly rawEvents: number;
  /** One parsed upstream event: writes what the client gets for it and says what it meant. */
  onEvent(ev: SseEvent, writer: StreamWriter): EventVerdict;
  /** The upstream body ended: `'end'` when the answer is complete (its end written), else the truncation error. */
  onUpstreamEnd(writer: StreamWriter): 'end' | SluiceError;
  /** Writes the in-band error event of this API after the headers (chat frame or Responses `error` event). */
  writeError(writer: StreamWriter, err: SluiceError): void;
  /** The tokens of the stream so far: reported by the upstream, or else counted from what was relayed. */
  readonly usage: TokenUsage | undefined;
  /** How `usage` was obtained; undefined when there is none. */
  readonly tokenSource: TokenSource | undefined;
}
