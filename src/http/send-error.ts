import type { ServerResponse } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
import type { SluiceError } from '../errors.ts';
import { errorJson } from '../openai/error-wire.ts';

/**
 * An error as an HTTP response before headers: the status and OpenAI's error body (src/openai/error-wire.ts has the
 * error's form on every other wire). Once headers are out, the connection is cut instead: a stream's own error event
 * is its writer's to send.
 */
export function sendJsonError(res: ServerResponse | Http2ServerResponse, err: SluiceError, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = errorJson(err);
  res.statusCode = err.status;
  for (const [k, v] of Object.entries({ ...headers, ...err.headers })) res.setHeader(k, v);
  res.setHeader('content-type', 'application/json');
  res.setHeader('content-length', Buffer.byteLength(body));
  res.end(body);
}
