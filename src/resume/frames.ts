import type { SluiceError } from '../errors.ts';
import type { RequestKind } from '../openai/request.ts';
import { errorJson, responsesErrorEvent } from '../openai/error-wire.ts';
import { dataFrame, namedFrame } from '../sse/encode.ts';

/**
 * The error event that ends a stream of this API, as a complete SSE frame (the chat/completions error frame, or the
 * Responses `error` event): what a log ends with when its generation failed, was cancelled or was cut.
 */
export function errorFrame(kind: RequestKind, err: SluiceError): string {
  return kind === 'responses' ? namedFrame('error', responsesErrorEvent(err)) : dataFrame(errorJson(err));
}

/**
 * A heartbeat when `id:` lines are on: one comment line without the blank line that would dispatch an event.
 * openai-python keeps the last event id across events, so a blank line after a comment (`: keep-alive\n\n`) becomes
 * an event with empty data that it fails to parse; a lone comment line dispatches nothing in any SSE parser
 * (WHATWG HTML, "event stream interpretation"), and still keeps proxies' idle timers from firing.
 */
export const ID_MODE_HEARTBEAT = ': keep-alive\n';

/** Prefixes a frame with its `id:` line (the event's number, the cursor a client resumes after). */
export function withId(n: number, frame: string): string {
  return `id: ${n}\n${frame}`;
}
