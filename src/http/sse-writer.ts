import type { ServerResponse } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
import { DONE_FRAME, HEARTBEAT_FRAME, commentFrame, dataFrame, namedFrame } from '../sse/encode.ts';
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
 * What the HTTP/1.1 and HTTP/2 SSE writers share: the queue of frames written by the next flush, the stream headers,
 * and failing before or after them. Each HTTP version has its own writer (src/http/sse-writer-h1.ts,
 * sse-writer-h2.ts), chosen once per request, as undici keeps `client-h1` and `client-h2` apart.
 */
export abstract class SseWriter<Res extends ServerResponse | Http2ServerResponse> implements StreamWriter {
  protected readonly res: Res;
  #extraHeaders: Record<string, string>;
  /** Frames queued for the next flush. */
  protected queue = '';
  #opened = false;

  constructor(res: Res, extraHeaders: Record<string, string>) {
    this.res = res;
    this.#extraHeaders = extraHeaders;
  }

  /** Adds headers to the response's head (the key's rate-limit headers, known once the request is admitted). */
  setHeaders(headers: Readonly<Record<string, string>>): void {
    this.#extraHeaders = { ...this.#extraHeaders, ...headers };
  }

  open(): void {
    if (this.#opened) return;
    this.#opened = true;
    const res = this.res;
    for (const k in SSE_HEADERS) res.setHeader(k, SSE_HEADERS[k] as string);
    for (const k in this.#extraHeaders) res.setHeader(k, this.#extraHeaders[k] as string);
    // A stream never carries Content-Length or Content-Encoding (DESIGN.md).
    res.removeHeader('content-length');
    res.removeHeader('content-encoding');
    res.statusCode = 200;
    this.sendHead();
  }

  /** Sends the status line and headers now, before the first token (or with it, when it is already here). */
  protected abstract sendHead(): void;

  get opened(): boolean {
    return this.#opened;
  }

  data(json: string): void {
    this.queue += dataFrame(json);
  }

  named(event: string, json: string): void {
    this.queue += namedFrame(event, json);
  }

  heartbeat(): void {
    this.queue += HEARTBEAT_FRAME;
  }

  /** A comment frame; `text` must be one line (the caller's JSON has no raw line breaks). */
  comment(text: string): void {
    this.queue += commentFrame(text.replace(/[\r\n]/g, ' '));
  }

  done(): void {
    this.queue += DONE_FRAME;
  }

  abstract flush(): boolean;
  abstract writeRaw(frames: Buffer): boolean;
  abstract onDrain(cb: () => void): void;

  end(): void {
    const q = this.queue;
    this.queue = '';
    if (this.res.writableEnded) return;
    if (q) this.res.end(q);
    else this.res.end();
  }

  fail(err: SluiceError, inBand: () => void): void {
    if (!this.#opened) {
      this.queue = '';
      if (!this.closed) sendJsonError(this.res, err, this.#extraHeaders);
      return;
    }
    inBand();
    this.end();
  }

  destroy(): void {
    this.queue = '';
    this.res.destroy();
  }

  get closed(): boolean {
    return this.res.writableEnded || this.res.destroyed;
  }
}
