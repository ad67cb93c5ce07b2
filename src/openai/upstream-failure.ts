import { SluiceError } from '../errors.ts';
import { clientStatus, normalizeUpstreamError, type OpenAIErrorObject } from './upstream-error.ts';

/** Every way an upstream can fail a request, as the gateway sees it. */
export type UpstreamFailure =
  /** It answered an HTTP error before any byte reached the client (`body` is its error body, bounded). */
  | { kind: 'status'; status: number; body: string; retryAfter?: string | undefined }
  /** It reported an error inside a stream (an error frame or event). */
  | { kind: 'in_band'; error: OpenAIErrorObject }
  /** No connection could be made (refused, reset, unreachable, DNS) or the connect timed out. */
  | { kind: 'connect'; upstream: string; cause: unknown }
  /** The request failed for another reason before the answer's headers. */
  | { kind: 'request'; upstream: string; cause: unknown }
  /** The answer is not what was asked for (not a stream, an oversized event, a data line that is not JSON). */
  | { kind: 'bad_response'; message: string }
  /** The stream ended or broke before the answer was complete. */
  | { kind: 'truncated'; message: string; cause?: unknown };

/**
 * The one factory that turns an upstream failure into the `SluiceError` a client sees, with the one status rule
 * (`clientStatus`): whatever path noticed the failure (forwarding with failover, the attach decision, the relay's
 * protocol objects), the same failure gets the same code, status and message.
 */
export function upstreamFailure(f: UpstreamFailure): SluiceError {
  switch (f.kind) {
    case 'status': {
      const e = normalizeUpstreamError(f.body, f.status);
      return fromErrorObject(e, f.status, f.retryAfter === undefined ? undefined : { 'retry-after': f.retryAfter });
    }
    case 'in_band':
      // An in-band error's numeric code is the HTTP status the engine would have answered with.
      return fromErrorObject(f.error, typeof f.error.code === 'number' ? f.error.code : 502, undefined);
    case 'connect': {
      const code = (f.cause as { code?: unknown }).code;
      if (code === 'UND_ERR_CONNECT_TIMEOUT') {
        return new SluiceError('SLUICE_UPSTREAM_CONNECT_TIMEOUT', `upstream ${f.upstream}: connect timed out`, { cause: f.cause });
      }
      return new SluiceError('SLUICE_UPSTREAM_CONNECT_ERROR', `upstream ${f.upstream}: cannot connect (${String(code ?? (f.cause as Error).message)})`, { cause: f.cause });
    }
    case 'request':
      return new SluiceError('SLUICE_UPSTREAM_ERROR', `upstream ${f.upstream} failed: ${(f.cause as Error).message}`, { cause: f.cause });
    case 'bad_response':
      return new SluiceError('SLUICE_UPSTREAM_BAD_RESPONSE', f.message);
    case 'truncated':
      return new SluiceError('SLUICE_UPSTREAM_TRUNCATED', f.message, f.cause === undefined ? {} : { cause: f.cause });
  }
}

function fromErrorObject(e: OpenAIErrorObject, status: number, headers: Record<string, string> | undefined): SluiceError {
  return new SluiceError('SLUICE_UPSTREAM_ERROR', e.message, {
    // A status outside 4xx/5xx (an in-band code of 0 or 200) says nothing a client can act on: the gateway's 502.
    status: status >= 400 && status < 600 ? clientStatus(status) : 502,
    type: e.type,
    param: e.param,
    wireCode: e.code === null ? null : String(e.code),
    ...(headers === undefined ? {} : { headers }),
  });
}
