/**
 * The errors of Sluice's HTTP/1.1 upstream client, with the `code`s undici's errors carry where they mean the same, so
 * that src/generation/forward.ts (which failures fail over), src/upstream/protocol-failure.ts and
 * src/openai/upstream-failure.ts classify them the same whichever client sent the request:
 * - `UND_ERR_CONNECT_TIMEOUT`: the TCP (or TLS) connect did not complete in time;
 * - `UND_ERR_SOCKET`: the connection closed before the response was complete ('other side closed'), or the upstream
 *   answered 101 Switching Protocols to a request that asked for no upgrade ('bad upgrade');
 * - `UND_ERR_HEADERS_OVERFLOW`: the head (or the trailers) exceeded the size or count limit;
 * - `HPE_*` (name `HTTPParserError`, as llhttp's errors through undici): the response broke HTTP/1.1 framing;
 * - `UND_ERR_ABORTED`, `UND_ERR_DESTROYED`, `UND_ERR_CLOSED`, `UND_ERR_INVALID_ARG`: as undici's.
 * Errors of the socket itself (ECONNREFUSED, ECONNRESET, EPIPE, TLS certificate errors) are passed on as Node raised
 * them, as undici does.
 */
export class H1Error extends Error {
  readonly code: string;

  constructor(code: string, message: string) {
    super(message);
    this.code = code;
    this.name = code.startsWith('HPE_') ? 'HTTPParserError' : 'H1Error';
  }
}

/** A response that breaks HTTP/1.1 framing; `code` is llhttp's name for the same fault where it has one. */
export const parseError = (code: string, message: string): H1Error => new H1Error(`HPE_${code}`, message);

export const headersOverflow = (what: string): H1Error => new H1Error('UND_ERR_HEADERS_OVERFLOW', `Headers Overflow Error: ${what}`);

export const socketClosed = (): H1Error => new H1Error('UND_ERR_SOCKET', 'other side closed');

export const connectTimeout = (host: string, ms: number): H1Error =>
  new H1Error('UND_ERR_CONNECT_TIMEOUT', `Connect Timeout Error (attempted address: ${host}, timeout: ${ms}ms)`);
