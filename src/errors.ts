/**
 * Every error Sluice reports, with a stable code, the HTTP status it maps to before headers are sent, and the OpenAI
 * error `type`. Upstream failures become SluiceErrors in one factory (src/openai/upstream-failure.ts); one function per
 * wire protocol turns them into bytes (src/openai/error-wire.ts, and src/http/send-error.ts for HTTP responses).
 */

export type OpenAIErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'server_error'
  | 'timeout_error';

interface ErrorSpec {
  status: number;
  type: OpenAIErrorType;
}

export const ERROR_CODES = {
  SLUICE_INVALID_JSON: { status: 400, type: 'invalid_request_error' },
  SLUICE_INVALID_REQUEST: { status: 400, type: 'invalid_request_error' },
  SLUICE_BODY_TOO_LARGE: { status: 413, type: 'invalid_request_error' },
  SLUICE_UNSUPPORTED_MEDIA_TYPE: { status: 415, type: 'invalid_request_error' },
  SLUICE_NOT_FOUND: { status: 404, type: 'invalid_request_error' },
  SLUICE_METHOD_NOT_ALLOWED: { status: 405, type: 'invalid_request_error' },
  SLUICE_MODEL_NOT_FOUND: { status: 404, type: 'invalid_request_error' },
  SLUICE_UNAUTHORIZED: { status: 401, type: 'authentication_error' },
  SLUICE_MODEL_NOT_ALLOWED: { status: 403, type: 'invalid_request_error' },
  /** The admin API was asked to create a key whose name a live key has. */
  SLUICE_KEY_EXISTS: { status: 409, type: 'invalid_request_error' },
  SLUICE_RATE_LIMITED: { status: 429, type: 'rate_limit_error' },
  SLUICE_NO_HEALTHY_UPSTREAM: { status: 503, type: 'server_error' },
  /** Every replica's engine queue is at the saturation threshold and the request may not wait (docs/routing.md). */
  SLUICE_UPSTREAMS_SATURATED: { status: 429, type: 'rate_limit_error' },
  SLUICE_UPSTREAM_CONNECT_ERROR: { status: 502, type: 'server_error' },
  SLUICE_UPSTREAM_CONNECT_TIMEOUT: { status: 504, type: 'timeout_error' },
  SLUICE_UPSTREAM_FIRST_BYTE_TIMEOUT: { status: 504, type: 'timeout_error' },
  SLUICE_UPSTREAM_IDLE_TIMEOUT: { status: 504, type: 'timeout_error' },
  SLUICE_TOTAL_TIMEOUT: { status: 504, type: 'timeout_error' },
  SLUICE_UPSTREAM_ERROR: { status: 502, type: 'server_error' },
  SLUICE_UPSTREAM_BAD_RESPONSE: { status: 502, type: 'server_error' },
  SLUICE_UPSTREAM_TRUNCATED: { status: 502, type: 'server_error' },
  /** The upstream refused the gateway's own credentials (401/403/407): not the client's key, so not a 401. */
  SLUICE_UPSTREAM_AUTH_FAILED: { status: 502, type: 'server_error' },
  SLUICE_CLIENT_ABORTED: { status: 499, type: 'invalid_request_error' },
  SLUICE_CLIENT_STALLED: { status: 408, type: 'timeout_error' },
  SLUICE_SHUTTING_DOWN: { status: 503, type: 'server_error' },
  /** The shared state store (Redis) has been down longer than `state.outage_grace_ms`: a limited key cannot be admitted. */
  SLUICE_STATE_STORE_UNAVAILABLE: { status: 503, type: 'server_error' },
  SLUICE_ORIGIN_NOT_ALLOWED: { status: 403, type: 'invalid_request_error' },
  SLUICE_HOST_NOT_ALLOWED: { status: 403, type: 'invalid_request_error' },
  SLUICE_WS_INVALID_MESSAGE: { status: 400, type: 'invalid_request_error' },
  SLUICE_WS_MESSAGE_TOO_BIG: { status: 413, type: 'invalid_request_error' },
  SLUICE_WS_UNKNOWN_MESSAGE_TYPE: { status: 400, type: 'invalid_request_error' },
  SLUICE_WS_DUPLICATE_ID: { status: 409, type: 'invalid_request_error' },
  SLUICE_WS_UNKNOWN_ID: { status: 404, type: 'invalid_request_error' },
  SLUICE_WS_TOO_MANY_GENERATIONS: { status: 429, type: 'rate_limit_error' },
  SLUICE_STREAM_NOT_FOUND: { status: 404, type: 'invalid_request_error' },
  SLUICE_STREAM_CANCELLED: { status: 499, type: 'invalid_request_error' },
  SLUICE_RESUME_GRACE_EXPIRED: { status: 410, type: 'invalid_request_error' },
  SLUICE_RESUME_LOG_FULL: { status: 503, type: 'server_error' },
  SLUICE_RESUME_TOO_MANY_READERS: { status: 429, type: 'rate_limit_error' },
  SLUICE_RESUME_LOG_LOST: { status: 503, type: 'server_error' },
  SLUICE_RESUME_OWNER_LOST: { status: 503, type: 'server_error' },
  SLUICE_INTERNAL: { status: 500, type: 'server_error' },
} as const satisfies Record<string, ErrorSpec>;

export type SluiceErrorCode = keyof typeof ERROR_CODES;

export interface SluiceErrorOptions {
  /** Overrides the code's default status (an upstream's own status, passed through). */
  status?: number;
  /** Overrides the code's default OpenAI error type. */
  type?: string;
  /** The request field at fault, for `param`. */
  param?: string | null;
  /** The code reported in the wire body; defaults to the Sluice code in lower case. */
  wireCode?: string | null;
  /** Response headers that go with the error before headers (e.g. an upstream's `retry-after`). */
  headers?: Record<string, string>;
  cause?: unknown;
}

export class SluiceError extends Error {
  readonly code: SluiceErrorCode;
  readonly status: number;
  readonly type: string;
  readonly param: string | null;
  readonly wireCode: string | null;
  readonly headers: Readonly<Record<string, string>>;

  constructor(code: SluiceErrorCode, message: string, options: SluiceErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SluiceError';
    this.code = code;
    this.status = options.status ?? ERROR_CODES[code].status;
    this.type = options.type ?? ERROR_CODES[code].type;
    this.param = options.param ?? null;
    this.wireCode = options.wireCode === undefined ? code.toLowerCase() : options.wireCode;
    this.headers = options.headers ?? {};
  }

  /** The OpenAI error object: `{"error":{"message","type","param","code"}}`. */
  toJSON(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.wireCode } };
  }
}

/**
 * Runs `fn` with stack traces off: every Error made inside it has no stack. For the abort of an upstream request,
 * where nobody reads one: Node formats the stack of every error a socket is destroyed with (stream `destroy` reads
 * `err.stack`), undici makes an error of its own for the socket, and 1,000 clients leaving together pay both 1,000
 * times in a row (≈85 µs per abort, 16% of an abort storm's CPU in the idle profile's profile).
 */
export function withoutStacks<T>(fn: () => T): T {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return fn();
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/** The reason a stream's upstream request is aborted when its client left: made without a stack (withoutStacks). */
export function clientAbortedError(): SluiceError {
  return withoutStacks(() => new SluiceError('SLUICE_CLIENT_ABORTED', 'client closed the connection'));
}

/** Wraps anything thrown into a SluiceError (unknown errors become SLUICE_INTERNAL, without leaking internals). */
export function toSluiceError(err: unknown): SluiceError {
  if (err instanceof SluiceError) return err;
  return new SluiceError('SLUICE_INTERNAL', 'internal error in the gateway', { cause: err });
}
