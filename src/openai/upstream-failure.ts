import type { IncomingHttpHeaders } from 'node:http';
import { SluiceError } from '../errors.ts';
import { redactUrl } from './redact.ts';
import { clientStatus, isErrorBody, normalizeUpstreamError, safeRetryAfter, type OpenAIErrorObject, type UpstreamIdentity } from './upstream-error.ts';

/** Every way an upstream can fail a request, as the gateway sees it. */
export type UpstreamFailure =
  /**
   * Its final answer, before any byte reached the client, is not a success: an HTTP error status, a 1xx or 3xx as
   * final answer, or a 2xx whose body is an error object. `body` is its body (bounded).
   */
  | { kind: 'answer'; upstream: UpstreamIdentity; status: number; headers: IncomingHttpHeaders; body: string }
  /** It reported an error inside a stream (an error frame or event). */
  | { kind: 'in_band'; upstream: UpstreamIdentity | undefined; error: OpenAIErrorObject }
  /** No connection could be made (refused, reset, unreachable, DNS) or the connect timed out. */
  | { kind: 'connect'; upstream: string; cause: unknown }
  /** It broke HTTP/1.1 before its answer (an unsolicited 100 Continue or 101): src/upstream/protocol-failure.ts. */
  | { kind: 'broken_http'; upstream: string; cause: unknown }
  /** The request failed for another reason before the answer's headers. */
  | { kind: 'request'; upstream: string; cause: unknown }
  /** It sent a stream with a content coding although the gateway asked for identity (src/upstream/content-encoding.ts). */
  | { kind: 'encoded_stream'; upstream: string; coding: string }
  /** The answer is not what was asked for (not a stream, an oversized event or answer, data that is not JSON). */
  | { kind: 'bad_response'; message: string; cause?: unknown }
  /** The answer ended or broke before it was complete. */
  | { kind: 'truncated'; message: string; cause?: unknown };

const plain: UpstreamIdentity = { name: 'upstream', redact: (s) => s };

/**
 * The one factory that turns an upstream failure into the `SluiceError` a client sees, with the one status rule
 * (`clientStatus`: statuses about the gateway–engine hop become 502) and every upstream-supplied text passed through
 * the upstream's redaction: whatever path noticed the failure (forwarding with failover, the attach decision, the
 * relay's protocol objects, reading a body), the same failure gets the same code, status and message.
 */
export function upstreamFailure(f: UpstreamFailure): SluiceError {
  switch (f.kind) {
    case 'answer':
      return answerError(f.upstream, f.status, f.headers, f.body);
    case 'in_band':
      // An in-band error's numeric code is the HTTP status the engine would have answered with.
      return fromErrorObject(f.upstream ?? plain, f.error, typeof f.error.code === 'number' ? clientStatus(f.error.code) : 502, undefined);
    case 'connect': {
      const code = (f.cause as { code?: unknown }).code;
      if (code === 'UND_ERR_CONNECT_TIMEOUT') {
        return new SluiceError('SLUICE_UPSTREAM_CONNECT_TIMEOUT', `upstream ${f.upstream}: connect timed out`, { cause: f.cause });
      }
      return new SluiceError('SLUICE_UPSTREAM_CONNECT_ERROR', `upstream ${f.upstream}: cannot connect (${String(code ?? (f.cause as Error).message)})`, { cause: f.cause });
    }
    case 'broken_http':
      return new SluiceError(
        'SLUICE_UPSTREAM_BAD_RESPONSE',
        `upstream ${f.upstream} broke HTTP/1.1 before its answer (an unsolicited 100 Continue or 101 Switching Protocols, or bytes nobody asked for)`,
        { cause: f.cause },
      );
    case 'request':
      return new SluiceError('SLUICE_UPSTREAM_ERROR', `upstream ${f.upstream} failed: ${(f.cause as Error).message}`, { cause: f.cause });
    case 'encoded_stream':
      return new SluiceError(
        'SLUICE_UPSTREAM_BAD_RESPONSE',
        `upstream ${f.upstream} sent its stream with Content-Encoding: ${f.coding} although the gateway asked for identity; a hop between the gateway and the engine compresses streams: turn compression off there`,
      );
    case 'bad_response':
      return new SluiceError('SLUICE_UPSTREAM_BAD_RESPONSE', f.message, f.cause === undefined ? {} : { cause: f.cause });
    case 'truncated':
      return new SluiceError('SLUICE_UPSTREAM_TRUNCATED', f.message, f.cause === undefined ? {} : { cause: f.cause });
  }
}

/**
 * A final answer that is not a success:
 * - 401/403/407 → SLUICE_UPSTREAM_AUTH_FAILED (502), naming the config key to check: passed on as a 401, a client
 *   would take it for its own key failing;
 * - 1xx/3xx → SLUICE_UPSTREAM_BAD_RESPONSE (502), with the redirect target (without userinfo) when there is one;
 * - anything else → SLUICE_UPSTREAM_ERROR with the engine's message, type and code; status by `clientStatus` (for a
 *   2xx, the in-body code when it is an HTTP error status, 400 for context-length errors, else 502), and a valid
 *   `retry-after` passed on.
 */
function answerError(who: UpstreamIdentity, status: number, headers: IncomingHttpHeaders, text: string): SluiceError {
  if (status === 401 || status === 403 || status === 407) {
    const e = normalizeUpstreamError(text, status);
    const detail = e.message === `upstream answered HTTP ${status}` ? '' : `: ${who.redact(e.message)}`;
    const what = status === 407 ? 'a proxy in front of it requires authentication' : "refused the gateway's credentials";
    return new SluiceError(
      'SLUICE_UPSTREAM_AUTH_FAILED',
      `upstream ${who.name} ${what} (HTTP ${status}${detail}); check upstreams[].api_key (or the URL's user:password) in the gateway's config`,
    );
  }
  if (status < 200 || (status >= 300 && status < 400)) {
    const location = headers['location'];
    const target = typeof location === 'string' && location !== '' ? ` to ${who.redact(redactUrl(location)).slice(0, 500)}` : '';
    const why = status < 200 ? `an interim HTTP ${status} as its final answer` : `a redirect (HTTP ${status})${target}; the gateway does not follow upstream redirects: set upstreams[].url to the address that answers`;
    return new SluiceError('SLUICE_UPSTREAM_BAD_RESPONSE', `upstream ${who.name} answered ${why}`);
  }
  let e: OpenAIErrorObject;
  let answerStatus: number;
  if (status < 300) {
    e = isErrorBody(text) ?? normalizeUpstreamError(text, 502);
    const inBody = typeof e.code === 'number' ? e.code : undefined;
    answerStatus = inBody !== undefined && inBody >= 400 && inBody <= 599 ? clientStatus(inBody) : e.code === 'context_length_exceeded' ? 400 : 502;
  } else {
    e = normalizeUpstreamError(text, status);
    answerStatus = clientStatus(status);
  }
  const retryAfter = safeRetryAfter(headers['retry-after']);
  return fromErrorObject(who, e, answerStatus, retryAfter === undefined ? undefined : { 'retry-after': retryAfter });
}

function fromErrorObject(who: UpstreamIdentity, e: OpenAIErrorObject, status: number, headers: Record<string, string> | undefined): SluiceError {
  return new SluiceError('SLUICE_UPSTREAM_ERROR', who.redact(e.message), {
    status,
    type: e.type,
    param: e.param === null ? null : who.redact(e.param),
    wireCode: e.code === null ? null : who.redact(String(e.code)),
    ...(headers === undefined ? {} : { headers }),
  });
}
