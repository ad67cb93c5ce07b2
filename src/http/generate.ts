import type { ServerResponse } from 'node:http';
import { clientAbortedError, SluiceError, toSluiceError } from '../errors.ts';
import { parseRequest, upstreamBody, type ParsedRequest, type RequestKind } from '../openai/request.ts';
import { readUsage } from '../openai/usage.ts';
import { clientStatus, normalizeUpstreamError } from '../openai/upstream-error.ts';
import { createNormalizer } from '../openai/dialects/create-normalizer.ts';
import { StreamRelay, type StreamKind } from '../relay/stream-relay.ts';
import { forward, type Forwarded } from '../upstream/forward.ts';
import type { GatewayContext } from './context.ts';
import { readBody } from './body.ts';
import { sendJsonError } from './send-error.ts';
import { SseWriter } from './sse-writer.ts';
import type { RequestLogEntry } from './request-log.ts';
import type { HttpRequest, HttpResponse } from './http-types.ts';
import type { StreamWriter } from '../relay/writer.ts';
import type { Upstream } from '../upstream/upstream.ts';

const UPSTREAM_PATHS: Record<RequestKind, string> = {
  chat: '/chat/completions',
  completion: '/completions',
  responses: '/responses',
  embeddings: '/embeddings',
};

/** Per-request facts gathered for the log line. */
export interface RequestInfo {
  id: string;
  method: string;
  path: string;
  startedPerf: number;
}

/**
 * POST /v1/chat/completions, /v1/completions, /v1/responses and /v1/embeddings: validate, route by model, forward
 * with failover, then relay the stream (or return the JSON answer).
 */
export async function handleGenerate(ctx: GatewayContext, kind: RequestKind, req: HttpRequest, res: HttpResponse, info: RequestInfo): Promise<void> {
  const entry = newLogEntry(info);
  const done = logWhenDone(ctx, entry, info.startedPerf);

  let parsed;
  try {
    const raw = await readBody(req, ctx.config.limits.max_body_bytes);
    parsed = parseRequest(kind, raw);
  } catch (err) {
    return failEarly(res, toSluiceError(err), entry, done);
  }
  entry.model = parsed.model;
  entry.stream = parsed.stream && kind !== 'embeddings';
  let routed: Routed;
  try {
    if (!ctx.registry.serves(parsed.model)) await ctx.registry.rediscoverIfStale();
    routed = routeRequest(ctx, parsed, info.id);
  } catch (err) {
    return failEarly(res, toSluiceError(err), entry, done);
  }

  if (!entry.stream) return nonStream(ctx, kind, res, routed.replicas, routed.body, routed.headers, entry, done);

  // HTTP/1.1: the client's FIN is seen in the read that brings it, while the response's 'close' waits for the end of
  // the event loop's poll phase, after every other ready read (a burst of hundreds of chunks under load). Node's
  // server treats a FIN as the end of the request anyway (httpAllowHalfOpen is off), so abort at the FIN.
  const socket = req.httpVersionMajor === 1 ? (res as ServerResponse).socket : null;
  const clientGone = (): void => relay.clientClosed();
  const relay = startStream(ctx, kind as StreamKind, parsed, routed, new SseWriter(res), entry, () => {
    socket?.off('end', clientGone);
    done();
  });
  res.on('close', clientGone);
  socket?.once('end', clientGone);
}

/** A request routed to its replicas, with the body and headers to send upstream. */
export interface Routed {
  replicas: Upstream[];
  body: string;
  headers: Record<string, string>;
}

/** Picks the replicas serving the request's model (best first). Throws SluiceError when none does. */
export function routeRequest(ctx: GatewayContext, parsed: ParsedRequest, requestId: string): Routed {
  const replicas = ctx.registry.route(parsed.model);
  if (replicas.length === 0) {
    const known = ctx.registry.models().map((m) => m.id);
    throw ctx.registry.upstreams.length > 0 && known.length === 0
      ? new SluiceError('SLUICE_NO_HEALTHY_UPSTREAM', 'No upstream has answered model discovery yet; no model is available.')
      : new SluiceError('SLUICE_MODEL_NOT_FOUND', `The model '${parsed.model}' does not exist. Available models: ${known.join(', ') || '(none)'}.`, { param: 'model', wireCode: 'model_not_found' });
  }
  const stream = parsed.stream && parsed.kind !== 'embeddings';
  return {
    replicas,
    body: upstreamBody(parsed, ctx.registry.resolve(parsed.model)),
    headers: { 'content-type': 'application/json', accept: stream ? 'text/event-stream' : 'application/json', 'x-request-id': requestId },
  };
}

/**
 * Runs one streamed generation into any transport's writer (SSE over HTTP/1.1 or HTTP/2 here; WebSocket messages in
 * src/ws/): the relay with heartbeats and timeouts, the upstream request with failover, the log line at the end.
 * Returns the relay at once; the transport calls `relay.clientClosed()` when its client goes away or cancels.
 */
export function startStream(
  ctx: GatewayContext,
  kind: StreamKind,
  parsed: ParsedRequest,
  routed: Routed,
  writer: StreamWriter,
  entry: RequestLogEntry,
  done: () => void,
): StreamRelay {
  let release: (() => void) | undefined;
  const relay = new StreamRelay({
    kind,
    writer,
    ticker: ctx.ticker,
    heartbeatMs: ctx.config.heartbeat_ms,
    timeouts: {
      firstByteMs: ctx.config.timeouts.first_byte_ms,
      idleMs: ctx.config.timeouts.idle_ms,
      totalMs: ctx.config.timeouts.total_ms,
      clientStallMs: ctx.config.timeouts.client_stall_ms,
    },
    clientWantsUsage: parsed.wantsUsage,
    choices: parsed.choices,
    maxEventBytes: ctx.config.limits.max_event_bytes,
    onFinish: (r) => {
      ctx.streams.delete(relay);
      release?.();
      entry.outcome = r.outcome;
      entry.error_code = r.error?.code;
      entry.status = writer.opened ? 200 : (r.error?.status ?? 200);
      entry.ttft_ms = r.ttftMs === undefined ? undefined : round(r.ttftMs);
      entry.tokens_in = r.usage?.promptTokens;
      entry.tokens_out = r.usage?.completionTokens;
      done();
    },
  });
  ctx.streams.add(relay);
  // `routed` (with the request body) is used here only, so the stream's closures do not keep it alive.
  const forwarding = forward(routed.replicas, {
    path: UPSTREAM_PATHS[kind],
    body: routed.body,
    headers: routed.headers,
    signal: relay.signal,
    maxErrorBytes: 64 * 1024,
  });
  relayUpstream(forwarding).catch((err: unknown) => relay.fail(toSluiceError(err)));
  return relay;

  async function relayUpstream(forwarding: Promise<Forwarded>): Promise<void> {
    let forwarded: Forwarded;
    try {
      forwarded = await forwarding;
    } catch (err) {
      relay.fail(toSluiceError(err), 'upstream_error');
      return;
    }
    release = forwarded.release;
    entry.upstream = forwarded.upstream.name;
    if (relay.finished) {
      forwarded.response.body.destroy();
      forwarded.release();
      return;
    }
    const { statusCode, headers: upHeaders, body: upBody } = forwarded.response;
    const contentType = String(upHeaders['content-type'] ?? '');
    if (statusCode >= 200 && statusCode < 300 && contentType.includes('text/event-stream')) {
      // The engine's dialect is normalized on the way through (none for vLLM: its stream is OpenAI's already).
      const normalizer = kind === 'responses' ? undefined : createNormalizer(forwarded.upstream.activeDialect, { kind, reasoningField: ctx.config.reasoning_field, stripVendorFields: ctx.config.strip_vendor_fields });
      relay.attach(upBody, normalizer);
      return;
    }
    // A 4xx (bad request, unknown model upstream, context too long) or a 2xx that is not a stream: pass it on cleanly.
    const { text } = await upBody.text(64 * 1024);
    if (statusCode >= 200 && statusCode < 300) {
      relay.fail(new SluiceError('SLUICE_UPSTREAM_BAD_RESPONSE', `upstream ${forwarded.upstream.name} answered a stream request with '${contentType || 'no content type'}' instead of text/event-stream`));
      return;
    }
    const e = normalizeUpstreamError(text, statusCode);
    relay.fail(new SluiceError('SLUICE_UPSTREAM_ERROR', e.message, { status: clientStatus(statusCode), type: e.type, param: e.param, wireCode: e.code === null ? null : String(e.code) }));
  }
}

/** A fresh log line for a request; filled in as it goes and written by `logWhenDone`'s callback. */
export function newLogEntry(info: RequestInfo): RequestLogEntry {
  return {
    ts: '', // the request's start, written by logWhenDone's callback only when the line is logged
    id: info.id,
    method: info.method,
    path: info.path,
    model: undefined,
    upstream: undefined,
    status: 0,
    stream: false,
    ttft_ms: undefined,
    tokens_in: undefined,
    tokens_out: undefined,
    duration_ms: 0,
    outcome: 'completed',
    error_code: undefined,
  };
}

/** The callback that completes and writes a request's log line. */
export function logWhenDone(ctx: GatewayContext, entry: RequestLogEntry, startedPerf: number): () => void {
  return () => {
    entry.duration_ms = round(performance.now() - startedPerf);
    if (!ctx.config.log.requests) return;
    entry.ts = new Date(performance.timeOrigin + startedPerf).toISOString();
    ctx.log(entry);
  };
}

async function nonStream(
  ctx: GatewayContext,
  kind: RequestKind,
  res: HttpResponse,
  replicas: Parameters<typeof forward>[0],
  body: string,
  headers: Record<string, string>,
  entry: RequestLogEntry,
  done: () => void,
): Promise<void> {
  const controller = new AbortController();
  const onClose = (): void => {
    if (!res.writableEnded) controller.abort(clientAbortedError());
  };
  res.on('close', onClose);
  const total = ctx.config.timeouts.total_ms;
  const timer = total > 0 ? setTimeout(() => controller.abort(new SluiceError('SLUICE_TOTAL_TIMEOUT', `request exceeded the total timeout of ${total} ms`)), total) : undefined;
  timer?.unref();
  let forwarded: Forwarded | undefined;
  try {
    forwarded = await forward(replicas, { path: UPSTREAM_PATHS[kind], body, headers, signal: controller.signal, maxErrorBytes: 64 * 1024 });
    entry.upstream = forwarded.upstream.name;
    const { statusCode, headers: upHeaders } = forwarded.response;
    const { text, truncated } = await forwarded.response.body.text(ctx.config.limits.max_response_bytes);
    if (truncated) throw new SluiceError('SLUICE_UPSTREAM_BAD_RESPONSE', `upstream response exceeds ${ctx.config.limits.max_response_bytes} bytes`);
    if (statusCode >= 400) {
      const e = normalizeUpstreamError(text, statusCode);
      throw new SluiceError('SLUICE_UPSTREAM_ERROR', e.message, { status: clientStatus(statusCode), type: e.type, param: e.param, wireCode: e.code === null ? null : String(e.code) });
    }
    const usage = readUsage(text);
    entry.tokens_in = usage?.promptTokens;
    entry.tokens_out = usage?.completionTokens;
    entry.status = statusCode;
    (res as ServerResponse).writeHead(statusCode, { 'content-type': String(upHeaders['content-type'] ?? 'application/json'), 'content-length': Buffer.byteLength(text) });
    res.end(text);
  } catch (err) {
    const e = controller.signal.aborted && controller.signal.reason instanceof SluiceError ? controller.signal.reason : toSluiceError(err);
    entry.outcome = e.code === 'SLUICE_CLIENT_ABORTED' ? 'client_aborted' : e.code === 'SLUICE_TOTAL_TIMEOUT' ? 'timeout' : 'upstream_error';
    entry.error_code = e.code;
    entry.status = e.status;
    if (!res.destroyed) sendJsonError(res, e);
  } finally {
    if (timer) clearTimeout(timer);
    res.off('close', onClose);
    forwarded?.release();
    done();
  }
}

function failEarly(res: HttpResponse, err: SluiceError, entry: RequestLogEntry, done: () => void): void {
  entry.outcome = 'rejected';
  entry.status = err.status;
  entry.error_code = err.code;
  sendJsonError(res, err);
  done();
}

const round = (ms: number): number => Math.round(ms * 10) / 10;
