import { SluiceError } from '../errors.ts';
import type { ParsedRequest } from '../openai/request.ts';
import type { StreamMeta } from './log-store.ts';

/**
 * The Responses API's background mode (`background: true`), served from the resumable-stream machinery: the
 * response's id is its stream's id (`resp_…`), the generation runs to its end whether or not anyone reads it, and
 * `GET /v1/responses/{id}?stream=true&starting_after=N`, `GET /v1/responses/{id}` and `POST /v1/responses/{id}/cancel`
 * read and stop it as OpenAI's SDKs call them (src/http/responses-background.ts).
 */

/** Whether a request asks for a background response. */
export function isBackground(parsed: ParsedRequest): boolean {
  return parsed.kind === 'responses' && parsed.body['background'] === true;
}

/**
 * What the engine is sent for a background response: a stream (its events are the log), without `background`, which
 * the gateway implements and engines may refuse. `store: false` is refused as OpenAI does: a background response is
 * stored to be retrieved.
 */
export function backgroundRequest(parsed: ParsedRequest): ParsedRequest {
  if (parsed.body['store'] === false) {
    throw new SluiceError('SLUICE_INVALID_REQUEST', 'Background responses are stored to be retrieved: `background: true` needs `store` true (or unset).', { param: 'store' });
  }
  const body: Record<string, unknown> = { ...parsed.body, stream: true };
  delete body['background'];
  const { raw: _raw, ...rest } = parsed;
  return { ...rest, body, stream: true };
}

/** Responses events whose data carries the whole response object. */
const RESPONSE_EVENTS = new Set(['response.created', 'response.queued', 'response.in_progress', 'response.completed', 'response.failed', 'response.incomplete']);

const SEQUENCE = /"sequence_number":\d+/;

/**
 * Rewrites a background response's events as they are logged and sent: the response object carries the gateway's id
 * (the one the client retrieves and cancels by, not the engine's) and `background: true`; each event's
 * `sequence_number` is its number in the stream minus one, so `starting_after = N` is the cursor `after = N + 1`
 * whatever numbering the engine used.
 */
export function backgroundEvent(id: string): (event: string, json: string, n: number) => string {
  return (event, json, n) => {
    let out = json;
    if (RESPONSE_EVENTS.has(event)) {
      try {
        const o = JSON.parse(json) as Record<string, unknown>;
        const r = o['response'];
        if (r !== null && typeof r === 'object' && !Array.isArray(r)) {
          (r as Record<string, unknown>)['id'] = id;
          (r as Record<string, unknown>)['background'] = true;
          out = JSON.stringify(o);
        }
      } catch {
        // Not JSON: relayed as it came (the protocol already judged it).
      }
    }
    return SEQUENCE.test(out) ? out.replace(SEQUENCE, `"sequence_number":${n - 1}`) : out;
  };
}

/**
 * The response object as `GET /v1/responses/{id}` returns it now, from the log's events: the last response object an
 * event carried (its terminal one once the stream ended), `cancelled` or `failed` when the stream ended with an error
 * event, `queued` before the engine said anything.
 */
export function responseObject(meta: StreamMeta, events: readonly string[], ended: boolean): Record<string, unknown> {
  let snapshot: Record<string, unknown> | undefined;
  let error: { code: string; message: string } | undefined;
  for (let i = events.length - 1; i >= 0 && snapshot === undefined; i--) {
    const f = events[i] as string;
    const nl = f.indexOf('\n');
    if (!f.startsWith('event: ') || nl === -1) continue;
    const type = f.slice(7, nl);
    const data = f.slice(nl + 7, f.endsWith('\n\n') ? -2 : undefined);
    if (type === 'error' && error === undefined && i === events.length - 1) {
      try {
        const e = JSON.parse(data) as { code?: unknown; message?: unknown };
        error = { code: String(e.code ?? 'server_error'), message: String(e.message ?? '') };
      } catch {
        error = { code: 'server_error', message: 'the response failed' };
      }
      continue;
    }
    if (!RESPONSE_EVENTS.has(type)) continue;
    try {
      const o = JSON.parse(data) as { response?: unknown };
      if (o.response !== null && typeof o.response === 'object') snapshot = o.response as Record<string, unknown>;
    } catch {
      // skipped: an earlier event may carry it
    }
  }
  const r: Record<string, unknown> = snapshot ?? {
    id: meta.id,
    object: 'response',
    created_at: Math.floor(meta.createdAt / 1000),
    status: 'queued',
    model: meta.model,
    output: [],
    usage: null,
    error: null,
  };
  r['id'] = meta.id;
  r['background'] = true;
  if (error !== undefined) {
    r['status'] = error.code === 'sluice_stream_cancelled' ? 'cancelled' : 'failed';
    if (r['status'] === 'failed') r['error'] = error;
  } else if (ended && (r['status'] === 'queued' || r['status'] === 'in_progress')) {
    r['status'] = 'failed';
  }
  return r;
}
