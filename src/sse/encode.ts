/**
 * SSE frame encoders. Chat and completions streams use bare `data:` frames only (no `event:`, `id:` or `retry:`
 * lines): openai-python crashes on a comment after an `id:` line, and both SDKs crash on an `event:` block without data.
 */

/** `data: <payload>\n\n`. The payload must be one line (compact JSON or `[DONE]`). */
export function dataFrame(payload: string): string {
  return `data: ${payload}\n\n`;
}

/** `event: <type>\ndata: <payload>\n\n`, the framing of the Responses API stream. */
export function namedFrame(event: string, payload: string): string {
  return `event: ${event}\ndata: ${payload}\n\n`;
}

/** A comment frame. Heartbeats are `: keep-alive\n\n`. */
export function commentFrame(text: string): string {
  return `: ${text}\n\n`;
}

export const DONE_FRAME = 'data: [DONE]\n\n';
export const HEARTBEAT_FRAME = ': keep-alive\n\n';
