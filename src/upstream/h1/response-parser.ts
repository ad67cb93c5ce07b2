import type { IncomingHttpHeaders } from 'node:http';
import { H1Error, headersOverflow, parseError } from './errors.ts';

/**
 * An incremental HTTP/1.1 response parser (RFC 9112), pure: no sockets, timers or logging. `execute(buf)` takes the
 * bytes as they come, in any split, and calls `onHead`, `onBody`, `onEnd`; it throws an `H1Error` for a response it
 * refuses, after which the parser (and its connection) must not be used again.
 *
 * Policy, where the RFC leaves a choice:
 * - Line ends: CRLF, or a bare LF (RFC 9112 §2.2 lets a recipient accept it); a bare CR anywhere in a line is refused.
 *   The same rule holds for chunk-size lines, the line end after chunk data and trailer lines.
 * - obs-fold (a header line starting with SP or HTAB) is replaced by one SP and joined to the previous field
 *   (RFC 9112 §5.2, what a user agent must do); one before any field is refused.
 * - Whitespace between a field name and its colon is refused (RFC 9112 §5.1), as are control characters in values.
 * - 1xx interim answers (100, 102, 103, …) are skipped, at most `maxInterim` of them; 101 is refused (the client never
 *   asks for an upgrade) with undici's code and message for it, so src/upstream/protocol-failure.ts sees the same.
 * - No body for 1xx, 204, 304 and answers to HEAD, whatever their headers say.
 * - Ambiguous framing is refused rather than guessed: Content-Length together with Transfer-Encoding, differing
 *   Content-Length values (a list of equal ones is one value, RFC 9110 §8.6), a Content-Length that is not digits or
 *   exceeds 2^53, any transfer coding but a single `chunked` (the client sends no TE, so nothing else may come), a
 *   Transfer-Encoding in an HTTP/1.0 answer (RFC 9112 §6.1), chunk sizes that are not hex digits or exceed 2^52.
 * - Neither Content-Length nor chunked: the body runs to the connection's close (`eof()`), and the connection is not
 *   reused.
 * - Bounds: the head (status line and fields with their line ends) and the trailer section each at most
 *   `maxHeadBytes` and `maxHeaders` fields (past them: UND_ERR_HEADERS_OVERFLOW, refused as soon as the limit is
 *   crossed, nothing buffered past it); a chunk-size line with its extensions at most `maxChunkLineBytes`. Bodies are
 *   never buffered: each piece is handed on as a view of the bytes it arrived in.
 */
export interface ParserLimits {
  maxHeadBytes: number;
  maxHeaders: number;
  maxChunkLineBytes: number;
  maxInterim: number;
}

export const DEFAULT_LIMITS: ParserLimits = { maxHeadBytes: 16 * 1024, maxHeaders: 128, maxChunkLineBytes: 1024, maxInterim: 8 };

/** How the body of a response is delimited. */
export type Framing = 'none' | 'length' | 'chunked' | 'close';

export interface ResponseHead {
  status: number;
  statusText: string;
  /** Field names in lower case; a repeated field is an array of its values (as undici's parsed headers). */
  headers: IncomingHttpHeaders;
  framing: Framing;
  /** The connection may carry another request once this response has ended: HTTP/1.1, no `Connection: close`,
   * a body not delimited by the close. */
  keepAlive: boolean;
  /** The server's `Keep-Alive: timeout=N`, in ms, when it sent one. */
  keepAliveMs: number | undefined;
}

export interface ResponseEvents {
  /** The final answer's head. Return false to stop parsing here (paused); `execute` returns. */
  onHead(head: ResponseHead): boolean;
  /** A piece of the body. Return false to stop parsing after it (paused); `execute` returns. */
  onBody(chunk: Buffer): boolean;
  /** The response has ended; `execute` returns with whatever bytes follow unconsumed. */
  onEnd(trailers: IncomingHttpHeaders): void;
}

const STATUS = 1;
const HEADERS = 2;
const BODY_LENGTH = 3;
const BODY_CLOSE = 4;
const CHUNK_SIZE = 5;
const CHUNK_DATA = 6;
const CHUNK_CR = 7;
const CHUNK_LF = 8;
const TRAILERS = 9;
const DONE = 10;
const FAILED = 11;

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAD_VALUE = /[\x00-\x08\x0a-\x1f\x7f]/;
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9][0-9]{2})(?:[ ]([^\x00-\x08\x0a-\x1f\x7f]*))?$/;
const CHUNK_LINE = /^([0-9A-Fa-f]+)(?:[ \t]*;[^\x00-\x08\x0a-\x1f\x7f]*)?$/;
const DIGITS = /^[0-9]+$/;
/** Byte → its hex digit value, -1 for anything else. */
const HEX = new Int8Array(256).fill(-1);
for (let i = 0; i < 10; i++) HEX[48 + i] = i;
for (let i = 0; i < 6; i++) HEX[65 + i] = HEX[97 + i] = 10 + i;

export class ResponseParser {
  readonly #events: ResponseEvents;
  readonly #limits: ParserLimits;
  #state = DONE;
  #noBody = false;
  /** Bytes of the current line that arrived in earlier reads (copied: they are few, and must not pin whole reads). */
  #pieces: Buffer[] = [];
  #pieceBytes = 0;
  /** Index after the line `#line` returned. */
  #next = 0;
  /** Head (or trailer section) bytes so far, and its fields as name/value pairs. */
  #headBytes = 0;
  #fields: string[] = [];
  #version = 1;
  #status = 0;
  #statusText = '';
  #interim = 0;
  /** Bytes left in a Content-Length body or the current chunk. */
  #remaining = 0;

  constructor(events: ResponseEvents, limits: ParserLimits = DEFAULT_LIMITS) {
    this.#events = events;
    this.#limits = limits;
  }

  /** Expects the response to a request with `method` (an answer to HEAD has no body). */
  expect(method: string): void {
    this.#state = STATUS;
    this.#noBody = method === 'HEAD';
    this.#interim = 0;
    this.#startHead();
  }

  /** Between a response's end and the next `expect`, or after a failure: bytes now are bytes nobody asked for. */
  get idle(): boolean {
    return this.#state === DONE || this.#state === FAILED;
  }

  /** In a body that runs to the connection's close. */
  get closeDelimited(): boolean {
    return this.#state === BODY_CLOSE;
  }

  /**
   * Parses `buf` from `from`; returns the index where it stopped: `buf.length`, or earlier when a callback paused it
   * (call again with the rest) or when the response ended (what follows is not part of it). Throws an H1Error.
   */
  execute(buf: Buffer, from = 0): number {
    try {
      return this.#execute(buf, from);
    } catch (err) {
      this.#state = FAILED;
      this.#pieces = [];
      throw err;
    }
  }

  /**
   * The connection was closed by the other side. Ends a body delimited by the close (true); false when the response was
   * not complete (the caller fails it: 'other side closed').
   */
  eof(): boolean {
    if (this.#state !== BODY_CLOSE) return this.#state === DONE;
    this.#state = DONE;
    this.#events.onEnd({});
    return true;
  }

  #execute(buf: Buffer, from: number): number {
    let at = from;
    const end = buf.length;
    while (at < end) {
      switch (this.#state) {
        case STATUS:
        case HEADERS:
        case TRAILERS: {
          const budget = this.#limits.maxHeadBytes - this.#headBytes;
          const line = this.#line(buf, at, budget, this.#state === TRAILERS ? 'trailers' : 'head');
          at = this.#next;
          if (line === undefined) break;
          if (this.#state === STATUS) this.#statusLine(line);
          else if (line !== '') this.#fieldLine(line);
          else if (this.#state === TRAILERS) {
            this.#state = DONE;
            this.#events.onEnd(headersObject(this.#fields));
            return at;
          } else if (!this.#headEnd()) return at;
          break;
        }
        case BODY_LENGTH: {
          const n = Math.min(this.#remaining, end - at);
          const piece = buf.subarray(at, at + n);
          at += n;
          this.#remaining -= n;
          if (this.#remaining === 0) {
            this.#state = DONE;
            this.#events.onBody(piece);
            this.#events.onEnd({});
            return at;
          }
          if (!this.#events.onBody(piece)) return at;
          break;
        }
        case BODY_CLOSE: {
          const piece = from === 0 && at === 0 ? buf : buf.subarray(at);
          at = end;
          if (!this.#events.onBody(piece)) return at;
          break;
        }
        case CHUNK_SIZE: {
          if (this.#pieceBytes === 0) {
            // The common case, read straight from the bytes: hex digits and CRLF within this read, no extension.
            let i = at;
            let size = 0;
            for (; i < end && i - at < 13; i++) {
              const h = HEX[buf[i] as number] as number;
              if (h < 0) break;
              size = size * 16 + h;
            }
            if (i > at && i + 1 < end && buf[i] === 13 && buf[i + 1] === 10) {
              at = i + 2;
              this.#chunk(size);
              break;
            }
          }
          const line = this.#line(buf, at, this.#limits.maxChunkLineBytes, 'chunk');
          at = this.#next;
          if (line === undefined) break;
          const m = CHUNK_LINE.exec(line);
          const hex = m?.[1];
          if (hex === undefined) throw parseError('INVALID_CHUNK_SIZE', `invalid chunk size line '${printable(line)}'`);
          if (hex.replace(/^0+(?=.)/, '').length > 13) throw parseError('INVALID_CHUNK_SIZE', `chunk size ${printable(hex)} exceeds 2^52`);
          this.#chunk(parseInt(hex, 16));
          break;
        }
        case CHUNK_DATA: {
          const n = Math.min(this.#remaining, end - at);
          const piece = buf.subarray(at, at + n);
          at += n;
          this.#remaining -= n;
          if (this.#remaining === 0) this.#state = CHUNK_CR;
          if (!this.#events.onBody(piece)) return at;
          break;
        }
        case CHUNK_CR: {
          const b = buf[at];
          if (b === 13) this.#state = CHUNK_LF;
          else if (b === 10) this.#state = CHUNK_SIZE;
          else throw parseError('INVALID_CHUNK_SIZE', 'chunk data longer than its size (no line end after it)');
          at++;
          break;
        }
        case CHUNK_LF: {
          if (buf[at] !== 10) throw parseError('LF_EXPECTED', 'a bare CR after chunk data');
          this.#state = CHUNK_SIZE;
          at++;
          break;
        }
        default:
          // DONE or FAILED: the bytes are not part of a response the parser expects.
          return at;
      }
    }
    return at;
  }

  /** A chunk-size line was read: the chunk's data follows, or the trailers after the last chunk. */
  #chunk(size: number): void {
    if (size === 0) {
      this.#state = TRAILERS;
      this.#startHead();
    } else {
      this.#remaining = size;
      this.#state = CHUNK_DATA;
    }
  }

  #startHead(): void {
    this.#headBytes = 0;
    this.#fields = [];
    this.#pieces = [];
    this.#pieceBytes = 0;
  }

  /**
   * One line from `buf` at `at`, without its line end; undefined when `buf` ends first (its bytes are kept for the next
   * call). `budget` bounds the line with its line end, across calls. Sets `#next`.
   */
  #line(buf: Buffer, at: number, budget: number, what: 'head' | 'trailers' | 'chunk'): string | undefined {
    const lf = buf.indexOf(10, at);
    const stop = lf === -1 ? buf.length : lf + 1;
    const size = this.#pieceBytes + (stop - at);
    if (size > budget) {
      if (what === 'chunk') throw parseError('CHUNK_EXTENSIONS_OVERFLOW', `chunk-size line longer than ${this.#limits.maxChunkLineBytes} bytes`);
      throw headersOverflow(`${what} longer than ${this.#limits.maxHeadBytes} bytes`);
    }
    this.#next = stop;
    if (lf === -1) {
      if (stop > at) {
        this.#pieces.push(Buffer.from(buf.subarray(at, stop)));
        this.#pieceBytes = size;
      }
      return undefined;
    }
    let bytes = buf.subarray(at, lf);
    if (this.#pieceBytes > 0) {
      this.#pieces.push(bytes);
      bytes = Buffer.concat(this.#pieces);
      this.#pieces = [];
      this.#pieceBytes = 0;
    }
    if (what !== 'chunk') this.#headBytes += size;
    const length = bytes.length > 0 && bytes[bytes.length - 1] === 13 ? bytes.length - 1 : bytes.length;
    const line = bytes.toString('latin1', 0, length);
    if (line.includes('\r')) throw parseError(what === 'chunk' ? 'INVALID_CHUNK_SIZE' : 'CR_EXPECTED', 'a bare CR inside a line');
    return line;
  }

  #statusLine(line: string): void {
    const m = STATUS_LINE.exec(line);
    if (m === null) {
      if (!line.startsWith('HTTP/')) throw parseError('INVALID_CONSTANT', `not an HTTP response: '${printable(line.slice(0, 40))}'`);
      if (!/^HTTP\/1\.[01] /.test(line)) throw parseError('INVALID_VERSION', `unsupported version in '${printable(line.slice(0, 40))}'`);
      throw parseError('INVALID_STATUS', `invalid status line '${printable(line.slice(0, 60))}'`);
    }
    this.#version = m[1] === '1' ? 1 : 0;
    this.#status = Number(m[2]);
    this.#statusText = m[3] ?? '';
    this.#state = HEADERS;
  }

  #fieldLine(line: string): void {
    const fields = this.#fields;
    const first = line.charCodeAt(0);
    if (first === 32 || first === 9) {
      // obs-fold: RFC 9112 §5.2, replaced by SP.
      if (fields.length === 0) throw parseError('INVALID_HEADER_TOKEN', 'a continuation line before any field');
      const value = line.trim();
      if (BAD_VALUE.test(value)) throw parseError('INVALID_HEADER_TOKEN', 'a control character in a field value');
      const last = fields.length - 1;
      fields[last] = value === '' ? (fields[last] as string) : `${fields[last] as string} ${value}`;
      return;
    }
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon) : '';
    if (!TOKEN.test(name)) throw parseError('INVALID_HEADER_TOKEN', `invalid field name in '${printable(line.slice(0, 60))}'`);
    if (fields.length >= this.#limits.maxHeaders * 2) throw headersOverflow(`more than ${this.#limits.maxHeaders} fields`);
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (BAD_VALUE.test(value)) throw parseError('INVALID_HEADER_TOKEN', `a control character in the value of ${name}`);
    fields.push(name.toLowerCase(), value);
  }

  /** The head is complete: skip an interim answer, or decide the framing and report the final one. */
  #headEnd(): boolean {
    const status = this.#status;
    const fields = this.#fields;
    if (status === 101) throw new H1Error('UND_ERR_SOCKET', 'bad upgrade');
    if (status < 200) {
      if (++this.#interim > this.#limits.maxInterim) throw parseError('INVALID_STATUS', `more than ${this.#limits.maxInterim} interim (1xx) answers`);
      this.#state = STATUS;
      this.#startHead();
      return true;
    }
    let te: string | undefined;
    let cl: number | undefined;
    let connection = '';
    let keepAliveMs: number | undefined;
    for (let i = 0; i < fields.length; i += 2) {
      const name = fields[i] as string;
      const value = fields[i + 1] as string;
      if (name === 'transfer-encoding') te = te === undefined ? value : `${te}, ${value}`;
      else if (name === 'content-length') cl = contentLength(value, cl);
      else if (name === 'connection') connection += `,${value.toLowerCase()}`;
      else if (name === 'keep-alive') keepAliveMs = keepAliveTimeout(value) ?? keepAliveMs;
    }
    let framing: Framing;
    if (this.#noBody || status === 204 || status === 304) framing = 'none';
    else if (te !== undefined) {
      if (cl !== undefined) throw parseError('UNEXPECTED_CONTENT_LENGTH', 'both Content-Length and Transfer-Encoding: ambiguous framing');
      if (this.#version === 0) throw parseError('INVALID_TRANSFER_ENCODING', 'Transfer-Encoding in an HTTP/1.0 answer');
      const codings = te.split(',').map((c) => c.trim().toLowerCase()).filter((c) => c !== '');
      if (codings.length !== 1 || codings[0] !== 'chunked') throw parseError('INVALID_TRANSFER_ENCODING', `Transfer-Encoding: ${printable(te.slice(0, 60))} (only a single chunked is accepted)`);
      framing = 'chunked';
    } else if (cl !== undefined) framing = 'length';
    else framing = 'close';
    const closing = this.#version === 0 || connection.split(',').some((t) => t.trim() === 'close');
    const head: ResponseHead = {
      status,
      statusText: this.#statusText,
      headers: headersObject(fields),
      framing,
      keepAlive: !closing && framing !== 'close',
      keepAliveMs,
    };
    this.#fields = [];
    if (framing === 'none' || (framing === 'length' && cl === 0)) {
      this.#state = DONE;
      this.#events.onHead(head);
      this.#events.onEnd({});
      return false;
    }
    if (framing === 'length') {
      this.#remaining = cl as number;
      this.#state = BODY_LENGTH;
    } else this.#state = framing === 'chunked' ? CHUNK_SIZE : BODY_CLOSE;
    return this.#events.onHead(head);
  }
}

/** A Content-Length field's value (a list of equal values is one), checked against the one seen before. */
function contentLength(value: string, before: number | undefined): number {
  let n = before;
  for (const part of value.split(',')) {
    const v = part.trim();
    if (!DIGITS.test(v) || v.length > 16) throw parseError('INVALID_CONTENT_LENGTH', `invalid Content-Length '${printable(value.slice(0, 40))}'`);
    const parsed = Number(v);
    if (!Number.isSafeInteger(parsed)) throw parseError('INVALID_CONTENT_LENGTH', `Content-Length ${v} exceeds 2^53`);
    if (n !== undefined && n !== parsed) throw parseError('UNEXPECTED_CONTENT_LENGTH', `differing Content-Length values (${n} and ${parsed})`);
    n = parsed;
  }
  if (n === undefined) throw parseError('INVALID_CONTENT_LENGTH', 'empty Content-Length');
  return n;
}

/** `Keep-Alive: timeout=5, max=100` → 5000. */
function keepAliveTimeout(value: string): number | undefined {
  const m = /(?:^|[,;\s])timeout\s*=\s*"?(\d{1,9})"?/i.exec(value);
  return m === null ? undefined : Number(m[1]) * 1000;
}

/** name/value pairs → undici's parsed form: lower-case names, a repeated field as an array. */
function headersObject(fields: readonly string[]): IncomingHttpHeaders {
  const out: Record<string, string | string[]> = Object.create(null) as Record<string, string | string[]>;
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i] as string;
    const value = fields[i + 1] as string;
    const had = out[name];
    if (had === undefined) out[name] = value;
    else if (Array.isArray(had)) had.push(value);
    else out[name] = [had, value];
  }
  return out as IncomingHttpHeaders;
}

/** Upstream bytes quoted in an error message: control characters shown as escapes. */
const printable = (s: string): string => JSON.stringify(s).slice(1, -1);
