import type { SluiceError } from '../errors.ts';

/**
 * The bytes a `SluiceError` becomes on each wire, one function per protocol (with `sendJsonError` in
 * src/http/send-error.ts, which sends `errorJson` as an HTTP response). Nothing else serializes an error.
 */

/**
 * OpenAI's error object, `{"error":{"message","type","param","code"}}`: the JSON body before headers, and the payload
 * of the one `data:` frame that ends a failed chat/completions stream (both SDKs raise on it).
 */
export function errorJson(err: SluiceError): string {
  return JSON.stringify(err.toJSON());
}

/** The Responses API's `error` event data: `{"type":"error","code","message","param"}`. */
export function responsesErrorEvent(err: SluiceError): string {
  return JSON.stringify({ type: 'error', code: err.wireCode, message: err.message, param: err.param });
}

/**
 * The WebSocket error message both WebSocket endpoints send: `{"type":"error", …extra, "status", "error":{…}}`, the
 * shape of OpenAI's WebSocket error event (the status is the one the HTTP endpoint would have answered with).
 */
export function wsErrorMessage(err: SluiceError, extra: Record<string, string> = {}): string {
  return JSON.stringify({ type: 'error', ...extra, status: err.status, ...err.toJSON() });
}
