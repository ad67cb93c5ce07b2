import { createParser, SseBufferOverflowError, type SseEvent, type SseParser } from '../sse/parser.ts';
import { clientAbortedError, SluiceError, type SluiceErrorCode } from '../errors.ts';
import { parseInBandError, type OpenAIErrorObject } from '../openai/upstream-error.ts';
import { meterChunk, readUsage, type TokenUsage } from '../openai/usage.ts';
import type { Ticker, Tickable } from './ticker.ts';
import type { StreamWriter } from './writer.ts';
import type { ChunkNormalizer } from './normalizer.ts';
import type { UpstreamSource } from './upstream-source.ts';
import { passThroughFinishes } from '../sse/passthrough.ts';

/** Which OpenAI stream is relayed: chat and completions use bare `data:` frames; responses keep `event:` names. */
export type StreamKind = 'chat' | 'completion' | 'responses';

export type Outcome =
  | 'completed'
  | 'client_aborted'
  | 'client_stalled'
  | 'upstream_error'
  | 'truncated'
  | 'timeout'
  | 'shutdown';

export interface RelayTimeouts {
  firstByteMs: number;
  idleMs: number;
  totalMs: number;
  clientStallMs: number;
}

export interface RelayOptions {
  kind: StreamKind;
  writer: StreamWriter;
  ticker: Ticker;
  heartbeatMs: number;
  timeouts: RelayTimeouts;
  /** The client asked for the usage chunk (`stream_options.include_usage`); otherwise it is metered and dropped. */
  clientWantsUsage: boolean;
  /** Choices expected (`n`); a stream is complete when this many finish reasons were seen. */
  choices: number;
  maxEventBytes: number;
  onFinish(result: RelayResult): void;
}

export interface RelayResult {
  outcome: Outcome;
  error: SluiceError | undefined;
  usage: TokenUsage | undefined;
  /** ms from the relay's start to the first upstream event; undefined when none came. */
  ttftMs: number | undefined;
  durationMs: number;
}

const FINISH_KEY = '"finish_reason":';

/**
 * One stream's life, from the moment a request is accepted until its response ends: heartbeats (also while the
 * upstream is connecting, queueing or prefilling), upstream events to the client with usage metering, backpressure,
 * the four timeouts, abort on client disconnect, and the error frame or synthesized `[DONE]` at the end.
 *
 * The transport is behind `StreamWriter` and the upstream is any Readable of SSE bytes, so WebSocket, resumable
 * streams and mid-stream failover can reuse this without change: `attach` may be called again with a new upstream.
 */
export class StreamRelay implements Tickable {
  readonly #o: RelayOptions;
  readonly #abort = new AbortController();
  /** Created on the first read that needs it (reads passed through byte for byte never do). */
  #parser: SseParser | undefined;
  readonly #startedAt: number;
  readonly #startedPerf = performance.now();
  #body: UpstreamSource | undefined;
  #finished = false;
  #lastWriteAt: number;
  #lastReadAt = 0;
  #firstEventPerf: number | undefined;
  #stalledSince = 0;
  #finishes = 0;
  #usage: TokenUsage | undefined;
  #responsesTerminal = false;
  #normalizer: ChunkNormalizer | undefined;
  /** Reads may bypass the parser (no dialect rewriting; chat/completions framing). */
  #rawOk = false;
  /** Finish reasons that make the stream complete: the request's `n`, or what the engine streams (normalizer). */
  #choices: number;

  constructor(options: RelayOptions) {
    this.#o = options;
    this.#startedAt = options.ticker.now;
    this.#lastWriteAt = this.#startedAt;
    this.#choices = options.choices;
    options.ticker.add(this);
  }

  /** Aborted when the stream ends for any reason other than completion: pass it to the upstream request. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  get finished(): boolean {
    return this.#finished;
  }

  /**
   * Streams a 2xx `text/event-stream` upstream body to the client, through the upstream dialect's normalizer when
   * it has one (chat/completions only; engines that already speak OpenAI's stream need none).
   */
  attach(body: UpstreamSource, normalizer?: ChunkNormalizer): void {
    if (this.#finished) {
      body.destroy();
      return;
    }
    this.#body = body;
    this.#normalizer = normalizer;
    this.#rawOk = normalizer === undefined && this.#o.kind !== 'responses';
    this.#choices = normalizer?.choices ?? this.#o.choices;
    this.#o.writer.open();
    this.#lastReadAt = this.#o.ticker.now;
    body.consume({
      data: (chunk) => this.#onData(chunk),
      end: () => this.#onEnd(),
      error: (err) => this.#onUpstreamError(err),
    });
  }

  /** The client connection closed. Before the end of the stream, this aborts the upstream at once. */
  clientClosed(): void {
    if (!this.#finished) this.#finish('client_aborted', undefined);
  }

  /** Ends the stream with an error visible to the client (JSON before headers, an error event after). */
  fail(err: SluiceError, outcome: Outcome = 'upstream_error'): void {
    if (!this.#finished) this.#finish(outcome, err);
  }

  tick(now: number): void {
    if (this.#finished) return;
    const o = this.#o;
    const t = o.timeouts;
    if (this.#stalledSince !== 0) {
      if (t.clientStallMs > 0 && now - this.#stalledSince >= t.clientStallMs) {
        this.#finish('client_stalled', new SluiceError('SLUICE_CLIENT_STALLED', `client read nothing for ${t.clientStallMs} ms`));
      }
      return; // a paused upstream is not idle, and heartbeats would only add to a full buffer
    }
    if (t.totalMs > 0 && now - this.#startedAt >= t.totalMs) {
      return this.#timeout('SLUICE_TOTAL_TIMEOUT', `stream exceeded the total timeout of ${t.totalMs} ms`);
    }
    if (this.#firstEventPerf === undefined) {
      if (t.firstByteMs > 0 && now - this.#startedAt >= t.firstByteMs) {
        return this.#timeout('SLUICE_UPSTREAM_FIRST_BYTE_TIMEOUT', `upstream sent no event within ${t.firstByteMs} ms`);
      }
    } else if (t.idleMs > 0 && now - this.#lastReadAt >= t.idleMs) {
      return this.#timeout('SLUICE_UPSTREAM_IDLE_TIMEOUT', `upstream sent nothing for ${t.idleMs} ms`);
    }
    if (now - this.#lastWriteAt >= o.heartbeatMs) {
      // Commits the stream if the upstream has not answered yet: from here on, failures become error frames.
      o.writer.open();
      o.writer.heartbeat();
      this.#flush();
    }
  }

  #timeout(code: SluiceErrorCode, message: string): void {
    this.#finish('timeout', new SluiceError(code, message));
  }

  #onData(chunk: Buffer): void {
    if (this.#finished) return;
    this.#lastReadAt = this.#o.ticker.now;
    const w = this.#o.writer;
    // Fast path: a read of whole plain chunk events, with nothing to meter, strip or rewrite, goes out as it came.
    let parser = this.#parser;
    if (this.#rawOk && w.writeRaw && (parser === undefined || parser.bufferedBytes === 0)) {
      const finishes = passThroughFinishes(chunk);
      if (finishes !== -1) {
        if (this.#firstEventPerf === undefined) this.#firstEventPerf = performance.now();
        this.#finishes += finishes;
        return this.#afterWrite(w.writeRaw(chunk));
      }
    }
    parser ??= this.#parser = createParser({ onEvent: (ev) => this.#onEvent(ev) }, { maxBufferBytes: this.#o.maxEventBytes });
    try {
      parser.feed(chunk);
    } catch (err) {
      if (err instanceof SseBufferOverflowError) {
        this.#finish('upstream_error', new SluiceError('SLUICE_UPSTREAM_BAD_RESPONSE', err.message));
        return;
      }
      throw err;
    }
    if (!this.#finished) this.#flush();
  }

  #flush(): void {
    this.#afterWrite(this.#o.writer.flush());
  }

  /** After a write: note the time, and pause the upstream when the client's buffer is full. */
  #afterWrite(accepted: boolean): void {
    const w = this.#o.writer;
    this.#lastWriteAt = this.#o.ticker.now;
    if (accepted || this.#stalledSince !== 0) return;
    // The client's buffer is full: stop reading the upstream until it drains (bounded memory per stream).
    this.#stalledSince = this.#o.ticker.now;
    this.#body?.pause();
    w.onDrain(() => {
      this.#stalledSince = 0;
      this.#lastReadAt = this.#o.ticker.now;
      if (!this.#finished) this.#body?.resume();
    });
  }

  #onEvent(ev: SseEvent): void {
    if (this.#finished) return;
    if (this.#firstEventPerf === undefined) this.#firstEventPerf = performance.now();
    const o = this.#o;
    const data = ev.data;
    if (o.kind === 'responses') return this.#onResponsesEvent(ev);

    if (data === '[DONE]') {
      if (this.#normalizer && this.#finishes === 0) {
        // TGI 2.4.0 drops stream errors and old llama.cpp writes them on an `error:` line SSE parsers skip; either
        // way `[DONE]` arrives with no finish reason. That is not an answer. (Not `< choices`: an engine that
        // ignores `n` finishes one choice and is done.)
        this.#finish('truncated', new SluiceError('SLUICE_UPSTREAM_TRUNCATED', 'upstream sent [DONE] before the answer was complete'));
        return;
      }
      o.writer.done();
      this.#finish('completed', undefined);
      return;
    }
    if (this.#normalizer) {
      const r = this.#normalizer.chunk(data);
      if (r === null) return;
      if (typeof r === 'string') return this.#onChunk(r);
      if ('error' in r) return this.#upstreamError(r.error);
      for (const d of r as readonly string[]) {
        this.#onChunk(d);
        if (this.#finished) return;
      }
      return;
    }
    this.#onChunk(data);
  }

  #upstreamError(e: OpenAIErrorObject): void {
    const code = typeof e.code === 'number' ? e.code : 500;
    const status = code >= 400 && code < 600 ? code : 502;
    this.#finish(
      'upstream_error',
      new SluiceError('SLUICE_UPSTREAM_ERROR', e.message, { status, type: e.type, param: e.param, wireCode: e.code === null ? null : String(e.code) }),
    );
  }

  /** One chat/completions chunk: in-band errors, usage metering and stripping, completeness tracking. */
  #onChunk(data: string): void {
    const o = this.#o;
    const inBand = parseInBandError(data);
    if (inBand) return this.#upstreamError(inBand);
    let out = data;
    const usageAt = data.indexOf('"usage"');
    // `"usage":null` (vLLM completions, SGLang and TGI on every chunk) holds nothing to meter: no parse.
    if (usageAt !== -1 && !data.startsWith(':null', usageAt + 7)) {
      const metered = meterChunk(data, !o.clientWantsUsage);
      if (metered.usage) this.#usage = metered.usage;
      if (metered.out === null) return; // a usage-only chunk the client did not ask for
      out = metered.out;
    }
    // Cheap completeness tracking: a non-null finish_reason is `"finish_reason":"…"` (engines may add a space).
    let at = data.indexOf(FINISH_KEY);
    while (at !== -1) {
      let p = at + FINISH_KEY.length;
      if (data.charCodeAt(p) === 0x20) p++;
      if (data.charCodeAt(p) === 0x22) this.#finishes++;
      at = data.indexOf(FINISH_KEY, p);
    }
    o.writer.data(out);
  }

  #onResponsesEvent(ev: SseEvent): void {
    const o = this.#o;
    const type = ev.event;
    if (type === 'error' || (type === undefined && ev.data.startsWith('{"type":"error"'))) {
      let message = 'upstream reported an error';
      let code: string | null = null;
      try {
        const e = JSON.parse(ev.data) as Record<string, unknown>;
        const inner = (e['error'] as Record<string, unknown> | undefined) ?? e;
        if (typeof inner['message'] === 'string') message = inner['message'];
        if (typeof inner['code'] === 'string') code = inner['code'];
      } catch {
        // keep the generic message
      }
      this.#finish('upstream_error', new SluiceError('SLUICE_UPSTREAM_ERROR', message, { wireCode: code }));
      return;
    }
    if (type === 'response.completed' || type === 'response.incomplete' || type === 'response.failed') {
      this.#responsesTerminal = true;
      const usage = readUsage(ev.data);
      if (usage) this.#usage = usage;
    }
    if (ev.data === '[DONE]') {
      // Not part of OpenAI's Responses stream; some engines add it. Clients expect the stream to end here.
      if (this.#responsesTerminal) this.#finish('completed', undefined);
      return;
    }
    if (type === undefined) o.writer.data(ev.data);
    else o.writer.named(type, ev.data);
    if (this.#responsesTerminal) this.#finish('completed', undefined);
  }

  #onEnd(): void {
    if (this.#finished) return;
    const o = this.#o;
    if (o.kind === 'responses' ? this.#responsesTerminal : this.#finishes >= this.#choices) {
      // Engines such as llama.cpp and Ollama end without [DONE]; the answer is complete, so synthesize it.
      if (o.kind !== 'responses') o.writer.done();
      this.#finish('completed', undefined);
      return;
    }
    this.#finish('truncated', new SluiceError('SLUICE_UPSTREAM_TRUNCATED', 'upstream ended the stream before the answer was complete'));
  }

  #onUpstreamError(err: Error): void {
    if (this.#finished) return;
    this.#finish('truncated', new SluiceError('SLUICE_UPSTREAM_TRUNCATED', `upstream connection failed mid-stream: ${err.message}`, { cause: err }));
  }

  #finish(outcome: Outcome, error: SluiceError | undefined): void {
    this.#finished = true;
    const o = this.#o;
    o.ticker.delete(this);
    const w = o.writer;
    if (outcome === 'completed') {
      w.end();
      this.#releaseUpstream();
    } else {
      // Abort first: a disconnected client must free the GPU at once.
      this.#abort.abort(error ?? clientAbortedError());
      this.#body?.destroy();
      if (outcome === 'client_aborted') {
        w.destroy();
      } else if (outcome === 'client_stalled') {
        w.destroy();
      } else if (error) {
        w.fail(error, () => {
          if (o.kind === 'responses') {
            const e = error.toJSON().error;
            w.named('error', JSON.stringify({ type: 'error', code: e.code, message: e.message, param: e.param }));
          } else {
            w.data(JSON.stringify(error.toJSON()));
          }
        });
      } else {
        w.end();
      }
    }
    o.onFinish({
      outcome,
      error,
      usage: this.#usage,
      ttftMs: this.#firstEventPerf === undefined ? undefined : this.#firstEventPerf - this.#startedPerf,
      durationMs: performance.now() - this.#startedPerf,
    });
  }

  /** After [DONE], let the upstream response end by itself so its connection is reused; cut it if it lingers. */
  #releaseUpstream(): void {
    const body = this.#body;
    if (body && !body.done) body.drain(2_000);
  }
}
