import { constants, type Http2ServerResponse } from 'node:http2';
import { SseWriter } from './sse-writer.ts';

/** SSE over HTTP/2 (Node's compatibility API): HEADERS at `open()`, each flush one DATA write on the stream. */
export class Http2SseWriter extends SseWriter<Http2ServerResponse> {
  constructor(res: Http2ServerResponse, extraHeaders: Record<string, string> = {}) {
    super(res, extraHeaders);
  }

  protected sendHead(): void {
    // Tokens are small writes: no Nagle delay on the connection they share (the compatibility API's socket proxy
    // passes this through to the session's socket).
    this.res.socket?.setNoDelay?.(true);
    this.res.writeHead(200);
  }

  flush(): boolean {
    const q = this.queue;
    if (q === '') return true;
    this.queue = '';
    if (this.closed) return true;
    return this.res.write(q);
  }

  writeRaw(frames: Buffer): boolean {
    if (this.closed) return true;
    const q = this.queue;
    if (q !== '') {
      this.queue = '';
      this.res.write(q);
    }
    return this.res.write(frames);
  }

  onDrain(cb: () => void): void {
    this.res.once('drain', cb);
  }

  /**
   * Resets the stream with INTERNAL_ERROR. The compatibility API's `destroy()` resets with NO_ERROR, which an HTTP/2
   * client reads as a complete response: a cut stream must never look whole.
   */
  override destroy(): void {
    this.queue = '';
    const stream = this.res.stream;
    if (stream && !stream.destroyed) stream.close(constants.NGHTTP2_INTERNAL_ERROR);
  }

  /** The compatibility response has no `destroyed`: its stream knows whether it is closed (reset by either side). */
  override get closed(): boolean {
    const stream = this.res.stream;
    return this.res.writableEnded || !stream || stream.destroyed || stream.closed;
  }
}
