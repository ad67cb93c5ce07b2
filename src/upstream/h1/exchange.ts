import type { Dispatcher } from 'undici';
import type { IncomingHttpHeaders } from 'node:http';

/** Where an exchange runs: its pool while queued, then its connection. */
export interface ExchangeOwner {
  /** The exchange was aborted: drop it (from the queue) or close its connection. */
  abandon(exchange: Exchange): void;
  pause(): void;
  resume(): void;
}

/**
 * One request and its response: the controller handed to the handler (pause, resume, abort, as undici's
 * `DispatchController`), and the handler's callbacks, each called at most in protocol order and never after the end or
 * an error. Separate from the connection so that a handler holding a stale controller cannot touch the connection's
 * next request.
 */
export class Exchange implements Dispatcher.DispatchController {
  readonly options: Dispatcher.DispatchOptions;
  readonly #handler: Dispatcher.DispatchHandler;
  owner: ExchangeOwner | undefined;
  #aborted = false;
  #paused = false;
  #done = false;
  #reason: Error | null = null;
  rawHeaders: Buffer[] | string[] | IncomingHttpHeaders | null = null;
  rawTrailers: Buffer[] | string[] | IncomingHttpHeaders | null = null;

  constructor(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler) {
    this.options = options;
    this.#handler = handler;
  }

  get aborted(): boolean {
    return this.#aborted;
  }

  get paused(): boolean {
    return this.#paused;
  }

  get reason(): Error | null {
    return this.#reason;
  }

  /** Over: ended, failed or aborted. */
  get done(): boolean {
    return this.#done;
  }

  pause(): void {
    if (this.#paused || this.#done) return;
    this.#paused = true;
    this.owner?.pause();
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    if (!this.#done) this.owner?.resume();
  }

  /** As undici's: the handler's `onResponseError` gets `reason`, at once; the connection is closed, not reused. */
  abort(reason: Error): void {
    if (this.#done) return;
    this.#aborted = true;
    this.#reason = reason;
    const owner = this.owner;
    this.owner = undefined;
    owner?.abandon(this);
    this.fail(reason);
  }

  start(): void {
    try {
      this.#handler.onRequestStart?.(this, {});
    } catch (err) {
      this.abort(err as Error);
    }
  }

  /** False once the handler paused or aborted (parsing stops there). */
  head(status: number, headers: IncomingHttpHeaders, statusText: string): boolean {
    if (this.#done) return false;
    try {
      this.#handler.onResponseStart?.(this, status, headers, statusText);
    } catch (err) {
      this.abort(err as Error);
    }
    return !this.#paused && !this.#done;
  }

  data(chunk: Buffer): boolean {
    if (this.#done) return false;
    try {
      this.#handler.onResponseData?.(this, chunk);
    } catch (err) {
      this.abort(err as Error);
    }
    return !this.#paused && !this.#done;
  }

  end(trailers: IncomingHttpHeaders): void {
    if (this.#done) return;
    this.#done = true;
    this.owner = undefined;
    try {
      this.#handler.onResponseEnd?.(this, trailers);
    } catch (err) {
      // As undici (lib/core/request.js onResponseEnd): a handler that throws at the end gets the error.
      this.#handler.onResponseError?.(this, err as Error);
    }
  }

  fail(err: Error): void {
    if (this.#done) return;
    this.#done = true;
    this.owner = undefined;
    this.#handler.onResponseError?.(this, err);
  }
}
