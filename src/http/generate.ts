import type { ServerResponse } from 'node:http';
import { Http2ServerResponse } from 'node:http2';
import { parseRequest } from '../openai/request.ts';
import { Generation, type GenerationOrigin, type UnaryResponder } from '../generation/generation.ts';
import type { GatewayContext } from '../generation/context.ts';
import type { StreamWriter } from '../relay/writer.ts';
import { readBody } from './body.ts';
import { watchClientGone } from './client-gone.ts';
import { contentTypeRefusal } from './content-type.ts';
import { sendJsonError } from './send-error.ts';
import { Http1SseWriter } from './sse-writer-h1.ts';
import { Http2SseWriter } from './sse-writer-h2.ts';
import type { HttpRequest, HttpResponse } from './http-types.ts';
import { startResumable } from './resume.ts';
import { startBackground } from './responses-background.ts';
import { isBackground } from '../resume/background.ts';
import type { ResumableStream } from '../resume/resumable.ts';
import { HOP_REPORT_HEADER, wantsHopReport } from '../generation/hop-report.ts';

/**
 * POST /v1/chat/completions, /v1/completions, /v1/responses and /v1/embeddings over HTTP/1.1 or HTTP/2: the HTTP
 * adapter of a generation (src/generation/generation.ts). It reads and validates the body, picks the SSE writer of
 * the request's HTTP version or answers JSON, and tells the generation when the client goes away (client-gone.ts).
 */
export async function handleGenerate(ctx: GatewayContext, req: HttpRequest, res: HttpResponse, origin: GenerationOrigin): Promise<void> {
  // Watched from the start: a client that leaves while its body is read or its request waits its turn aborts too.
  // A resumable stream outlives its client for the grace period (docs/resume.md): its leaving only detaches it.
  let resumable: ResumableStream | undefined;
  const gen: Generation = new Generation(ctx, origin, () => {
    unwatch();
    resumable?.finished();
  });
  const unwatch = watchClientGone(req, res, () => (resumable === undefined ? gen.cancel() : resumable.clientLeft()));
  let parsed;
  try {
    // application/json only: a cross-site page's "simple" POST (text/plain, a form) gets no CORS preflight.
    const badType = contentTypeRefusal(req);
    if (badType) throw badType;
    const body = await readBody(req, ctx.config.limits.max_body_bytes);
    gen.received();
    parsed = parseRequest(origin.kind, body);
  } catch (err) {
    sendJsonError(res, gen.reject(err));
    return;
  }
  gen.hopReport = wantsHopReport(req.headers[HOP_REPORT_HEADER]);
  if (isBackground(parsed) && ctx.resume !== undefined) {
    // A background response (docs/resume.md): resumable, and it runs to its end whoever reads it.
    let started;
    try {
      started = startBackground(ctx, req, res, gen, parsed, parsed.stream ? sseWriter(res) : undefined);
    } catch (err) {
      sendJsonError(res, gen.reject(err));
      return;
    }
    if (started !== undefined) {
      resumable = started.resumable;
      await gen.stream(started.request, resumable.writer);
      return;
    }
  }
  if (Generation.streams(parsed)) {
    const writer = sseWriter(res);
    try {
      resumable = startResumable(ctx, req, res, gen, parsed.kind, parsed.model, writer);
    } catch (err) {
      sendJsonError(res, gen.reject(err));
      return;
    }
    await gen.stream(parsed, resumable?.writer ?? writer);
  } else await gen.unary(parsed, jsonResponder(res, gen));
}

/** The SSE writer of the response's HTTP version. */
function sseWriter(res: HttpResponse): StreamWriter & { writeRaw(frames: Buffer): boolean } {
  return res instanceof Http2ServerResponse ? new Http2SseWriter(res) : new Http1SseWriter(res);
}

/** A non-streamed answer: the upstream's JSON with its status, or the error as JSON; each with the key's rate headers. */
function jsonResponder(res: HttpResponse, gen: Generation): UnaryResponder {
  return {
    answer(a) {
      (res as ServerResponse).writeHead(a.status, { ...gen.rateHeaders, 'content-type': a.contentType, 'content-length': Buffer.byteLength(a.body) });
      res.end(a.body);
    },
    fail(err) {
      if (!res.destroyed) sendJsonError(res, err, gen.rateHeaders);
    },
  };
}
