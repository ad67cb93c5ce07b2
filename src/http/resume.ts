import type { ServerResponse } from 'node:http';
import { SluiceError } from '../errors.ts';
import type { GatewayContext } from '../generation/context.ts';
import type { RequestKind } from '../openai/request.ts';
import type { Tickable } from '../relay/ticker.ts';
import { HEARTBEAT_FRAME } from '../sse/encode.ts';
import { errorFrame, ID_MODE_HEARTBEAT, withId } from '../resume/frames.ts';
import type { StreamInfo, StreamLogStore } from '../resume/log-store.ts';
import { resumeMode } from '../resume/mode.ts';
import { ResumableStream, type Stoppable } from '../resume/resumable.ts';
import { isStreamId, ownerOf, sameOwner } from '../resume/stream-id.ts';
import type { FrameWriter } from '../resume/tee-writer.ts';
import { sendJsonError } from './send-error.ts';
import { SSE_HEADERS } from './sse-writer.ts';
import type { HttpRequest, HttpResponse } from './http-types.ts';

export const STREAM_ID_HEADER = 'x-sluice-stream-id';

/**
 * Makes a streamed request resumable when it asks (`X-Sluice-Resume`) or `resume.default` is on: its log, its id in
 * the `X-Sluice-Stream-Id` response header, and the tee writer the generation writes to. Undefined when it is not
 * resumable. Throws the client's SluiceError (a bad header, the gateway's logs full).
 */
export function startResumable(ctx: GatewayContext, req: HttpRequest, res: HttpResponse, gen: Stoppable, kind: RequestKind, model: string, client: FrameWriter): ResumableStream | undefined {
  const store = ctx.resume;
  if (store === undefined || kind === 'embeddings') return undefined;
  const cfg = ctx.config.resume;
  const mode = resumeMode(req.headers['x-sluice-resume'], cfg.default);
  if (mode === undefined) return undefined;
  const r = new ResumableStream({ store, generation: gen, client, kind, ids: mode.ids, owner: ownerOf(req.headers.authorization), model, graceMs: cfg.grace_ms });
  res.setHeader(STREAM_ID_HEADER, r.id);
  return r;
}

/** Paths under /v1/streams/: `{id}` (GET, follow) and `{id}/cancel` (POST). */
const STREAM_PATH = /^\/v1\/streams\/([^/]+)(\/cancel)?$/;

/**
 * `GET /v1/streams/{id}?after=N` (or `Last-Event-ID: N`): the stream's events from N+1, then live until its end.
 * `POST /v1/streams/{id}/cancel`: stops it now (the upstream is aborted; its log ends with SLUICE_STREAM_CANCELLED).
 * A stream that does not exist, has expired, or was started with another key is the same 404: nobody learns that an
 * id exists without the key that started it.
 */
export async function handleStreams(ctx: GatewayContext, req: HttpRequest, res: HttpResponse, path: string, query: string): Promise<void> {
  req.resume();
  const m = STREAM_PATH.exec(path);
  const store = ctx.resume;
  if (m === null || store === undefined) return sendJsonError(res, notFound(path));
  const id = m[1] as string; // a stream id needs no decoding; anything encoded is not one
  const cancel = m[2] !== undefined;
  const method = req.method ?? 'GET';
  const allow = cancel ? 'POST' : 'GET';
  if (method !== allow) return sendJsonError(res, new SluiceError('SLUICE_METHOD_NOT_ALLOWED', `${method} is not allowed here; use ${allow}.`), { allow });
  const info = await ownStream(store, id, req);
  if (info === undefined) return sendJsonError(res, streamNotFound(id));
  if (cancel) {
    const live = !info.ended && (await store.signal(id, { type: 'cancel' }));
    return json(res, 200, { id, object: 'stream', status: live ? 'cancelled' : 'ended', events: (await store.info(id))?.count ?? info.count });
  }
  const after = cursor(new URLSearchParams(query).get('after'), req.headers['last-event-id']);
  if (info.ended && after > info.count) {
    return sendJsonError(res, new SluiceError('SLUICE_INVALID_REQUEST', `after=${after} is past the end of the stream (${info.count} events)`, { param: 'after' }));
  }
  const attached = await store.attachReader(id);
  if (attached === 'unknown') return sendJsonError(res, streamNotFound(id));
  if (attached === 'full') {
    return sendJsonError(res, new SluiceError('SLUICE_RESUME_TOO_MANY_READERS', `${ctx.config.resume.max_readers} clients already follow this stream (resume.max_readers)`));
  }
  try {
    await follow(ctx, store, info, after, req.headers['x-sluice-resume'] === 'ids', res);
  } finally {
    await store.detachReader(id);
  }
}

/** The stream when it exists and was started with the key of this request. */
export async function ownStream(store: StreamLogStore, id: string, req: HttpRequest): Promise<StreamInfo | undefined> {
  if (!isStreamId(id)) return undefined;
  const info = await store.info(id);
  if (info === undefined || !sameOwner(info.meta.owner, ownerOf(req.headers.authorization))) return undefined;
  return info;
}

/**
 * The cursor: `after` when given, else `Last-Event-ID`, else 0 (the whole stream). A non-negative integer below a
 * billion; anything else is refused rather than read as 0 (a client that sends a bad cursor would get duplicates).
 */
export function cursor(after: string | null, lastEventId: string | string[] | undefined): number {
  const given = after ?? (typeof lastEventId === 'string' ? lastEventId.trim() : undefined);
  if (given === undefined || given === '') return 0;
  if (!/^\d{1,9}$/.test(given)) {
    throw new SluiceError('SLUICE_INVALID_REQUEST', `the cursor must be the number of events already received (0 to 999999999), not '${given.slice(0, 40)}'`, { param: after !== null ? 'after' : 'Last-Event-ID' });
  }
  return Number(given);
}

/**
 * Writes the stream's events after `after` to `res`, then follows it live until its end: SSE with the usual headers,
 * heartbeats on the gateway's ticker while nothing comes, and the reader's own backpressure (it waits for `drain`
 * before reading the log further). The log ends with the stream's own last event (`[DONE]` or an error event); if it
 * vanishes meanwhile (expired), an error event says so, so a cut replay never looks complete.
 */
export async function follow(ctx: GatewayContext, store: StreamLogStore, info: StreamInfo, after: number, askIds: boolean, res: HttpResponse): Promise<void> {
  const ids = info.meta.ids || askIds;
  const out = res as ServerResponse;
  for (const k in SSE_HEADERS) out.setHeader(k, SSE_HEADERS[k] as string);
  out.setHeader(STREAM_ID_HEADER, info.meta.id);
  out.writeHead(200);
  // Headers now, before the first event (HTTP/2's writeHead sends them; HTTP/1.1 waits for a write without this).
  out.flushHeaders();
  const gone = new AbortController();
  const onClose = (): void => gone.abort();
  res.once('close', onClose);
  const beat = new Heartbeat(out, ids ? ID_MODE_HEARTBEAT : HEARTBEAT_FRAME, ctx.config.heartbeat_ms, ctx.ticker.now);
  ctx.ticker.add(beat);
  try {
    let next = after;
    for (;;) {
      const batch = await store.read(info.meta.id, next, gone.signal);
      if (gone.signal.aborted || res.destroyed) return;
      if (batch === undefined) {
        out.end(errorFrame(info.meta.kind, new SluiceError('SLUICE_STREAM_NOT_FOUND', 'the stream expired while it was being read')));
        return;
      }
      let text = '';
      for (const f of batch.events) {
        next++;
        text += ids ? withId(next, f) : f;
      }
      if (batch.ended && next >= batch.count) {
        // A cursor past the end of a stream that was live when the reader came: said, never an empty "success".
        if (next > batch.count) text += errorFrame(info.meta.kind, new SluiceError('SLUICE_INVALID_REQUEST', `after=${after} is past the end of the stream (${batch.count} events)`, { param: 'after' }));
        out.end(text);
        return;
      }
      if (text === '') continue;
      beat.wrote(ctx.ticker.now);
      if (!out.write(text)) await drained(res);
    }
  } finally {
    ctx.ticker.delete(beat);
    res.off('close', onClose);
  }
}

/** A heartbeat for a reader's response whenever nothing was written for `ms`. */
class Heartbeat implements Tickable {
  readonly #res: ServerResponse;
  readonly #frame: string;
  readonly #ms: number;
  #last: number;

  constructor(res: ServerResponse, frame: string, ms: number, now: number) {
    this.#res = res;
    this.#frame = frame;
    this.#ms = ms;
    this.#last = now;
  }

  wrote(now: number): void {
    this.#last = now;
  }

  tick(now: number): void {
    if (now - this.#last < this.#ms || this.#res.writableEnded || this.#res.destroyed) return;
    this.#last = now;
    // Not added to a full buffer: a reader that does not read gets nothing more.
    if (!(this.#res.writableLength > 0)) this.#res.write(this.#frame);
  }
}

function drained(res: HttpResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

const streamNotFound = (id: string): SluiceError =>
  new SluiceError('SLUICE_STREAM_NOT_FOUND', `No resumable stream '${id.slice(0, 64)}': it does not exist, has expired (resume.ttl_ms), or was started with another API key.`, { wireCode: 'stream_not_found' });

const notFound = (path: string): SluiceError => new SluiceError('SLUICE_NOT_FOUND', `Unknown endpoint: ${path.slice(0, 200)}`, { wireCode: 'not_found' });

function json(res: HttpResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  (res as ServerResponse).writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
