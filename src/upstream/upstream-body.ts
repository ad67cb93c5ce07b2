import type { Dispatcher } from 'undici';
import type { IncomingHttpHeaders } from 'node:http';
import type { Transform } from 'node:stream';
import type { UpstreamSource, UpstreamSink } from '../relay/upstream-source.ts';
import type { SluiceError } from '../errors.ts';
import { upstreamFailure } from '../openai/upstream-failure.ts';
import { contentCoding, createDecoder, type ContentCoding } from './content-encoding.ts';

/** A whole upstream body read as text by `UpstreamBody.text`. */
export interface BodyText {
  /** What arrived (decoded), at most `max` bytes of it. */
  text: string;
  /** The body (decoded) was longer than `max`: the rest was discarded and the request aborted. */
  truncated: boolean;
  /**
   * Set when the answer is not whole, so `text` must not pass for the upstream's answer: the connection broke before
   * its end (a Content-Length body cut by RST or FIN, a chunked body without its last chunk:
   * SLUICE_UPSTREAM_TRUNCATED), or its content coding could not be decoded (SLUICE_UPSTREAM_BAD_RESPONSE).
   */
  failure: SluiceError | undefined;
}

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
  #coding: ContentCoding | { unsupported: string } = 'identity';

  /** @internal called by the dispatch handler. */
  start(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
  }

  /** @internal called by the dispatch handler with the final answer's headers. */
  head(headers: IncomingHttpHeaders): void {
    this.#coding = contentCoding(headers);
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

  /**
   * Streams the body's bytes as they arrive. A body with a content coding is refused (the sink gets an error and the
   * request is aborted): compressed bytes must never reach a client as if they were a stream (see the policy in
   * src/upstream/content-encoding.ts; `streamCoding` lets callers give the clearer error before they attach).
   */
  consume(sink: UpstreamSink): void {
    const coding = this.#coding;
    if (coding !== 'identity') {
      this.destroy();
      const name = typeof coding === 'string' ? coding : coding.unsupported;
      sink.error(upstreamFailure({ kind: 'bad_response', message: `upstream stream has Content-Encoding: ${name}; the gateway asked for identity and does not decode streams` }));
      return;
    }
    this.#consume(sink);
  }

  #consume(sink: UpstreamSink): void {
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

  /**
   * Reads the whole body as text, decoded when the upstream sent a content coding anyway, at most `max` bytes of it
   * (the rest is discarded and the request aborted). Never rejects: an error body that broke off is still worth
   * quoting. A caller that relays the text as the upstream's answer must check `failure` (or use `wholeText`).
   */
  text(max: number): Promise<BodyText> {
    return new Promise((resolve) => {
      const parts: Buffer[] = [];
      let size = 0;
      let received = 0;
      let settled = false;
      let decoder: Transform | undefined;
      const finish = (truncated: boolean, failure: SluiceError | undefined): void => {
        if (settled) return;
        settled = true;
        decoder?.destroy();
        resolve({ text: Buffer.concat(parts, size).toString('utf8'), truncated, failure });
      };
      const collect = (chunk: Buffer): void => {
        if (settled) return;
        if (size + chunk.length > max) {
          parts.push(chunk.subarray(0, max - size));
          size = max;
          this.destroy();
          finish(true, undefined);
          return;
        }
        parts.push(chunk);
        size += chunk.length;
      };
      const coding = this.#coding;
      if (typeof coding !== 'string') {
        this.destroy();
        finish(false, upstreamFailure({ kind: 'bad_response', message: `answer has Content-Encoding: ${coding.unsupported}, which the gateway cannot decode (it asks for identity)` }));
        return;
      }
      this.#consume({
        data: (chunk) => {
          received += chunk.length;
          if (coding === 'identity') return collect(chunk);
          if (received > max) {
            // Compressed input alone past the limit: its output would be too.
            this.destroy();
            finish(true, undefined);
            return;
          }
          decoder ??= this.#decoder(coding, chunk[0], collect, finish);
          if (!decoder.write(chunk)) {
            this.pause();
            decoder.once('drain', () => this.resume());
          }
        },
        end: () => {
          if (decoder) decoder.end();
          else finish(false, undefined);
        },
        error: (err) => finish(false, brokeOff(err, received)),
      });
    });
  }

  /** A decoder whose output goes to `collect`, bounded there; its end or failure settles `text`. */
  #decoder(
    coding: Exclude<ContentCoding, 'identity'>,
    firstByte: number | undefined,
    collect: (chunk: Buffer) => void,
    finish: (truncated: boolean, failure: SluiceError | undefined) => void,
  ): Transform {
    const decoder = createDecoder(coding, firstByte);
    decoder.on('data', collect);
    decoder.once('end', () => finish(false, undefined));
    decoder.once('error', (err) => {
      this.destroy();
      finish(false, upstreamFailure({ kind: 'bad_response', message: `answer has Content-Encoding: ${coding} but does not decode (${err.message})`, cause: err }));
    });
    return decoder;
  }

  /**
   * The whole body as the upstream's answer: rejects with a SluiceError (`SLUICE_UPSTREAM_TRUNCATED` when it broke
   * off, `SLUICE_UPSTREAM_BAD_RESPONSE` when it does not decode or exceeds `max`) instead of returning part of it.
   * `who` names the upstream in the message.
   */
  async wholeText(max: number, who: string): Promise<string> {
    const r = await this.text(max);
    if (r.failure) {
      const kind = r.failure.code === 'SLUICE_UPSTREAM_TRUNCATED' ? 'truncated' : 'bad_response';
      throw upstreamFailure({ kind, message: `upstream ${who}: ${r.failure.message}`, cause: r.failure });
    }
    if (r.truncated) throw upstreamFailure({ kind: 'bad_response', message: `upstream ${who}: answer exceeds the gateway's limit of ${max} bytes` });
    return r.text;
  }
}

/** The failure of a body whose connection broke before its end. */
function brokeOff(err: Error, received: number): SluiceError {
  const code = (err as { code?: unknown }).code;
  const why = typeof code === 'string' && !err.message.includes(code) ? `${err.message}, ${code}` : err.message;
  return upstreamFailure({ kind: 'truncated', message: `answer broke off after ${received} bytes (${why})`, cause: err });
}

/** What `dispatchRequest` sends through: undici's Pool, or Sluice's own (src/upstream/h1/pool.ts). */
export interface Dispatches {
  dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean;
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
export function dispatchRequest(pool: Dispatches, options: Dispatcher.DispatchOptions, signal: AbortSignal): Promise<UpstreamResponse> {
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
    // undici 8 (client-h1.js onHeadersComplete) hands every interim 1xx answer but 100 to the handler, then the final
    // one: 103 Early Hints, 102 Processing. A client must skip them (RFC 9110 §15.2); the final answer follows.
    if (statusCode < 200) return;
    this.#started = true;
    this.#body.head(headers);
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
