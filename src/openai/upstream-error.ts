import { redactSecrets } from './redact.ts';

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
  // Engines and proxies echo request headers in errors (issue 12): the gateway's upstream credentials go, whoever
  // calls this. Before the cut, so that a cut cannot leave half a secret the patterns no longer see.
  message = redactSecrets(message ?? `upstream answered HTTP ${status}`).slice(0, MAX_MESSAGE);
  if (param !== null) param = redactSecrets(param);
  if (typeof code === 'string') code = redactSecrets(code);
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
 * The one status rule: the status a client gets for an upstream answer that is an error. A client reads the status as
 * being about its own request, so statuses that are about the hop between gateway and engine become 502:
 * - 401, 403, 407: the engine (or a proxy in front of it) refused the *gateway's* credentials; passed on, a client
 *   would take it for its own key failing (OpenAI's SDKs raise AuthenticationError and stop retrying);
 * - 1xx, 3xx: interim answers are skipped before this (src/upstream/upstream-body.ts) and redirects are not followed
 *   (a POST with a prompt and a key is not re-sent to wherever a Location points): either as the final answer is the
 *   engine misbehaving;
 * - 2xx: only reaches here for an answer that is an error anyway (`isErrorBody`), without a better status in it;
 * - TGI answers 422 to validation errors and 424 to failed generations, which OpenAI's clients do not map to an error
 *   class: 400 and 502; anything outside 400–599 → 502.
 * Other 4xx (bad request, unknown model, context too long) and 5xx, 429 included, pass through.
 */
export function clientStatus(upstreamStatus: number): number {
  if (upstreamStatus === 422) return 400;
  if (upstreamStatus === 401 || upstreamStatus === 403 || upstreamStatus === 407 || upstreamStatus === 424) return 502;
  if (upstreamStatus < 400 || upstreamStatus > 599) return 502;
  return upstreamStatus;
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

/**
 * Whether a body that came with a 2xx is an error object rather than an answer (issue 12: "a 200 whose body is
 * `{"error":…}`"): `{"error":{…}}` or `{"error":"…"}` (OpenAI, vLLM, TGI, llama.cpp shapes) or old vLLM/SGLang's
 * `{"object":"error",…}`. A Responses object carries `"error": null` when it succeeded and an `error` object when it
 * failed: both are answers in that API's own shape (`status` says which), so `"object":"response"` is never one.
 * Returns the normalized error, or null. Cheap on answers: no parse unless the text contains `"error"`.
 */
export function isErrorBody(text: string): OpenAIErrorObject | null {
  if (!text.includes('"error"')) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return null;
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return null;
  const o = parsed as Record<string, unknown>;
  const object = o['object'];
  const inner = o['error'];
  const isError = object === 'error' || ((object === undefined || object === 'error') && inner !== undefined && inner !== null && (typeof inner === 'object' || typeof inner === 'string'));
  if (!isError) return null;
  const innerCode = inner !== null && typeof inner === 'object' ? (inner as Record<string, unknown>)['code'] : undefined;
  const status = typeof innerCode === 'number' ? innerCode : typeof o['code'] === 'number' ? o['code'] : 500;
  return normalizeUpstreamError(parsed, status);
}

/** The upstream as error messages need it: its name, and a redaction of its secrets that does not show them. */
export interface UpstreamIdentity {
  readonly name: string;
  /** Removes the upstream's credentials (and any credential-looking header value) from text. */
  redact(text: string): string;
}

/** An upstream's `retry-after` when it is one (delay-seconds or an HTTP-date, RFC 9110 §10.2.3), else undefined: the
 * header is relayed to clients, and a hostile upstream could put anything in it. */
export function safeRetryAfter(value: string | string[] | undefined): string | undefined {
  if (typeof value !== 'string') return undefined;
  const v = value.trim();
  if (/^\d{1,9}$/.test(v)) return v;
  return /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(v) ? v : undefined;
}

/** An upstream's `content-type` for a relayed non-streamed answer when it is a plain media type (with at most a
 * charset), else `application/json`: the header is relayed to clients as it is. */
export function safeContentType(value: string | string[] | undefined): string {
  if (typeof value !== 'string') return 'application/json';
  const v = value.trim();
  return /^[\w.+-]{1,64}\/[\w.+-]{1,128}(\s*;\s*charset="?[\w-]{1,32}"?)?$/i.test(v) ? v : 'application/json';
}
