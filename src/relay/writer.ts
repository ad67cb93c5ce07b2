import type { SluiceError } from '../errors.ts';

/**
 * Where a relayed stream goes. The relay speaks in events; a writer turns them into a transport's bytes (SSE over
 * HTTP/1.1 or HTTP/2 in src/http/; WebSocket messages in src/ws/). Events are queued and written together by
 * `flush()`, so one upstream read becomes one write.
 */
export interface StreamWriter {
  /**
   * Optional: headers for the response's head, before `open()` (the key's `x-ratelimit-*`). Transports without a
   * head of their own per stream (WebSocket) leave it out.
   */
  setHeaders?(headers: Readonly<Record<string, string>>): void;
  /** Commits the response (status 200 and stream headers). Idempotent. */
  open(): void;
  readonly opened: boolean;
  /** A `data:` event (chat/completions chunk JSON; `[DONE]` is `done()`). */
  data(json: string): void;
  /** A named event (`/v1/responses` framing). */
  named(event: string, json: string): void;
  heartbeat(): void;
  /** Optional: an SSE comment line (one line, no CR/LF; the hop report). Transports without comments leave it out. */
  comment?(text: string): void;
  done(): void;
  /** Writes what was queued. false: the client's buffer is full; wait for `onDrain`. */
  flush(): boolean;
  /**
   * Optional: writes upstream bytes that already are complete SSE frames in this transport's framing, after what was
   * queued. Transports that re-frame events (WebSocket) leave it out and get events instead.
   */
  writeRaw?(frames: Buffer): boolean;
  onDrain(cb: () => void): void;
  /** Ends the response normally (after `done()` or an error event). */
  end(): void;
  /**
   * Reports an error the client can see, then ends the response: before `open()`, the transport's own refusal (an
   * HTTP status with OpenAI's JSON body, a WebSocket error message); after it, `inBand` writes the stream's own error
   * event (the protocol's `writeError`), unless the transport has its own terminal error message.
   */
  fail(err: SluiceError, inBand: () => void): void;
  /** Tears the connection down (the client left or stalled). */
  destroy(): void;
  /** True once the client connection is gone or ended. */
  readonly closed: boolean;
}
