/**
 * Turns an engine's error body — before headers (HTTP error) or in-band (an error frame) — into OpenAI's error
 * object. Shapes seen: OpenAI/vLLM ≥0.8 `{"error":{message,type,param,code}}`; older vLLM/SGLang
 * `{"object":"error","message","type","param","code"}`; TGI `{"error":"…","error_type":"…"}`; FastAPI `{"detail":…}`;
 * llama.cpp `{"error":{"code","message","type"}}`; anything else as text.
 */
export interface OpenAIErrorObject {
  message: string;
  type: string;
  param: string | null;
  code: string | number | null;
}

const MAX_MESSAGE = 2_000;

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v.length > 0 ? v : undefined;
}

function typeForStatus(status: number): string {
  if (status === 401 || status === 403) return 'authentication_error';
  if (status === 404) return 'not_found_error';
  if (status === 429) return 'rate_limit_error';
  if (status === 424) return 'server_error'; // TGI: "Request failed during generation"
  if (status >= 400 && status < 500) return 'invalid_request_error';
  return 'server_error';
}

/** Normalizes a parsed or raw error body. `status` is the HTTP status (or the in-band code when there is one). */
export function normalizeUpstreamError(body: unknown, status: number): OpenAIErrorObject {
  let message: string | undefined;
  let type: string | undefined;
  let param: string | null = null;
  let code: string | number | null = null;
  if (typeof body === 'string') {
    const text = body;
    try {
      body = JSON.parse(text);
    } catch {
      message = text.trim() || undefined;
    }
  }
  if (body !== null && typeof body === 'object' && !Array.isArray(body)) {
    const o = body as Record<string, unknown>;
    const inner = o['error'];
    if (inner !== null && typeof inner === 'object' && !Array.isArray(inner)) {
      const e = inner as Record<string, unknown>;
      message = str(e['message']);
      type = str(e['type']);
      param = str(e['param']) ?? null;
      code = typeof e['code'] === 'string' || typeof e['code'] === 'number' ? e['code'] : null;
    } else if (typeof inner === 'string') {
      message = inner;
      type = str(o['error_type']);
    } else {
      message = str(o['message']) ?? (o['detail'] === undefined ? undefined : typeof o['detail'] === 'string' ? o['detail'] : JSON.stringify(o['detail']));
      type = str(o['type']);
      param = str(o['param']) ?? null;
      code = typeof o['code'] === 'string' || typeof o['code'] === 'number' ? o['code'] : null;
    }
  }
  message = (message ?? `upstream answered HTTP ${status}`).slice(0, MAX_MESSAGE);
  if (type === 'exceed_context_size_error' || CONTEXT_LENGTH.test(message)) {
    // OpenAI's own answer to an over-long prompt; clients and frameworks switch on this code.
    return { message, type: 'invalid_request_error', param, code: 'context_length_exceeded' };
  }
  // vLLM reports a dead engine as BadRequestError/400 in-band (create_streaming_error_response's defaults).
  if (ENGINE_FAILURE.test(message)) return { message, type: 'server_error', param, code: null };
  // Engines use Python exception names as types (vLLM "BadRequestError"); clients switch on OpenAI's types.
  if (type === undefined || !OPENAI_TYPES.has(type)) type = typeForStatus(status);
  return { message, type, param, code };
}

const OPENAI_TYPES = new Set(['invalid_request_error', 'authentication_error', 'not_found_error', 'rate_limit_error', 'server_error', 'timeout_error', 'permission_error']);

/**
 * Over-long prompt messages: vLLM ("This model's maximum context length is …"), SGLang ("… is longer than the
 * model's context length …", "… exceeds the maximum allowed length …"), llama.cpp ("… exceeds the available context
 * size …", "Context size has been exceeded."), TGI ("`inputs` tokens + `max_new_tokens` must be <= …").
 */
const CONTEXT_LENGTH = /maximum context length|longer than the model's context length|exceeds the maximum allowed length|exceeds the available context size|context size has been exceeded|tokens \+ `max_new_tokens` must be <=/i;
const ENGINE_FAILURE = /EngineCore encountered an issue|EngineDeadError|engine loop has died|Engine core .* died/i;

/**
 * The status a client gets for an upstream's error status before headers: TGI answers 422 to validation errors and
 * 424 to failed generations, which OpenAI's clients do not map to an error class; they become 400 and 502.
 */
export function clientStatus(status: number): number {
  if (status === 422) return 400;
  if (status === 424) return 502;
  return status;
}

/** Whether an SSE data payload is an in-band error object rather than a chunk: a byte check of the first key, then
 * a parse only for errors. Chunks start with {"id" or {"object":"chat.completion.chunk"; errors with {"error" or
 * {"object":"error" (older vLLM and SGLang), possibly with spaces (Python's json.dumps). */
export function parseInBandError(data: string): OpenAIErrorObject | null {
  if (data.charCodeAt(0) !== 0x7b /* { */) return null;
  let p = 1;
  while (data.charCodeAt(p) === 0x20) p++;
  if (data.startsWith('"error"', p)) return parseError(data, true);
  if (data.startsWith('"object"', p)) {
    p += 8;
    while (data.charCodeAt(p) === 0x20 || data.charCodeAt(p) === 0x3a /* : */) p++;
    if (data.startsWith('"error"', p)) return parseError(data, true);
  }
  // The same objects with other keys first (an `id` before `"object":"error"`): rare, so a substring check before
  // any parse. Inside JSON strings quotes are escaped, so `"error"` is a key or a whole value.
  return data.includes('"error"') ? parseError(data, false) : null;
}

function parseError(data: string, known: boolean): OpenAIErrorObject | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(data);
  } catch {
    return null;
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return null;
  const o = parsed as Record<string, unknown>;
  if (!known && !(o['object'] === 'error' || (o['error'] !== null && typeof o['error'] === 'object') || typeof o['error'] === 'string')) return null;
  const inner = o['error'];
  const status =
    inner !== null && typeof inner === 'object' && typeof (inner as Record<string, unknown>)['code'] === 'number'
      ? ((inner as Record<string, unknown>)['code'] as number)
      : typeof o['code'] === 'number'
        ? o['code']
        : 500;
  return normalizeUpstreamError(parsed, status);
}
