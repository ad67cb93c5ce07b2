import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { SluiceError } from '../errors.ts';
import { normalizeUpstreamError } from '../openai/upstream-error.ts';
import type { Upstream } from './upstream.ts';
import { dispatchRequest, type UpstreamResponse } from './upstream-body.ts';

export interface ForwardRequest {
  /** OpenAI path, e.g. `/chat/completions`. */
  path: string;
  body: string;
  headers: Record<string, string>;
  signal: AbortSignal;
  /** Largest error body read from an upstream. */
  maxErrorBytes: number;
}

export interface Forwarded {
  upstream: Upstream;
  response: UpstreamResponse;
  /** Must be called once the request is over (balancing counts in-flight requests). */
  release(): void;
}

/** Reads at most `max` bytes of a body as text; the rest is discarded. */
export async function readBounded(body: Dispatcher.ResponseData['body'], max: number): Promise<{ text: string; truncated: boolean }> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const b = chunk as Buffer;
    if (size + b.length > max) {
      parts.push(b.subarray(0, max - size));
      size = max;
      body.destroy();
      return { text: Buffer.concat(parts).toString('utf8'), truncated: true };
    }
    parts.push(b);
    size += b.length;
  }
  return { text: Buffer.concat(parts).toString('utf8'), truncated: false };
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

function isConnectFailure(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return (
    code === 'UND_ERR_CONNECT_TIMEOUT' ||
    code === 'ECONNREFUSED' ||
    code === 'ECONNRESET' ||
    code === 'EHOSTUNREACH' ||
    code === 'ENETUNREACH' ||
    code === 'ENOTFOUND' ||
    code === 'EAI_AGAIN' ||
    code === 'UND_ERR_SOCKET' ||
    code === 'EPIPE'
  );
}

/**
 * Sends a request to the first replica that takes it. Before any byte reaches the client, a connect error, a 5xx or
 * a 429 moves the request to the next replica. Returns the first other answer (2xx, or a 4xx to pass through);
 * throws a SluiceError when every replica failed.
 */
export async function forward(replicas: readonly Upstream[], req: ForwardRequest): Promise<Forwarded> {
  let last: SluiceError | undefined;
  let connectFailures = 0;
  let connectTimeouts = 0;
  for (const upstream of replicas) {
    if (req.signal.aborted) break;
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
        upstream.pool,
        { method: 'POST', path: upstream.path(req.path), ...requestBody(req.body, upstream.headers(req.headers)) },
        req.signal,
      );
    } catch (err) {
      release();
      if (req.signal.aborted) throw req.signal.reason instanceof SluiceError ? req.signal.reason : err;
      if (!isConnectFailure(err)) throw new SluiceError('SLUICE_UPSTREAM_ERROR', `upstream ${upstream.name} failed: ${(err as Error).message}`, { cause: err });
      const timedOut = (err as { code?: unknown }).code === 'UND_ERR_CONNECT_TIMEOUT';
      upstream.markFailed((err as Error).message);
      connectFailures++;
      if (timedOut) connectTimeouts++;
      last = new SluiceError(
        timedOut ? 'SLUICE_UPSTREAM_CONNECT_TIMEOUT' : 'SLUICE_UPSTREAM_CONNECT_ERROR',
        `upstream ${upstream.name}: ${timedOut ? 'connect timed out' : `cannot connect (${String((err as { code?: unknown }).code ?? (err as Error).message)})`}`,
        { cause: err },
      );
      continue;
    }
    const status = response.statusCode;
    if (status >= 500 || status === 429) {
      const { text } = await response.body.text(req.maxErrorBytes);
      release();
      if (status >= 500) upstream.markFailed(`HTTP ${status}`);
      const e = normalizeUpstreamError(text, status);
      const retryAfter = response.headers['retry-after'];
      last = new SluiceError('SLUICE_UPSTREAM_ERROR', e.message, {
        status,
        type: e.type,
        param: e.param,
        wireCode: e.code === null ? null : String(e.code),
        ...(typeof retryAfter === 'string' ? { headers: { 'retry-after': retryAfter } } : {}),
      });
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
