import type { SluiceError } from '../errors.ts';
import type { SseEvent } from '../sse/parser.ts';
import type { ResponsesNormalizer } from '../relay/normalizer.ts';
import type { EventVerdict, StreamProtocol, TokenSource, UpstreamStream } from '../relay/protocol.ts';
import type { StreamWriter } from '../relay/writer.ts';
import { responsesErrorEvent } from './error-wire.ts';
import { normalizeUpstreamError, type UpstreamIdentity } from './upstream-error.ts';
import { upstreamFailure } from './upstream-failure.ts';
import { readUsage, type TokenUsage } from './usage.ts';

const TERMINAL = new Set(['response.completed', 'response.incomplete', 'response.failed']);

/**
 * The Responses API stream (`event: <type>` + `data:` framing, kept as it is): complete at its terminal event
 * (`response.completed`, `.incomplete` or `.failed`, which also carries usage), failed at an `error` event.
 */
export class ResponsesStream implements StreamProtocol {
  #terminal = false;
  #upstream: UpstreamIdentity | undefined;
  /** The upstream dialect's fix-up of its events (src/openai/dialects/responses-events.ts), when it needs one. */
  #normalizer: ResponsesNormalizer | undefined;
  #reported: TokenUsage | undefined;
  /** Text deltas relayed: the completion tokens when the stream ends without its usage (cut, aborted). */
  #deltas = 0;

  attach(source: UpstreamStream): boolean {
    this.#upstream = source.upstream;
    this.#normalizer = source.responsesNormalizer;
    return false; // `event:` lines: every read is parsed
  }

  passRaw(): Buffer | null {
    return null;
  }

  readonly rawEvents = 0;

  get usage(): TokenUsage | undefined {
    return this.#reported ?? (this.#deltas > 0 ? { promptTokens: 0, completionTokens: this.#deltas, totalTokens: this.#deltas } : undefined);
  }

  get tokenSource(): TokenSource | undefined {
    return this.#reported ? 'reported' : this.#deltas > 0 ? 'counted' : undefined;
  }

  onEvent(ev: SseEvent, w: StreamWriter): EventVerdict {
    const type = ev.event;
    if (type === 'error' || (type === undefined && ev.data.startsWith('{"type":"error"'))) {
      return upstreamFailure({ kind: 'in_band', upstream: this.#upstream, error: normalizeUpstreamError(ev.data, 502) });
    }
    if (ev.data === '[DONE]') {
      // Not part of OpenAI's Responses stream; some engines add it. Clients expect the stream to end here.
      return this.#terminal ? 'end' : undefined;
    }
    let data = this.#normalizer === undefined ? ev.data : this.#normalizer.event(type, ev.data);
    if (type !== undefined && TERMINAL.has(type)) {
      this.#terminal = true;
      const usage = readUsage(data);
      if (usage) this.#reported = usage;
      // `response.failed` carries the engine's error object, which may echo the gateway's upstream credentials.
      if (type === 'response.failed' && this.#upstream) data = this.#upstream.redact(data);
    }
    else if (type === 'response.output_text.delta' || type === 'response.reasoning_text.delta') this.#deltas++;
    if (type === undefined) w.data(data);
    else w.named(type, data);
    return this.#terminal ? 'end' : undefined;
  }

  onUpstreamEnd(): 'end' | SluiceError {
    return this.#terminal ? 'end' : upstreamFailure({ kind: 'truncated', message: 'upstream ended the stream before the answer was complete' });
  }

  writeError(w: StreamWriter, err: SluiceError): void {
    w.named('error', responsesErrorEvent(err));
  }
}
