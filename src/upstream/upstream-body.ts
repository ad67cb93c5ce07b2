import type { Dispatcher, Pool } from 'undici';
import type { IncomingHttpHeaders } from 'node:http';
import type { UpstreamSource, UpstreamSink } from '../relay/upstream-source.ts';

/**
 * An upstream response body delivered straight from undici's dispatch callbacks, without a Node Readable in between:
 * profiling showed undici's body stream costing more CPU per chunk than all of Sluice's own per-chunk code
 * (docs/performance.md). Flow control goes to undici's controller (pause stops reading the socket).
 */
export class UpstreamBody implements UpstreamSource {
  #controller: Dispatcher.DispatchController | undefined;
  #sink: UpstreamSink | undefined;
  #early: Buffer[] = []; // data that arrived before a consumer attached
  #state: 'open' | 'ended' | 'failed' | 'destroyed' = 'open';
  #error: Error | undefined;
  #onSettled: (() => void) | undefined;

  /** @internal called by the dispatch handler. */
  start(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
  }

  /** @internal */
  push(chunk: Buffer): void {
    if (this.#state !== 'open') return;
    if (this.#sink) this.#sink.data(chunk);
    else this.#early.push(chunk);
  }

  /** @internal */
  complete(): void {
    if (this.#state !== 'open') return;
    this.#state = 'ended';
    this.#sink?.end();
    this.#onSettled?.();
  }

  /** @internal */
  failed(err: Error): void {
    if (this.#state !== 'open') return;
    this.#state = 'failed';
    this.#error = err;
    this.#sink?.error(err);
    this.#onSettled?.();
  }

  consume(sink: UpstreamSink): void {
    this.#sink = sink;
    const early = this.#early;
    this.#early = [];
    for (const c of early) sink.data(c);
    if (this.#state === 'ended') sink.end();
    else if (this.#state === 'failed') sink.error(this.#error as Error);
  }

  pause(): void {
    this.#controller?.pause();
  }

  resume(): void {
    this.#controller?.resume();
  }

  destroy(): void {
    if (this.#state !== 'open') return;
    this.#state = 'destroyed';
    const c = this.#controller;
    if (c && !c.aborted) c.abort(new Error('upstream request aborted by the gateway'));
    this.#onSettled?.();
  }

  get done(): boolean {
    return this.#state !== 'open';
  }

  /** Discards the rest of the body (so the connection can be reused), destroying it if it lingers past `ms`. */
  drain(ms: number): void {
    if (this.#state !== 'open') return;
    this.#sink = { data() {}, end() {}, error() {} };
    this.#controller?.resume();
    const timer = setTimeout(() => this.destroy(), ms);
    timer.unref();
    this.#onSettled = () => clearTimeout(timer);
  }

  /** Reads the whole body as text, at most `max` bytes (the rest is discarded and the request aborted). */
  text(max: number): Promise<{ text: string; truncated: boolean }> {
    return new Promise((resolve) => {
      const parts: Buffer[] = [];
      let size = 0;
      const finish = (truncated: boolean): void => resolve({ text: Buffer.concat(parts, size).toString('utf8'), truncated });
      this.consume({
        data: (chunk) => {
          if (size + chunk.length > max) {
            parts.push(chunk.subarray(0, max - size));
            size = max;
            this.destroy();
            finish(true);
            return;
          }
          parts.push(chunk);
          size += chunk.length;
        },
        end: () => finish(false),
        error: () => finish(false),
      });
    });
  }
}

export interface UpstreamResponse {
  statusCode: number;
  headers: IncomingHttpHeaders;
  body: UpstreamBody;
}

/**
 * Sends one request through a pool with undici's dispatch API. Resolves when the response headers arrive; rejects
 * with the connect/request error, or with `signal.reason` when aborted before then. Aborting later ends the body.
 */
export function dispatchRequest(pool: Pool, options: Dispatcher.DispatchOptions, signal: AbortSignal): Promise<UpstreamResponse> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(abortReason(signal));
      return;
    }
    const handler = new DispatchHandler(new UpstreamBody(), signal, resolve, reject);
    signal.addEventListener('abort', handler, { once: true });
    pool.dispatch(options, handler);
  });
}

const abortReason = (signal: AbortSignal): Error => (signal.reason instanceof Error ? signal.reason : new Error('aborted'));

/**
 * undici's callbacks for one request, and the signal's `abort` listener (`handleEvent`). One object rather than a
 * closure per callback: it lives as long as the stream, and memory per open stream counts (docs/performance.md).
 */
class DispatchHandler implements Dispatcher.DispatchHandler {
  readonly #body: UpstreamBody;
  readonly #signal: AbortSignal;
  #controller: Dispatcher.DispatchController | undefined;
  #started = false;
  /** Settle `dispatchRequest`'s promise. Dropped once the response starts: they would keep its result alive. */
  #resolve: ((response: UpstreamResponse) => void) | undefined;
  #reject: ((err: Error) => void) | undefined;

  constructor(body: UpstreamBody, signal: AbortSignal, resolve: (response: UpstreamResponse) => void, reject: (err: Error) => void) {
    this.#body = body;
    this.#signal = signal;
    this.#resolve = resolve;
    this.#reject = reject;
  }

  handleEvent(): void {
    const reason = abortReason(this.#signal);
    if (this.#controller && !this.#controller.aborted) this.#controller.abort(reason);
    if (!this.#started) this.#reject?.(reason);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    this.#body.start(controller);
    if (this.#signal.aborted) controller.abort(abortReason(this.#signal));
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    // undici keeps the raw header Buffers on the controller for the response's life, and they are views of the
    // socket read that carried them: drop them (`headers` is the parsed copy).
    controller.rawHeaders = null;
    this.#started = true;
    const resolve = this.#resolve;
    this.#resolve = undefined;
    this.#reject = undefined;
    resolve?.({ statusCode, headers, body: this.#body });
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#body.push(chunk);
  }

  onResponseEnd(): void {
    this.#signal.removeEventListener('abort', this);
    this.#body.complete();
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    this.#signal.removeEventListener('abort', this);
    if (!this.#started) this.#reject?.(this.#signal.aborted && this.#signal.reason instanceof Error ? this.#signal.reason : err);
    else this.#body.failed(err);
  }
}
