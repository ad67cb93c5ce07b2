import type { OpenAIErrorObject } from '../openai/upstream-error.ts';

/**
 * An engine dialect's per-chunk fix-up, applied by the relay to every upstream `data:` payload of a chat or
 * completions stream before metering and framing. Return the payload unchanged (the common, zero-copy case), a
 * rewritten one, several (e.g. a synthesized role chunk first), none (`null`, to drop it), or an error to end the
 * stream with OpenAI's error frame. See src/openai/dialects/ and docs/engines.md.
 */
export type NormalizeResult = string | readonly string[] | null | { error: OpenAIErrorObject };

export interface ChunkNormalizer {
  chunk(data: string): NormalizeResult;
  /** Choices this engine streams whatever the request's `n` (Ollama and TGI stream one); default: the request's `n`. */
  readonly choices?: number | undefined;
}

/**
 * An engine dialect's fix-up of a Responses API stream, applied to every upstream event (its `event:` name and its
 * `data:` payload) before the protocol reads it. Returns the payload unchanged (the common, zero-copy case) or the
 * rewritten one. One object per stream: it keeps the numbering and the output items seen. See
 * src/openai/dialects/responses-events.ts.
 */
export interface ResponsesNormalizer {
  event(type: string | undefined, data: string): string;
}
