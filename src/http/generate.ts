import type { IncomingMessage, ServerResponse } from 'node:http';
import { SluiceError, toSluiceError } from '../errors.ts';
import { parseRequest, upstreamBody, type RequestKind } from '../openai/request.ts';
import { readUsage } from '../openai/usage.ts';
import { normalizeUpstreamError } from '../openai/upstream-error.ts';
import { StreamRelay, type StreamKind } from '../relay/stream-relay.ts';
import { forward, readBounded, type Forwarded } from '../upstream/forward.ts';
import type { GatewayContext } from './context.ts';
import { readBody } from './body.ts';
import { sendJsonError } from './send-error.ts';
import { SseWriter } from './sse-writer.ts';
import type { RequestLogEntry } from './request-log.ts';

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
export async function handleGenerate(ctx: GatewayContext, kind: RequestKind, req: IncomingMessage, res: ServerResponse, info: RequestInfo): Promise<void> {
  const entry: RequestLogEntry = {
    ts: new Date().toISOString(),
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
  const done = (): void => {
    entry.duration_ms = round(performance.now() - info.startedPerf);
    if (ctx.config.log.requests) ctx.log(entry);
  };

  let parsed;
  try {
    const raw = await readBody(req, ctx.config.limits.max_body_bytes);
    parsed = parseRequest(kind, raw);
  } catch (err) {
    return failEarly(res, toSluiceError(err), entry, done);
  }
  entry.model = parsed.model;
  entry.stream = parsed.stream && kind !== 'embeddings';
  const replicas = ctx.registry.route(parsed.model);
  if (replicas.length === 0) {
    const known = ctx.registry.models().map((m) => m.id);
    const err = ctx.registry.upstreams.length > 0 && known.length === 0
      ? new SluiceError('SLUICE_NO_HEALTHY_UPSTREAM', 'No upstream has answered model discovery yet; no model is available.')
      : new SluiceError('SLUICE_MODEL_NOT_FOUND', `The model '${parsed.model}' does not exist. Available models: ${known.join(', ') || '(none)'}.`, { param: 'model', wireCode: 'model_not_found' });
    return failEarly(res, err, entry, done);
  }
  const body = upstreamBody(parsed, ctx.registry.resolve(parsed.model));
  const headers = { 'content-type': 'application/json', accept: entry.stream ? 'text/event-stream' : 'application/json', 'x-request-id': info.id };

  if (!entry.stream) return nonStream(ctx, kind, res, replicas, body, headers, entry, done);

  const writer = new SseWriter(res);
  let forwarded: Forwarded | undefined;
  const relay = new StreamRelay({
    kind: kind as StreamKind,
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
      forwarded?.release();
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
  res.on('close', () => relay.clientClosed());

  try {
    forwarded = await forward(replicas, {
      path: UPSTREAM_PATHS[kind],
      body,
      headers,
      signal: relay.signal,
      maxErrorBytes: 64 * 1024,
    });
  } catch (err) {
    relay.fail(toSluiceError(err), 'upstream_error');
    return;
  }
  entry.upstream = forwarded.upstream.name;
  if (relay.finished) {
    forwarded.response.body.destroy();
    forwarded.release();
    return;
  }
  const { statusCode, headers: upHeaders, body: upBody } = forwarded.response;
  const contentType = String(upHeaders['content-type'] ?? '');
  if (statusCode >= 200 && statusCode < 300 && contentType.includes('text/event-stream')) {
    relay.attach(upBody);
    return;
  }
  // A 4xx (bad request, unknown model upstream, context too long) or a 2xx that is not a stream: pass it on cleanly.
  const { text } = await readBounded(upBody, 64 * 1024).catch(() => ({ text: '' }));
  if (statusCode >= 200 && statusCode < 300) {
    relay.fail(new SluiceError('SLUICE_UPSTREAM_BAD_RESPONSE', `upstream ${forwarded.upstream.name} answered a stream request with '${contentType || 'no content type'}' instead of text/event-stream`));
    return;
  }
  const e = normalizeUpstreamError(text, statusCode);
  relay.fail(new SluiceError('SLUICE_UPSTREAM_ERROR', e.message, { status: statusCode, type: e.type, param: e.param, wireCode: e.code === null ? null : String(e.code) }));
}

async function nonStream(
  ctx: GatewayContext,
  kind: RequestKind,
  res: ServerResponse,
  replicas: Parameters<typeof forward>[0],
  body: string,
  headers: Record<string, string>,
  entry: RequestLogEntry,
  done: () => void,
): Promise<void> {
  const controller = new AbortController();
  const onClose = (): void => {
    if (!res.writableEnded) controller.abort(new SluiceError('SLUICE_CLIENT_ABORTED', 'client closed the connection'));
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
    const { text, truncated } = await readBounded(forwarded.response.body, ctx.config.limits.max_response_bytes);
    if (truncated) throw new SluiceError('SLUICE_UPSTREAM_BAD_RESPONSE', `upstream response exceeds ${ctx.config.limits.max_response_bytes} bytes`);
    if (statusCode >= 400) {
      const e = normalizeUpstreamError(text, statusCode);
      throw new SluiceError('SLUICE_UPSTREAM_ERROR', e.message, { status: statusCode, type: e.type, param: e.param, wireCode: e.code === null ? null : String(e.code) });
    }
    const usage = readUsage(text);
    entry.tokens_in = usage?.promptTokens;
    entry.tokens_out = usage?.completionTokens;
    entry.status = statusCode;
    res.writeHead(statusCode, { 'content-type': String(upHeaders['content-type'] ?? 'application/json'), 'content-length': Buffer.byteLength(text) });
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

function failEarly(res: ServerResponse, err: SluiceError, entry: RequestLogEntry, done: () => void): void {
  entry.outcome = 'rejected';
  entry.status = err.status;
  entry.error_code = err.code;
  sendJsonError(res, err);
  done();
}

const round = (ms: number): number => Math.round(ms * 10) / 10;
