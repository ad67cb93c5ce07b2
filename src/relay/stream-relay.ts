import { createParser, SseBufferOverflowError, type SseEvent, type SseParser } from '../sse/parser.ts';
import { clientAbortedError, SluiceError, withoutStacks, type SluiceErrorCode } from '../errors.ts';
import type { TokenUsage } from '../openai/usage.ts';
import { upstreamFailure } from '../openai/upstream-failure.ts';
import type { Ticker, Tickable } from './ticker.ts';
import type { StreamWriter } from './writer.ts';
import type { EventVerdict, StreamProtocol, TokenSource, UpstreamStream } from './protocol.ts';
import type { UpstreamSource } from './upstream-source.ts';
import type { ArrivalTrace } from '../upstream/arrival-stats.ts';

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
  /** What the stream's events mean (chat/completions or Responses): src/relay/protocol.ts. */
  protocol: StreamProtocol;
  writer: StreamWriter;
  ticker: Ticker;
  heartbeatMs: number;
  timeouts: RelayTimeouts;
  maxEventBytes: number;
  onFinish(result: RelayResult): void;
  /**
   * An attached upstream failed (its connection lost, an error event, a cut answer, the idle timeout): return true to
   * take the failure over (mid-stream failover, src/generation/mid-stream.ts). The relay then lets that upstream go,
   * keeps the client stream open (heartbeats, the total timeout, and the first-byte timeout from now) and waits for
   * `attach` with another; false, or no hook, ends the stream with the error.
   */
  onUpstreamFailure?: ((err: SluiceError) => boolean) | undefined;
}

export interface RelayResult {
  outcome: Outcome;
  error: SluiceError | undefined;
  usage: TokenUsage | undefined;
  tokenSource: TokenSource | undefined;
  /** `performance.now()` at the first and the last upstream read that carried events; undefined when none came. */
  firstEventAt: number | undefined;
  lastEventAt: number | undefined;
  /** Heartbeats written. */
  heartbeats: number;
}

/**
 * Where a stream is in its life:
 * - `connecting`: no upstream body yet (the request is being forwarded, with failover); heartbeats run, and the
 *   first-byte and total timeouts;
 * - `waiting`: an upstream answered and its body is attached, no event yet: the first-byte timeout still runs;
 * - `streaming`: events flow; the idle timeout watches the gaps between reads;
 * - `ended`: completed or failed; nothing more is written.
 * Orthogonal to these, a stream is paused while its client's buffer is full (`#pausedSince`): the upstream is not
 * read, no timeout but the client-stall one runs, and no heartbeat is added to the full buffer.
 */
type Phase = 'connecting' | 'waiting' | 'streaming' | 'ended';

/**
 * One stream's life, from the moment a request is accepted until its response ends: heartbeats (also while the
 * upstream is connecting, queueing or prefilling), upstream events to the client, backpressure, the four timeouts,
 * abort on client disconnect, and the error event or completed end. What the events mean (finish, usage, in-band
 * errors, the wire's error event) is the protocol object's business; the relay reads no JSON.
 *
 * The transport is behind `StreamWriter` and the upstream is any `UpstreamSource` of SSE bytes: `attach` may be
 * called again with another upstream (mid-stream failover, resume) and the client stream goes on.
 */
export class StreamRelay implements Tickable {
  readonly #o: RelayOptions;
  readonly #protocol: StreamProtocol;
  readonly #abort = new AbortController();
  #phase: Phase = 'connecting';
  /** The ticker's clock when the client's buffer filled; 0 while not paused. */
  #pausedSince = 0;
  /** Created on the first read that needs it (reads passed through byte for byte never do). */
  #parser: SseParser | undefined;
  readonly #startedAt: number;
  /** Since when the first-byte timeout runs: the start, or the moment the stream began waiting for another upstream. */
  #waitFrom: number;
  #body: UpstreamSource | undefined;
  /** Reads may be offered to the protocol's byte pass-through (decided per attached upstream). */
  #rawOk = false;
  /** The attached upstream's arrival statistics (events per read, gaps), when the generation keeps them. */
  #trace: ArrivalTrace | undefined;
  #lastWriteAt: number;
  #lastReadAt = 0;
  #firstEventPerf: number | undefined;
  #lastEventPerf: number | undefined;
  #heartbeats = 0;

  constructor(options: RelayOptions) {
    this.#o = options;
    this.#protocol = options.protocol;
    options.ticker.add(this);
    this.#startedAt = options.ticker.now;
    this.#waitFrom = this.#startedAt;
    this.#lastWriteAt = this.#startedAt;
  }

  /** Aborted when the stream ends for any reason other than completion: pass it to the upstream request. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  get finished(): boolean {
    return this.#phase === 'ended';
  }

  /**
   * Streams a 2xx `text/event-stream` upstream body to the client, through the upstream dialect's normalizer when
   * it has one. Called again with another upstream's body, it continues the same client stream from there.
   */
  attach(body: UpstreamSource, source: UpstreamStream = {}): void {
    if (this.#phase === 'ended') {
      body.destroy();
      return;
    }
    if (this.#body !== undefined && this.#body !== body) this.#body.destroy();
    this.#parser?.reset(); // an unfinished event of the previous upstream is not continued by this one
    this.#body = body;
    this.#trace = source.trace;
    this.#rawOk = this.#protocol.attach(source) && this.#o.writer.writeRaw !== undefined;
    if (this.#phase === 'connecting') this.#phase = 'waiting';
    this.#o.writer.open();
    this.#lastReadAt = this.#o.ticker.now;
    // Only the upstream attached now is heard: one let go after a failure may still deliver what it had.
    body.consume({
      data: (chunk) => body === this.#body && this.#onData(chunk),
      end: () => body === this.#body && this.#onEnd(),
      error: (err) => body === this.#body && this.#onUpstreamError(err),
    });
    if (this.#pausedSince !== 0 && body === this.#body) body.pause(); // attached while the client's buffer is full
  }

  /** The client connection closed. Before the end of the stream, this aborts the upstream at once. */
  clientClosed(): void {
    if (this.#phase !== 'ended') this.#finish('client_aborted', clientAbortedError());
  }

  /** Ends the stream with an error visible to the client (JSON before headers, an error event after). */
  fail(err: SluiceError, outcome: Outcome = 'upstream_error'): void {
    if (this.#phase !== 'ended') this.#finish(outcome, err);
  }

  tick(now: number): void {
    const phase = this.#phase;
    if (phase === 'ended') return;
    const o = this.#o;
    const t = o.timeouts;
    if (this.#pausedSince !== 0) {
      if (t.clientStallMs > 0 && now - this.#pausedSince >= t.clientStallMs) {
        this.#finish('client_stalled', new SluiceError('SLUICE_CLIENT_STALLED', `client read nothing for ${t.clientStallMs} ms`));
      }
      return; // a paused upstream is not idle, and heartbeats would only add to a full buffer
    }
    if (t.totalMs > 0 && now - this.#startedAt >= t.totalMs) {
      return this.#timeout('SLUICE_TOTAL_TIMEOUT', `stream exceeded the total timeout of ${t.totalMs} ms`);
    }
    if (phase !== 'streaming') {
      if (t.firstByteMs > 0 && now - this.#waitFrom >= t.firstByteMs) {
        const err = new SluiceError('SLUICE_UPSTREAM_FIRST_BYTE_TIMEOUT', `upstream sent no event within ${t.firstByteMs} ms`);
        // An attached upstream that never sent an event has failed like one that went silent: the hook may replace it.
        return phase === 'waiting' ? this.#upstreamFailed('timeout', err) : this.#finish('timeout', err);
      }
    } else if (t.idleMs > 0 && now - this.#lastReadAt >= t.idleMs) {
      return this.#upstreamFailed('timeout', new SluiceError('SLUICE_UPSTREAM_IDLE_TIMEOUT', `upstream sent nothing for ${t.idleMs} ms`));
    }
    if (now - this.#lastWriteAt >= o.heartbeatMs) {
      // Commits the stream if the upstream has not answered yet: from here on, failures become error events.
      o.writer.open();
      o.writer.heartbeat();
      this.#heartbeats++;
      this.#flush();
    }
  }

  #timeout(code: SluiceErrorCode, message: string): void {
    this.#finish('timeout', new SluiceError(code, message));
  }

  #firstEvent(): void {
    this.#phase = 'streaming';
    this.#firstEventPerf ??= this.#lastEventPerf; // another upstream's first event is not the stream's
  }

  #onData(chunk: Buffer): void {
    if (this.#phase === 'ended') return;
    this.#lastReadAt = this.#o.ticker.now;
    // The precise clock once per read (not per event) for time per output token; the coarse one above for timeouts.
    const perf = (this.#lastEventPerf = performance.now());
    const trace = this.#trace;
    trace?.read(perf, chunk.length);
    const w = this.#o.writer;
    // Fast path: a read of whole plain events, with nothing to meter, strip or rewrite, goes out as it came.
    let parser = this.#parser;
    if (this.#rawOk && (parser === undefined || parser.bufferedBytes === 0)) {
      const out = this.#protocol.passRaw(chunk);
      if (out !== null) {
        if (trace !== undefined) trace.events += this.#protocol.rawEvents;
        if (this.#phase !== 'streaming') this.#firstEvent();
        return this.#afterWrite((w.writeRaw as (frames: Buffer) => boolean)(out));
      }
    }
    parser ??= this.#parser = this.#newParser();
    try {
      parser.feed(chunk);
    } catch (err) {
      if (err instanceof SseBufferOverflowError) {
        this.#upstreamFailed('upstream_error', upstreamFailure({ kind: 'bad_response', message: err.message }));
        return;
      }
      throw err;
    }
    if (!this.finished) this.#flush(); // the events just parsed may have ended it
  }

  /** A parser for the attached upstream: once that upstream is let go, the rest of the read it was fed is not heard. */
  #newParser(): SseParser {
    const parser: SseParser = createParser({ onEvent: (ev) => parser === this.#parser && this.#onEvent(ev) }, { maxBufferBytes: this.#o.maxEventBytes });
    return parser;
  }

  #onEvent(ev: SseEvent): void {
    if (this.#phase === 'ended') return;
    if (this.#phase !== 'streaming') this.#firstEvent();
    if (this.#trace !== undefined) this.#trace.events++;
    this.#settle(this.#protocol.onEvent(ev, this.#o.writer));
  }

  #onEnd(): void {
    if (this.#phase === 'ended') return;
    this.#settle(this.#protocol.onUpstreamEnd(this.#o.writer));
  }

  #onUpstreamError(err: Error): void {
    if (this.#phase === 'ended') return;
    this.#upstreamFailed('truncated', upstreamFailure({ kind: 'truncated', message: `upstream connection failed mid-stream: ${err.message}`, cause: err }));
  }

  /** The attached upstream failed: the hook may take it over (another upstream follows), else the stream ends. */
  #upstreamFailed(outcome: Outcome, err: SluiceError): void {
    if (this.#phase === 'ended') return;
    const body = this.#body;
    if (body !== undefined && this.#o.onUpstreamFailure?.(err) === true && (this.#phase as Phase) !== 'ended') {
      body.destroy(); // frees the engine, and the socket of one that hung with its connection open
      this.#body = undefined;
      this.#parser = undefined;
      this.#phase = 'connecting';
      this.#waitFrom = this.#o.ticker.now;
      return;
    }
    this.#finish(outcome, err);
  }

  /** Acts on what the protocol said an event (or the body's end) meant. */
  #settle(v: EventVerdict): void {
    if (v === undefined) return;
    if (v === 'end') this.#finish('completed', undefined);
    else this.#upstreamFailed(v.code === 'SLUICE_UPSTREAM_TRUNCATED' ? 'truncated' : 'upstream_error', v);
  }

  #flush(): void {
    this.#afterWrite(this.#o.writer.flush());
  }

  /** After a write: note the time, and pause the upstream when the client's buffer is full. */
  #afterWrite(accepted: boolean): void {
    const now = this.#o.ticker.now;
    this.#lastWriteAt = now;
    if (accepted || this.#pausedSince !== 0) return;
    // The client's buffer is full: stop reading the upstream until it drains (bounded memory per stream).
    this.#pausedSince = now;
    this.#body?.pause();
    this.#o.writer.onDrain(() => {
      this.#pausedSince = 0;
      this.#lastReadAt = this.#o.ticker.now;
      if (this.#phase !== 'ended') this.#body?.resume();
    });
  }

  #finish(outcome: Outcome, error: SluiceError | undefined): void {
    this.#phase = 'ended';
    const o = this.#o;
    o.ticker.delete(this);
    const w = o.writer;
    if (outcome === 'completed') {
      w.end();
      // After the end, let the upstream response end by itself so its connection is reused; cut it if it lingers.
      const body = this.#body;
      if (body && !body.done) body.drain(2_000);
    } else {
      // Abort first: a disconnected client must free the GPU at once. Nobody reads the stacks of the errors undici and
      // Node make on the way (src/errors.ts, withoutStacks).
      withoutStacks(() => {
        this.#abort.abort(error ?? clientAbortedError());
        this.#body?.destroy();
      });
      if (outcome === 'client_aborted') {
        // The client is gone: the rest (its socket, the log line, metrics, the ledger) can wait for the loop's check
        // phase. When 1,000 clients leave in one read of the loop, every upstream is aborted first instead of each
        // abort waiting behind the bookkeeping of all those before it (docs/performance.md, "Aborts first").
        const result = this.#result(outcome, error);
        setImmediate(() => {
          w.destroy();
          o.onFinish(result);
        });
        return;
      }
      if (outcome === 'client_stalled') w.destroy();
      else if (error) w.fail(error, () => this.#protocol.writeError(w, error));
      else w.end();
    }
    o.onFinish(this.#result(outcome, error));
  }

  #result(outcome: Outcome, error: SluiceError | undefined): RelayResult {
    return {
      outcome,
      error,
      usage: this.#protocol.usage,
      tokenSource: this.#protocol.tokenSource,
      firstEventAt: this.#firstEventPerf,
      lastEventAt: this.#firstEventPerf === undefined ? undefined : this.#lastEventPerf,
      heartbeats: this.#heartbeats,
    };
  }
}
