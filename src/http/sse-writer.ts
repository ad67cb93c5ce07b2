import type { ServerResponse } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
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

/** Writes SSE frames to an HTTP/1.1 or HTTP/2 response. */
export class SseWriter implements StreamWriter {
  #res: ServerResponse | Http2ServerResponse;
  #extraHeaders: Record<string, string>;
  #queue = '';
  #opened = false;

  constructor(res: ServerResponse | Http2ServerResponse, extraHeaders: Record<string, string> = {}) {
    this.#res = res;
    this.#extraHeaders = extraHeaders;
  }

  open(): void {
    if (this.#opened) return;
    this.#opened = true;
    const res = this.#res;
    for (const [k, v] of Object.entries(SSE_HEADERS)) res.setHeader(k, v);
    for (const [k, v] of Object.entries(this.#extraHeaders)) res.setHeader(k, v);
    // A stream never carries Content-Length or Content-Encoding (DESIGN.md).
    res.removeHeader('content-length');
    res.removeHeader('content-encoding');
    res.statusCode = 200;
    // Headers go out now, before the first token.
    if ('flushHeaders' in res) res.flushHeaders();
    else res.writeHead(200);
    if ('socket' in res && res.socket && 'setNoDelay' in res.socket) res.socket.setNoDelay(true);
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
    return (this.#res as ServerResponse).write(q);
  }

  writeRaw(frames: Buffer): boolean {
    if (this.closed) return true;
    const res = this.#res as ServerResponse;
    if (this.#queue !== '') {
      const q = this.#queue;
      this.#queue = '';
      res.write(q);
    }
    return res.write(frames);
  }

  onDrain(cb: () => void): void {
    (this.#res as ServerResponse).once('drain', cb);
  }

  end(): void {
    const q = this.#queue;
    this.#queue = '';
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
    this.#res.destroy();
  }

  get closed(): boolean {
    return this.#res.writableEnded || this.#res.destroyed;
  }

  get pendingBytes(): number {
    return this.#res.writableLength;
  }
}
