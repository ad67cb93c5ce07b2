import type { SluiceError } from '../errors.ts';
import type { StreamWriter } from '../relay/writer.ts';
import type { WsChannel } from './channel.ts';

/**
 * How one stream's events become WebSocket messages. Chunks are spliced into the message as the same JSON text the
 * SSE stream carries, never parsed and re-serialized.
 */
export interface WsFraming {
  data(json: string): string;
  named(event: string, json: string): string;
  /** The end of a completed stream (SSE's `[DONE]`); undefined when the protocol has none. */
  done(): string | undefined;
  /** The terminal error message when the framing has its own, or undefined to use the relay's in-band event. */
  error(err: SluiceError, opened: boolean): string | undefined;
  /** The terminal message after the client cancelled the stream; undefined for none. */
  cancelled(): string | undefined;
}

/**
 * A `StreamWriter` that sends one relay's events as messages on a shared WebSocket connection (several streams may
 * share it: /v1/ws multiplexes). Backpressure is the connection's: when its socket holds more than the configured
 * bytes, `flush()` reports it and the relay pauses its upstream until `onDrain`.
 */
export class WsStreamWriter implements StreamWriter {
  readonly #channel: WsChannel;
  readonly #framing: WsFraming;
  readonly #onEnd: () => void;
  #queue: string[] = [];
  #opened = false;
  #ended = false;
  #cancelled = false;

  /** `onEnd` runs once when the stream is over (completed, failed, cancelled or cut). */
  constructor(channel: WsChannel, framing: WsFraming, onEnd: () => void) {
    this.#channel = channel;
    this.#framing = framing;
    this.#onEnd = onEnd;
  }

  /** Marks the coming `destroy()` as the client's own cancel: the stream ends with a `cancelled` message. */
  cancel(): void {
    this.#cancelled = true;
  }

  open(): void {
    this.#opened = true;
  }

  get opened(): boolean {
    return this.#opened;
  }

  data(json: string): void {
    this.#queue.push(this.#framing.data(json));
  }

  named(event: string, json: string): void {
    this.#queue.push(this.#framing.named(event, json));
  }

  /** Nothing to send: the connection's ping frames keep proxies and NATs from idling it out. */
  heartbeat(): void {}

  done(): void {
    const m = this.#framing.done();
    if (m !== undefined) this.#queue.push(m);
  }

  flush(): boolean {
    const q = this.#queue;
    if (q.length > 0) {
      this.#queue = [];
      for (const m of q) this.#channel.send(m);
    }
    return this.#channel.writable;
  }

  onDrain(cb: () => void): void {
    this.#channel.onDrain(cb);
  }

  end(): void {
    if (this.#ended) return;
    this.flush();
    this.#finish();
  }

  fail(err: SluiceError, inBand: () => void): void {
    if (this.#ended) return;
    const m = this.#framing.error(err, this.#opened);
    if (m === undefined) inBand();
    else this.#queue.push(m);
    this.end();
  }

  /** The client cancelled (see `cancel()`), left, or stalled past the limit. A stalled reader's connection is
   * dropped: every stream on it is stuck behind the same full socket, and a close frame would never get through. */
  destroy(): void {
    if (this.#ended) return;
    this.#queue = [];
    if (this.#cancelled) {
      const m = this.#framing.cancelled();
      if (m !== undefined) this.#channel.send(m);
    } else if (this.#channel.open) {
      this.#channel.terminate();
    }
    this.#finish();
  }

  get closed(): boolean {
    return this.#ended || !this.#channel.open;
  }

  #finish(): void {
    this.#ended = true;
    this.#onEnd();
  }
}
