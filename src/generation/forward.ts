import { Readable } from 'node:stream';
import { SluiceError } from '../errors.ts';
import { upstreamFailure } from '../openai/upstream-failure.ts';
import type { FailoverReason } from '../metrics/gateway-metrics.ts';
import type { Upstream } from '../upstream/upstream.ts';
import { dispatchRequest, type UpstreamResponse } from '../upstream/upstream-body.ts';
import { isBrokenHttp } from '../upstream/protocol-failure.ts';

export interface ForwardRequest {
  /** OpenAI path, e.g. `/chat/completions`. */
  path: string;
  /** The body for one replica (it may differ by the engine's dialect). */
  body: (upstream: Upstream) => string;
  headers: Record<string, string>;
  signal: AbortSignal;
  /** A streamed generation: sent through the upstream's `streamPool` (Sluice's own client with `http_client: sluice`). */
  streamed?: boolean;
  /** Largest error body read from an upstream. */
  maxErrorBytes: number;
  /** Called when a failed attempt moves the request on to another replica, with the replica and its failure. */
  onFailover?: ((reason: FailoverReason, from: Upstream, failure: SluiceError) => void) | undefined;
}

export interface Forwarded {
  upstream: Upstream;
  response: UpstreamResponse;
  /** Must be called once the request is over (balancing counts in-flight requests). */
  release(): void;
}

/** Bodies from this size on are handed to undici as a stream, so that they are freed once written. */
const RELEASED_BODY_BYTES = 16 * 1024;

/**
 * The body and headers of one upstream attempt. undici keeps a string or Buffer body for the whole response, that is,
 * a copy of the prompt for as long as the stream lasts (docs/performance.md, finding 8); of a Readable it keeps the
 * drained stream. Large bodies go that way, their length declared; small ones stay a string, which costs less per
 * request.
 */
function requestBody(body: string, headers: Record<string, string>): { body: string | Readable; headers: Record<string, string> } {
  if (body.length < RELEASED_BODY_BYTES) return { body, headers };
  const bytes = Buffer.from(body, 'utf8');
  const stream = new Readable({ read() {} });
  stream.push(bytes);
  stream.push(null);
  return { body: stream, headers: { ...headers, 'content-length': String(bytes.length) } };
}

const CONNECT_FAILURES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_SOCKET', 'EPIPE']);

const isConnectFailure = (err: unknown): boolean => CONNECT_FAILURES.has((err as { code?: unknown }).code as string);

/**
 * Sends a request to the first replica that takes it: the failover of a generation before its first byte. A connect
 * error, a 5xx or a 429 moves the request to the next replica. Returns the first other answer (2xx, or a 4xx to pass
 * through; src/generation/attach.ts decides what becomes of it); throws a SluiceError when every replica failed.
 */
export async function forward(replicas: readonly Upstream[], req: ForwardRequest): Promise<Forwarded> {
  let last: SluiceError | undefined;
  let connectFailures = 0;
  let connectTimeouts = 0;
  for (let i = 0; i < replicas.length; i++) {
    const upstream = replicas[i] as Upstream;
    if (req.signal.aborted) break;
    const failover = i < replicas.length - 1 ? req.onFailover : undefined;
    upstream.inFlight++;
    let released = false;
    const release = (): void => {
      if (!released) {
        released = true;
        upstream.inFlight--;
      }
    };
    let response: UpstreamResponse;
    try {
      response = await dispatchRequest(
        req.streamed === true ? upstream.streamPool : upstream.pool,
        { method: 'POST', path: upstream.path(req.path), ...requestBody(req.body(upstream), upstream.headers(req.headers)) },
        req.signal,
      );
    } catch (err) {
      release();
      if (req.signal.aborted) throw req.signal.reason instanceof SluiceError ? req.signal.reason : err;
      if (isBrokenHttp(err)) {
        last = upstreamFailure({ kind: 'broken_http', upstream: upstream.name, cause: err });
        upstream.markFailed(last.message);
        failover?.('bad_response', upstream, last);
        continue;
      }
      if (!isConnectFailure(err)) throw upstreamFailure({ kind: 'request', upstream: upstream.name, cause: err });
      upstream.markFailed((err as Error).message);
      last = upstreamFailure({ kind: 'connect', upstream: upstream.name, cause: err });
      connectFailures++;
      const timedOut = last.code === 'SLUICE_UPSTREAM_CONNECT_TIMEOUT';
      if (timedOut) connectTimeouts++;
      failover?.(timedOut ? 'connect_timeout' : 'connect_error', upstream, last);
      continue;
    }
    const status = response.statusCode;
    if (status >= 500 || status === 429) {
      const { text } = await response.body.text(req.maxErrorBytes);
      release();
      if (status >= 500) upstream.markFailed(`HTTP ${status}`);
      last = upstreamFailure({ kind: 'answer', upstream, status, headers: response.headers, body: text });
      failover?.(status === 429 ? 'status_429' : 'status_5xx', upstream, last);
      continue;
    }
    return { upstream, response, release };
  }
  if (req.signal.aborted && req.signal.reason instanceof SluiceError) throw req.signal.reason;
  if (last === undefined) throw new SluiceError('SLUICE_NO_HEALTHY_UPSTREAM', 'no upstream is available for this model');
  // Every replica timed out connecting: that is the distinct connect-timeout error (504), not an outage.
  if (connectTimeouts === replicas.length) throw last;
  if (connectFailures === replicas.length) {
    throw new SluiceError('SLUICE_NO_HEALTHY_UPSTREAM', `no healthy upstream: every replica failed (${last.message})`, { cause: last });
  }
  throw last;
}
