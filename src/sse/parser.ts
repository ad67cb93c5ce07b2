/**
 * A pure, byte-level Server-Sent Events parser (WHATWG HTML §9.2.6 "event stream interpretation").
 *
 * It works on bytes, not strings: lines are found by scanning for LF/CR bytes and decoded only once whole, so a
 * multibyte UTF-8 character split across reads is never mangled. Fragments of an unfinished line are kept as a list
 * and joined once when the line completes (concatenating per read is quadratic for a line spanning many reads).
 * No sockets, timers or logging here.
 */

/** One dispatched event. `data` is the data lines joined with "\n". */
export interface SseEvent {
  /** Value of the last `event:` field, or undefined when none was given. */
  event: string | undefined;
  data: string;
  /** Value of the last `id:` field in this event, or undefined. */
  id: string | undefined;
}

export interface ParserCallbacks {
  onEvent(event: SseEvent): void;
  /** Comment lines (`: keep-alive`), without the leading colon. */
  onComment?(comment: string): void;
  /** `retry:` with a valid integer value. */
  onRetry?(ms: number): void;
}

export interface ParserOptions {
  /** Largest unfinished line or event kept in memory; a larger one throws `SseBufferOverflowError`. */
  maxBufferBytes?: number;
}

export interface SseParser {
  /** Feeds raw bytes as they arrive. May call back synchronously zero or more times. */
  feed(chunk: Uint8Array): void;
  /** Bytes currently held for an unfinished line or event. */
  readonly bufferedBytes: number;
  /** Discards any unfinished line/event; a new stream may follow. */
  reset(): void;
}

export class SseBufferOverflowError extends Error {
  readonly code = 'SLUICE_SSE_BUFFER_OVERFLOW';
  constructor(limit: number) {
    super(`SSE line or event exceeds ${limit} bytes`);
  }
}

const LF = 0x0a;
const CR = 0x0d;
const COLON = 0x3a;
const SPACE = 0x20;
const DEFAULT_MAX_BUFFER = 16 * 1024 * 1024;

/** Creates a parser. Each call to `feed` may produce events through `onEvent`. */
export function createParser(callbacks: ParserCallbacks, options: ParserOptions = {}): SseParser {
  return new Parser(callbacks, options.maxBufferBytes ?? DEFAULT_MAX_BUFFER);
}

/** A class rather than closures over local state: one object per stream instead of a context and seven closures. */
class Parser implements SseParser {
  readonly #callbacks: ParserCallbacks;
  readonly #maxBuffer: number;

  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #skipLeadingLF = false; // last read ended with CR: a following LF belongs to it (CRLF split across reads)
  #atStreamStart = true; // a UTF-8 BOM is only stripped at the very start (spec: "one leading U+FEFF")

  #dataLines: string[] = [];
  #dataBytes = 0;
  #eventType: string | undefined;
  #lastId: string | undefined;

  constructor(callbacks: ParserCallbacks, maxBuffer: number) {
    this.#callbacks = callbacks;
    this.#maxBuffer = maxBuffer;
  }

  get bufferedBytes(): number {
    return this.#pendingBytes + this.#dataBytes;
  }

  reset(): void {
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#dataLines = [];
    this.#dataBytes = 0;
    this.#eventType = undefined;
    this.#skipLeadingLF = false;
    this.#atStreamStart = true;
  }

  feed(chunk: Uint8Array): void {
    let buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (buf.length === 0) return;
    let start = 0;
    if (this.#skipLeadingLF) {
      this.#skipLeadingLF = false;
      if (buf[0] === LF) start = 1;
    }
    if (this.#pending.length > 0) {
      // Join the held fragments with the new read only once the line completes.
      const lf = buf.indexOf(LF, start);
      const cr = buf.indexOf(CR, start);
      if (lf === -1 && cr === -1) {
        this.#hold(buf, start);
        return;
      }
      this.#pending.push(start === 0 ? buf : buf.subarray(start));
      buf = Buffer.concat(this.#pending, this.#pendingBytes + buf.length - start);
      this.#pending = [];
      this.#pendingBytes = 0;
      start = 0;
    }
    if (this.#atStreamStart) {
      if (buf.length - start < 3 && buf.length > start && isBomPrefix(buf, start)) {
        this.#hold(buf, start); // could be the start of a BOM split across reads
        return;
      }
      this.#atStreamStart = false;
      if (buf[start] === 0xef && buf[start + 1] === 0xbb && buf[start + 2] === 0xbf) start += 3;
    }
    const rest = this.#scan(buf, start);
    if (rest < buf.length) this.#hold(buf, rest);
  }

  #dispatch(): void {
    if (this.#dataLines.length === 0) {
      // Spec: an event with no data is not dispatched; its type is reset.
      this.#eventType = undefined;
      return;
    }
    const data = this.#dataLines.length === 1 ? (this.#dataLines[0] as string) : this.#dataLines.join('\n');
    const ev: SseEvent = { event: this.#eventType, data, id: this.#lastId };
    this.#dataLines = [];
    this.#dataBytes = 0;
    this.#eventType = undefined;
    this.#callbacks.onEvent(ev);
  }

  #line(buf: Buffer, start: number, end: number): void {
    if (start === end) {
      this.#dispatch();
      return;
    }
    if (buf[start] === COLON) {
      const onComment = this.#callbacks.onComment;
      if (onComment) {
        let s = start + 1;
        if (buf[s] === SPACE) s++;
        onComment(buf.toString('utf8', s, end));
      }
      return;
    }
    // The common case, `data:`, is recognized from its bytes without decoding the field name.
    if (end - start >= 5 && buf[start] === 0x64 && buf[start + 1] === 0x61 && buf[start + 2] === 0x74 && buf[start + 3] === 0x61 && buf[start + 4] === COLON) {
      const valueStart = buf[start + 5] === SPACE ? start + 6 : start + 5;
      this.#dataBytes += end - valueStart;
      if (this.#dataBytes > this.#maxBuffer) throw new SseBufferOverflowError(this.#maxBuffer);
      this.#dataLines.push(buf.toString('utf8', valueStart, end));
      return;
    }
    let colon = buf.indexOf(COLON, start);
    if (colon === -1 || colon >= end) colon = end;
    const field = buf.toString('latin1', start, colon);
    let valueStart = colon + 1;
    if (valueStart < end && buf[valueStart] === SPACE) valueStart++;
    if (valueStart > end) valueStart = end;
    switch (field) {
      case 'data': {
        this.#dataBytes += end - valueStart;
        if (this.#dataBytes > this.#maxBuffer) throw new SseBufferOverflowError(this.#maxBuffer);
        this.#dataLines.push(buf.toString('utf8', valueStart, end));
        break;
      }
      case 'event':
        this.#eventType = buf.toString('utf8', valueStart, end);
        break;
      case 'id': {
        const id = buf.toString('utf8', valueStart, end);
        if (!id.includes('\0')) this.#lastId = id;
        break;
      }
      case 'retry': {
        const v = buf.toString('latin1', valueStart, end);
        const onRetry = this.#callbacks.onRetry;
        if (onRetry && /^\d+$/.test(v)) onRetry(Number(v));
        break;
      }
      default:
        // Unknown fields are ignored (spec).
        break;
    }
  }

  /** Processes every complete line in buf[from..]; returns the offset of the unfinished tail. */
  #scan(buf: Buffer, from: number): number {
    let pos = from;
    const len = buf.length;
    while (pos < len) {
      const lf = buf.indexOf(LF, pos);
      const cr = buf.indexOf(CR, pos);
      if (lf === -1 && cr === -1) break;
      if (cr !== -1 && (lf === -1 || cr < lf)) {
        this.#line(buf, pos, cr);
        if (cr + 1 < len) {
          pos = buf[cr + 1] === LF ? cr + 2 : cr + 1;
        } else {
          this.#skipLeadingLF = true;
          pos = len;
        }
      } else {
        this.#line(buf, pos, lf);
        pos = lf + 1;
      }
    }
    return pos;
  }

  #hold(buf: Buffer, from: number): void {
    const part = from === 0 ? buf : buf.subarray(from);
    this.#pendingBytes += part.length;
    if (this.#pendingBytes + this.#dataBytes > this.#maxBuffer) throw new SseBufferOverflowError(this.#maxBuffer);
    // Copy: the caller may reuse its read buffer.
    this.#pending.push(Buffer.from(part));
  }
}

function isBomPrefix(buf: Buffer, start: number): boolean {
  const bom = [0xef, 0xbb, 0xbf];
  for (let i = start; i < buf.length; i++) if (buf[i] !== bom[i - start]) return false;
  return true;
}
