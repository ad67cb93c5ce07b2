import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { SseWriter } from './sse-writer.ts';

/**
 * SSE over HTTP/1.1.
 *
 * Once the headers are out, each flush is framed as one HTTP chunk (`<hex size>\r\n<frames>\r\n`) in one Buffer and
 * written straight to the socket: one `write`, where `ServerResponse.write` costs four internal sends, a cork, a
 * `nextTick` and a `writev` of four pieces (docs/performance.md, finding 3). `end()` still goes through the response,
 * which writes the last chunk after these bytes and lets the server reuse the connection. Only when the response
 * owns its socket with nothing queued of its own (not a pipelined response waiting for its turn, not HTTP/1.0);
 * otherwise every write goes through the response.
 */
export class Http1SseWriter extends SseWriter<ServerResponse> {
  /** The socket written directly, chunk-framed; undefined when writes go through the response. */
  #socket: Socket | undefined;
  /** Headers set but not sent yet: the next write carries them (at the latest on the next tick). */
  #headPending = false;

  constructor(res: ServerResponse, extraHeaders: Record<string, string> = {}) {
    super(res, extraHeaders);
  }

  protected sendHead(): void {
    this.res.socket?.setNoDelay(true);
    // If upstream bytes are already here (they came in the same read as the upstream's headers), they share the
    // write: flush() and writeRaw() in this tick send both.
    this.#headPending = true;
    process.nextTick(() => this.#sendHeadAlone());
  }

  /** Sends the headers alone if no write carried them in the tick of open(). */
  #sendHeadAlone(): void {
    if (!this.#headPending) return;
    this.#headPending = false;
    if (this.closed) return;
    this.res.flushHeaders();
    this.#goDirect();
  }

  /** After the headers: write chunks straight to the socket when the response owns it with nothing queued. */
  #goDirect(): void {
    const res = this.res;
    const socket = res.socket;
    if (res.chunkedEncoding === true && socket && socket.writable && res.writableLength === socket.writableLength) this.#socket = socket;
  }

  flush(): boolean {
    const q = this.queue;
    if (q === '') return true;
    this.queue = '';
    if (this.closed) return true;
    if (this.#socket) return this.#socket.write(chunkOf(q, undefined));
    return this.#viaResponse(q);
  }

  /** A write through the response; when it carries the headers, later writes may go straight to the socket. */
  #viaResponse(data: string | Buffer): boolean {
    const ok = this.res.write(data);
    if (this.#headPending) {
      this.#headPending = false;
      this.#goDirect();
    }
    return ok;
  }

  writeRaw(frames: Buffer): boolean {
    if (this.closed) return true;
    const q = this.queue;
    this.queue = '';
    if (this.#socket) return frames.length === 0 && q === '' ? true : this.#socket.write(chunkOf(q, frames));
    if (q !== '') this.#viaResponse(q);
    return this.#viaResponse(frames);
  }

  onDrain(cb: () => void): void {
    if (this.#socket) this.#socket.once('drain', cb);
    else this.res.once('drain', cb);
  }

  override end(): void {
    this.#headPending = false;
    super.end();
  }

  override destroy(): void {
    this.#headPending = false;
    super.destroy();
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
