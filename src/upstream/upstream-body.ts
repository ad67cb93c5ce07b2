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
    this.#controller?.abort(new Error('upstream request aborted by the gateway'));
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
    const body = new UpstreamBody();
    let controller: Dispatcher.DispatchController | undefined;
    let started = false;
    const onAbort = (): void => {
      const reason = signal.reason instanceof Error ? signal.reason : new Error('aborted');
      if (controller && !controller.aborted) controller.abort(reason);
      if (!started) reject(reason);
    };
    if (signal.aborted) {
      reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    const settle = (): void => signal.removeEventListener('abort', onAbort);
    pool.dispatch(options, {
      onRequestStart(c) {
        controller = c;
        body.start(c);
        if (signal.aborted) c.abort(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
      },
      onResponseStart(_c, statusCode, headers) {
        started = true;
        resolve({ statusCode, headers, body });
      },
      onResponseData(_c, chunk) {
        body.push(chunk);
      },
      onResponseEnd() {
        settle();
        body.complete();
      },
      onResponseError(_c, err) {
        settle();
        if (!started) reject(signal.aborted && signal.reason instanceof Error ? signal.reason : err);
        else body.failed(err);
      },
    });
  });
}
