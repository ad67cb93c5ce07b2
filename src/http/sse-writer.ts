import type { ServerResponse } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
import type { Socket } from 'node:net';
import { DONE_FRAME, HEARTBEAT_FRAME, dataFrame, namedFrame } from '../sse/encode.ts';
import type { SluiceError } from '../errors.ts';
import type { StreamWriter } from '../relay/writer.ts';
import { sendJsonError } from './send-error.ts';

/** SSE response headers for every stream (DESIGN.md wire rules). */
export const SSE_HEADERS: Readonly<Record<string, string>> = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache, no-transform',
  'x-accel-buffering': 'no',
};

/**
 * Writes SSE frames to an HTTP/1.1 or HTTP/2 response.
 *
 * On HTTP/1.1, once the headers are out, each flush is framed as one HTTP chunk (`<hex size>\r\n<frames>\r\n`) in
 * one Buffer and written straight to the socket: one `write`, where `ServerResponse.write` costs four internal sends,
 * a cork, a `nextTick` and a `writev` of four pieces (docs/performance.md, finding 3). `end()` still goes through
 * the response, which writes the last chunk after these bytes and lets the server reuse the connection. Only when
 * the response owns its socket with nothing queued of its own (not a pipelined response waiting for its turn, not
 * HTTP/1.0); otherwise, and on HTTP/2, every write goes through the response.
 */
export class SseWriter implements StreamWriter {
  #res: ServerResponse | Http2ServerResponse;
  #extraHeaders: Record<string, string>;
  #queue = '';
  #opened = false;
  /** The HTTP/1.1 socket written directly, chunk-framed; undefined when writes go through the response. */
  #socket: Socket | undefined;
  /** HTTP/1.1 headers set but not sent yet: the next write carries them (at the latest on the next tick). */
  #headPending = false;

  constructor(res: ServerResponse | Http2ServerResponse, extraHeaders: Record<string, string> = {}) {
    this.#res = res;
    this.#extraHeaders = extraHeaders;
  }

  open(): void {
    if (this.#opened) return;
    this.#opened = true;
    const res = this.#res;
    for (const k in SSE_HEADERS) res.setHeader(k, SSE_HEADERS[k] as string);
    for (const k in this.#extraHeaders) res.setHeader(k, this.#extraHeaders[k] as string);
    // A stream never carries Content-Length or Content-Encoding (DESIGN.md).
    res.removeHeader('content-length');
    res.removeHeader('content-encoding');
    res.statusCode = 200;
    if ('socket' in res && res.socket && 'setNoDelay' in res.socket) res.socket.setNoDelay(true);
    if (!('flushHeaders' in res)) {
      res.writeHead(200); // HTTP/2: HEADERS now
      return;
    }
    // HTTP/1.1: the headers go out now, before the first token; if upstream bytes are already here (they came in the
    // same read as the upstream's headers), they share the write: flush() and writeRaw() in this tick send both.
    this.#headPending = true;
    process.nextTick(() => this.#sendHead());
  }

  /** Sends the headers alone if no write carried them in the tick of open(). */
  #sendHead(): void {
    if (!this.#headPending) return;
    this.#headPending = false;
    if (this.closed) return;
    (this.#res as ServerResponse).flushHeaders();
    this.#goDirect();
  }

  /** After the headers: write chunks straight to the socket when the response owns it with nothing queued. */
  #goDirect(): void {
    const res = this.#res as ServerResponse;
    const socket = res.socket as Socket | null;
    if (res.chunkedEncoding === true && socket && socket.writable && res.writableLength === socket.writableLength) this.#socket = socket;
  }

  get opened(): boolean {
    return this.#opened;
  }

  data(json: string): void {
    this.#queue += dataFrame(json);
  }

  named(event: string, json: string): void {
    this.#queue += namedFrame(event, json);
  }

  heartbeat(): void {
    this.#queue += HEARTBEAT_FRAME;
  }

  done(): void {
    this.#queue += DONE_FRAME;
  }

  flush(): boolean {
    if (this.#queue === '') return true;
    const q = this.#queue;
    this.#queue = '';
    if (this.closed) return true;
    if (this.#socket) return this.#socket.write(chunkOf(q, undefined));
    return this.#viaResponse(q);
  }

  /** A write through the response; when it carries the headers, later writes may go straight to the socket. */
  #viaResponse(data: string | Buffer): boolean {
    const ok = (this.#res as ServerResponse).write(data);
    if (this.#headPending) {
      this.#headPending = false;
      this.#goDirect();
    }
    return ok;
  }

  writeRaw(frames: Buffer): boolean {
    if (this.closed) return true;
    const q = this.#queue;
    this.#queue = '';
    if (this.#socket) return frames.length === 0 && q === '' ? true : this.#socket.write(chunkOf(q, frames));
    if (q !== '') this.#viaResponse(q);
    return this.#viaResponse(frames);
  }

  onDrain(cb: () => void): void {
    if (this.#socket) this.#socket.once('drain', cb);
    else (this.#res as ServerResponse).once('drain', cb);
  }

  end(): void {
    const q = this.#queue;
    this.#queue = '';
    this.#headPending = false;
    if (this.#res.writableEnded) return;
    if (q) (this.#res as ServerResponse).end(q);
    else this.#res.end();
  }

  fail(err: SluiceError, inBand: () => void): void {
    if (!this.#opened) {
      this.#queue = '';
      if (!this.closed) sendJsonError(this.#res, err, this.#extraHeaders);
      return;
    }
    inBand();
    this.end();
  }

  destroy(): void {
    this.#queue = '';
    this.#headPending = false;
    this.#res.destroy();
  }

  get closed(): boolean {
    return this.#res.writableEnded || this.#res.destroyed;
  }

  get pendingBytes(): number {
    return this.#res.writableLength;
  }
}

const CRLF = 0x0a0d; // "\r\n" as a little-endian uint16

/**
 * One HTTP/1.1 chunk holding `text` (UTF-8) then `bytes`: size line, payload, CRLF, in one Buffer. The caller never
 * passes an empty payload (a zero-size chunk ends the body).
 */
export function chunkOf(text: string, bytes: Buffer | undefined): Buffer {
  const textLen = text === '' ? 0 : Buffer.byteLength(text);
  const size = textLen + (bytes === undefined ? 0 : bytes.length);
  const hex = size.toString(16);
  const out = Buffer.allocUnsafe(hex.length + 2 + size + 2);
  let at = out.write(hex, 0, 'latin1');
  out.writeUInt16LE(CRLF, at);
  at += 2;
  if (textLen !== 0) at += out.write(text, at, 'utf8');
  if (bytes !== undefined) at += bytes.copy(out, at);
  out.writeUInt16LE(CRLF, at);
  return out;
}
