import type { ServerResponse } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
import type { SluiceError } from '../errors.ts';

/**
 * The one place an error becomes a wire response before headers: the HTTP status and OpenAI's error body.
 * (After headers the relay writes `errorFrame` instead; see src/relay/stream-relay.ts.)
 */
export function sendJsonError(res: ServerResponse | Http2ServerResponse, err: SluiceError, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify(err.toJSON());
  res.statusCode = err.status;
  for (const [k, v] of Object.entries({ ...headers, ...err.headers })) res.setHeader(k, v);
  res.setHeader('content-type', 'application/json');
  res.setHeader('content-length', Buffer.byteLength(body));
  res.end(body);
}
