/**
 * How a simulated engine writes its OpenAI-compatible API. Each engine's module returns the exact bytes of each frame,
 * so the simulator is byte-faithful to one engine at a time (docs/engines.md has the sources, and
 * test/fixtures/dialects/ the recorded shapes each module reproduces).
 *
 * The server decides what is generated (role, reasoning tokens, content tokens or a tool call, the finish, usage, a
 * failure); a writer decides how this engine puts each of those on the wire, including what it leaves out.
 */

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface StreamContext {
  id: string;
  created: number;
  model: string;
  /** Number of choices (n), already capped to what the engine supports. */
  n: number;
  usage: Usage;
  /** The request set `stream_options.include_usage: true`. */
  includeUsage: boolean;
  /**
   * The request also set `stream_options.continuous_usage_stats: true` (vLLM: only together with include_usage):
   * engines that support it put the running usage on every chunk.
   */
  continuousUsage: boolean;
  /** Completion tokens each choice has produced so far; the server updates it before writing each step. */
  tokensSoFar: number;
  /** Chat `logprobs: true`: each content token carries its log probability. */
  logprobs: boolean;
  /** `top_logprobs` alternatives per token (0–5). */
  topLogprobs: number;
}

/** One simulated tool call. */
export interface SimToolCall {
  name: string;
  args: Record<string, string | number | boolean>;
}

/** A token's simulated log probability and its alternatives. */
export interface SimLogprob {
  token: string;
  logprob: number;
  top: Array<{ token: string; logprob: number }>;
}

export interface ChatWriter {
  /** Frames before the first token (vLLM's and SGLang's role chunks); '' when the role rides on the first token. */
  start(): string;
  reasoning(index: number, text: string): string;
  content(index: number, text: string, logprob: SimLogprob | undefined): string;
  /** A whole tool call, as this engine streams it (several frames, or one). */
  toolCall(index: number, call: SimToolCall): string;
  /** The end of one choice. `lastText` is the last token when the limit cut the answer (`length`), which most
   * engines send on the finishing chunk; '' when the end is the EOS token (whose text is empty). */
  finish(index: number, reason: 'stop' | 'length' | 'tool_calls', lastText: string): string;
  /** After every choice finished: the usage frame when this engine sends one, and its terminator. */
  end(): string;
  /** An error after headers, with whatever follows it on this engine (`[DONE]`, or nothing). */
  error(message: string): string;
}

export interface CompletionWriter {
  content(index: number, text: string): string;
  finish(index: number, reason: 'stop' | 'length', lastText: string): string;
  end(): string;
  error(message: string): string;
}

/** An answer to a GET on one of the engine's own endpoints (`/version`, `/info`, `/api/version`). */
export interface EngineAnswer {
  status: number;
  contentType: string;
  body: string;
}

export interface SimDialect {
  readonly name: string;
  /** Response headers on a stream, besides those Node adds. */
  readonly streamHeaders: Readonly<Record<string, string>>;
  /** Extra headers on every response (e.g. `server`). */
  readonly commonHeaders: Readonly<Record<string, string>>;
  /** Most choices the engine streams: engines without `n` support stream one whatever the request says. */
  readonly maxChoices: number;
  /** `/v1/responses` exists on this engine. */
  readonly responses: boolean;
  /** vLLM answers 400 to `stream_options` on a request that does not stream; the others ignore it. */
  readonly rejectsStreamOptionsWithoutStream: boolean;
  /** The id of one stream, in this engine's format. */
  streamId(kind: 'chat' | 'completion' | 'responses'): string;
  /** The body of `GET /v1/models`. */
  modelsBody(models: readonly string[], created: number): string;
  /** The engine's own GET endpoints; undefined for 404. */
  engineGet(path: string, models: readonly string[]): EngineAnswer | undefined;
  chat(ctx: StreamContext): ChatWriter;
  completion(ctx: StreamContext): CompletionWriter;
  /** The JSON body of an error before headers. */
  errorBody(message: string, status: number, type: string): string;
}

/** `data: <payload>\n\n`. */
export const frame = (payload: string): string => `data: ${payload}\n\n`;

/** Splits a tool call's argument text into a few pieces, the way a tokenizer would stream it. */
export function argumentPieces(text: string): string[] {
  const pieces: string[] = [];
  const size = Math.max(4, Math.ceil(text.length / 4));
  for (let i = 0; i < text.length; i += size) pieces.push(text.slice(i, i + size));
  return pieces;
}

/** The UTF-8 bytes of a token, as engines report them in logprobs. */
export function tokenBytes(token: string): number[] {
  return [...Buffer.from(token, 'utf8')];
}
