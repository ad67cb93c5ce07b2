import type { SluiceError } from '../errors.ts';
import type { SseEvent } from '../sse/parser.ts';
import { newTally, passThroughRead, type UsageCut } from '../sse/passthrough.ts';
import type { ChunkNormalizer } from '../relay/normalizer.ts';
import type { EventVerdict, StreamProtocol, TokenSource, UpstreamStream } from '../relay/protocol.ts';
import type { StreamWriter } from '../relay/writer.ts';
import { errorJson } from './error-wire.ts';
import { parseInBandError, type UpstreamIdentity } from './upstream-error.ts';
import { upstreamFailure } from './upstream-failure.ts';
import { meterChunk, splitUsage, type TokenUsage } from './usage.ts';

const FINISH_KEY = '"finish_reason":';

/** What the client asked for of usage (`stream_options`). */
export interface ClientUsage {
  /** `include_usage`: the usage chunk at the end. */
  final: boolean;
  /** `continuous_usage_stats` (with include_usage): usage on every chunk. */
  continuous: boolean;
}

/**
 * The chat/completions stream (bare `data:` frames, `[DONE]` at the end): meters usage and cuts what the client did
 * not ask for, counts finish reasons so that a stream cut before every choice finished never passes as complete,
 * recognizes in-band error frames, and passes whole plain reads through as bytes when no dialect rewriting is needed.
 *
 * Metering: the upstream is always asked for the usage chunk, and vLLM and SGLang also for usage on every chunk
 * (`continuous_usage_stats`), so that a stream that is cut, aborted or fails is metered exactly up to its last
 * chunk. Without any usage from the engine, the completion tokens are the chunks relayed (`tokenSource: 'counted'`).
 */
export class ChatStream implements StreamProtocol {
  readonly #cut: UsageCut;
  readonly #requestedChoices: number;
  /** Finish reasons that make the answer complete: the request's `n`, or what the engine streams (normalizer). */
  #choices: number;
  #normalizer: ChunkNormalizer | undefined;
  #upstream: UpstreamIdentity | undefined;
  /** The upstream sends usage on every chunk: the byte pass-through reads and cuts it. */
  #continuous = false;
  /** Finish reasons and chunk events relayed, and the last usage reported (-1: none). */
  readonly #tally = newTally();

  /** `usage`: what the client asked for; `choices`: the request's `n`. */
  constructor(o: { usage: ClientUsage; choices: number }) {
    this.#cut = o.usage.continuous ? 'none' : o.usage.final ? 'chunks' : 'all';
    this.#requestedChoices = o.choices;
    this.#choices = o.choices;
  }

  attach(source: UpstreamStream): boolean {
    this.#normalizer = source.normalizer;
    this.#upstream = source.upstream;
    this.#continuous = source.continuousUsage === true;
    this.#choices = source.normalizer?.choices ?? this.#requestedChoices;
    return source.normalizer === undefined;
  }

  passRaw(read: Buffer): Buffer | null {
    const t = this.#tally;
    const before = t.events;
    const out = passThroughRead(read, this.#continuous ? this.#cut : undefined, t);
    this.rawEvents = t.events - before;
    return out;
  }

  rawEvents = 0;

  get usage(): TokenUsage | undefined {
    const t = this.#tally;
    if (t.completionTokens >= 0 || t.promptTokens >= 0) {
      const prompt = Math.max(0, t.promptTokens);
      const completion = Math.max(0, t.completionTokens);
      return { promptTokens: prompt, completionTokens: completion, totalTokens: prompt + completion };
    }
    // No usage from the engine: what was relayed, prompt unknown.
    return t.events > 0 ? { promptTokens: 0, completionTokens: t.events, totalTokens: t.events } : undefined;
  }

  get tokenSource(): TokenSource | undefined {
    const t = this.#tally;
    if (t.completionTokens >= 0 || t.promptTokens >= 0) return 'reported';
    return t.events > 0 ? 'counted' : undefined;
  }

  onEvent(ev: SseEvent, w: StreamWriter): EventVerdict {
    const data = ev.data;
    if (data === '[DONE]') {
      // vLLM and OpenAI end every complete answer with a finish reason per choice; TGI 2.4.0 drops stream errors and
      // old llama.cpp writes them on an `error:` line SSE parsers skip, and a broken engine may send a usage chunk
      // and `[DONE]` alone. None of those is an answer.
      if (this.#tally.finishes < this.#choices) return incomplete('upstream sent [DONE] before the answer was complete');
      w.done();
      return 'end';
    }
    if (!isJsonObject(data)) {
      return upstreamFailure({ kind: 'bad_response', message: 'upstream sent a stream event whose data is not a JSON object' });
    }
    const n = this.#normalizer;
    if (n === undefined) return this.#chunk(data, w);
    const r = n.chunk(data);
    if (r === null) return undefined;
    if (typeof r === 'string') return this.#chunk(r, w);
    if ('error' in r) return upstreamFailure({ kind: 'in_band', upstream: this.#upstream, error: r.error });
    for (const d of r as readonly string[]) {
      const v = this.#chunk(d, w);
      if (v !== undefined) return v;
    }
    return undefined;
  }

  /** One chunk: in-band errors, usage metering and cutting, completeness tracking. */
  #chunk(data: string, w: StreamWriter): EventVerdict {
    const inBand = parseInBandError(data);
    if (inBand) return upstreamFailure({ kind: 'in_band', upstream: this.#upstream, error: inBand });
    const t = this.#tally;
    let out = data;
    const usageAt = data.indexOf('"usage"');
    // `"usage":null` (vLLM completions, SGLang and TGI on every chunk) holds nothing to meter: no parse.
    if (usageAt !== -1 && !data.startsWith(':null', usageAt + 7)) {
      // Usage on every chunk (continuous usage stats) is cut by text; a parse is kept for the rare other shapes.
      const metered = (this.#continuous && this.#cutByText(data)) || meterChunk(data, this.#cut);
      if (metered.usage) {
        t.promptTokens = metered.usage.promptTokens;
        t.completionTokens = metered.usage.completionTokens;
      }
      if (metered.choices) t.events++;
      if (metered.out === null) return undefined; // a usage-only chunk the client did not ask for
      out = metered.out;
    } else {
      t.events++;
    }
    // Cheap completeness tracking: a non-null finish_reason is `"finish_reason":"…"` (engines may add a space).
    let at = data.indexOf(FINISH_KEY);
    while (at !== -1) {
      let p = at + FINISH_KEY.length;
      if (data.charCodeAt(p) === 0x20) p++;
      if (data.charCodeAt(p) === 0x22) t.finishes++;
      at = data.indexOf(FINISH_KEY, p);
    }
    w.data(out);
    return undefined;
  }

  /** `meterChunk`'s answer for a chunk whose usage is where vLLM writes it, without a parse; undefined otherwise. */
  #cutByText(data: string): { usage: TokenUsage; out: string | null; choices: boolean } | undefined {
    const s = splitUsage(data);
    if (s === undefined) return undefined;
    const cut = this.#cut;
    const out = cut === 'none' || (!s.choices && cut === 'chunks') ? data : s.choices ? s.without : null;
    return { usage: s.usage, out, choices: s.choices };
  }

  onUpstreamEnd(w: StreamWriter): 'end' | SluiceError {
    if (this.#tally.finishes < this.#choices) return incomplete('upstream ended the stream before the answer was complete');
    // Engines such as llama.cpp and Ollama end without [DONE]; the answer is complete, so synthesize it.
    w.done();
    return 'end';
  }

  writeError(w: StreamWriter, err: SluiceError): void {
    w.data(errorJson(err));
  }
}

const incomplete = (message: string): SluiceError => upstreamFailure({ kind: 'truncated', message });

/** Whether an event's data starts as a JSON object (leading spaces allowed): chunks and error objects are. */
function isJsonObject(data: string): boolean {
  let p = 0;
  while (data.charCodeAt(p) === 0x20) p++;
  return data.charCodeAt(p) === 0x7b;
}
