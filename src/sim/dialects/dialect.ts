/**
 * How a simulated engine writes its OpenAI-compatible stream. Each engine's module returns the exact bytes of each
 * frame, so the simulator can be byte-faithful to one engine at a time.
 */

export interface StreamContext {
  id: string;
  created: number;
  model: string;
  /** Number of choices (n). */
  n: number;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface SimDialect {
  readonly name: string;
  /** `owned_by` in /v1/models. */
  readonly ownedBy: string;
  /** Response headers on a stream, besides those Node adds. */
  readonly streamHeaders: Readonly<Record<string, string>>;
  /** Extra headers on every response (e.g. `server`). */
  readonly commonHeaders: Readonly<Record<string, string>>;
  chatRole(ctx: StreamContext, index: number): string;
  chatDelta(ctx: StreamContext, index: number, text: string): string;
  chatFinish(ctx: StreamContext, index: number, reason: string): string;
  /** The usage chunk; `null` when this engine sends none for this request. */
  chatUsage(ctx: StreamContext, usage: Usage, requested: boolean): string | null;
  completionDelta(ctx: StreamContext, index: number, text: string): string;
  completionFinish(ctx: StreamContext, index: number, reason: string): string;
  completionUsage(ctx: StreamContext, usage: Usage, requested: boolean): string | null;
  /** The in-band error frame(s) after headers, terminator included when the engine sends one. */
  errorFrames(message: string, status: number): string;
  /** The terminator after a normal end, or '' when the engine sends none. */
  readonly done: string;
  /** The JSON body of an error before headers. */
  errorBody(message: string, status: number, type: string): string;
}
