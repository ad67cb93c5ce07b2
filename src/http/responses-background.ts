import type { ServerResponse } from 'node:http';
import { SluiceError } from '../errors.ts';
import type { GatewayContext } from '../generation/context.ts';
import type { ParsedRequest } from '../openai/request.ts';
import { backgroundRequest, responseObject } from '../resume/background.ts';
import { ResumableStream, type Stoppable } from '../resume/resumable.ts';
import { ownerOf } from '../resume/stream-id.ts';
import type { FrameWriter } from '../resume/tee-writer.ts';
import { cursor, follow, ownStream, STREAM_ID_HEADER } from './resume.ts';
import { sendJsonError } from './send-error.ts';
import type { HttpRequest, HttpResponse } from './http-types.ts';

/** A background response under way: the request to send the engine and the writer the generation writes to. */
export interface BackgroundStart {
  resumable: ResumableStream;
  request: ParsedRequest;
}

/**
 * `POST /v1/responses` with `background: true` (docs/resume.md, "Responses background mode"): a resumable stream that
 * runs to its end whether or not anyone reads it. Streamed (`stream: true`), the client gets the events as usual and
 * may leave and come back; otherwise it gets the response object at once, `status: "queued"`, and reads the rest
 * with `GET /v1/responses/{id}`. Throws the client's SluiceError (`store: false`, the logs full).
 */
export function startBackground(ctx: GatewayContext, req: HttpRequest, res: HttpResponse, gen: Stoppable, parsed: ParsedRequest, client: FrameWriter | undefined): BackgroundStart | undefined {
  const store = ctx.resume;
  if (store === undefined) return undefined;
  const request = backgroundRequest(parsed);
  const resumable = new ResumableStream({ store, generation: gen, client, kind: 'responses', ids: false, owner: ownerOf(req.headers.authorization), model: parsed.model, graceMs: undefined, background: true });
  res.setHeader(STREAM_ID_HEADER, resumable.id);
  if (client === undefined) {
    const meta = { id: resumable.id, owner: '', kind: 'responses' as const, ids: false, createdAt: Date.now(), model: parsed.model, background: true };
    json(res, 200, responseObject(meta, [], false));
  }
  return { resumable, request };
}

const RESPONSE_PATH = /^\/v1\/responses\/([^/]+)(\/cancel)?$/;

/**
 * `GET /v1/responses/{id}` (the response object now), `GET /v1/responses/{id}?stream=true&starting_after=N` (its
 * events after sequence number N, then live), `POST /v1/responses/{id}/cancel` — for background responses, as the
 * openai SDKs call them (`responses.retrieve`, `responses.cancel`). Unknown, expired and other keys' ids: 404.
 */
export async function handleResponseById(ctx: GatewayContext, req: HttpRequest, res: HttpResponse, path: string, query: string): Promise<void> {
  req.resume();
  const m = RESPONSE_PATH.exec(path);
  const store = ctx.resume;
  const id = m?.[1] ?? '';
  const info = m === null || store === undefined ? undefined : await ownStream(store, id, req);
  if (m === null || store === undefined || info === undefined || !info.meta.background) {
    return sendJsonError(res, new SluiceError('SLUICE_STREAM_NOT_FOUND', `No background response with id '${id.slice(0, 64)}': it does not exist, has expired (resume.ttl_ms), or was created with another API key.`, { wireCode: 'not_found', param: 'response_id' }));
  }
  const cancel = m[2] !== undefined;
  const method = req.method ?? 'GET';
  const allow = cancel ? 'POST' : 'GET';
  if (method !== allow) return sendJsonError(res, new SluiceError('SLUICE_METHOD_NOT_ALLOWED', `${method} is not allowed here; use ${allow}.`), { allow });
  if (cancel) {
    const stopped = !info.ended && (await store.signal(id, { type: 'cancel' }));
    const now = await store.snapshot(id);
    const obj = responseObject(info.meta, now?.events ?? [], now?.ended ?? true);
    if (stopped) obj['status'] = 'cancelled';
    return json(res, 200, obj);
  }
  const params = new URLSearchParams(query);
  if (params.get('stream') === 'true') {
    const starting = params.get('starting_after');
    // Sequence numbers start at 0 (src/resume/background.ts numbers them): after sequence number N come events N+2…
    const after = starting === null ? 0 : cursorOf(starting) + 1;
    if (info.ended && after > info.count) {
      return sendJsonError(res, new SluiceError('SLUICE_INVALID_REQUEST', `starting_after=${starting} is past the end of the response's events`, { param: 'starting_after' }));
    }
    const attached = await store.attachReader(id);
    if (attached !== 'ok') {
      return sendJsonError(res, attached === 'full' ? new SluiceError('SLUICE_RESUME_TOO_MANY_READERS', `${ctx.config.resume.max_readers} clients already follow this response (resume.max_readers)`) : new SluiceError('SLUICE_STREAM_NOT_FOUND', 'the response has expired'));
    }
    try {
      await follow(ctx, store, info, after, false, res);
    } finally {
      await store.detachReader(id);
    }
    return;
  }
  const now = await store.snapshot(id);
  json(res, 200, responseObject(info.meta, now?.events ?? [], now?.ended ?? true));
}

function cursorOf(v: string): number {
  try {
    return cursor(v, undefined);
  } catch {
    throw new SluiceError('SLUICE_INVALID_REQUEST', `starting_after must be a sequence number (0 to 999999999), not '${v.slice(0, 40)}'`, { param: 'starting_after' });
  }
}

function json(res: HttpResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  (res as ServerResponse).writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
