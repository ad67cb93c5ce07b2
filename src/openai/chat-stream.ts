import type { SluiceError } from '../errors.ts';
import type { SseEvent } from '../sse/parser.ts';
import { passThroughFinishes } from '../sse/passthrough.ts';
import type { ChunkNormalizer } from '../relay/normalizer.ts';
import type { EventVerdict, StreamProtocol } from '../relay/protocol.ts';
import type { StreamWriter } from '../relay/writer.ts';
import { errorJson } from './error-wire.ts';
import { parseInBandError, type UpstreamIdentity } from './upstream-error.ts';
import { upstreamFailure } from './upstream-failure.ts';
import { meterChunk, type TokenUsage } from './usage.ts';

const FINISH_KEY = '"finish_reason":';

/**
 * The chat/completions stream (bare `data:` frames, `[DONE]` at the end): meters and strips usage, counts finish
 * reasons so that a stream cut before every choice finished never passes as complete, recognizes in-band error
 * frames, and passes whole plain reads through as bytes when no dialect rewriting is needed.
 */
export class ChatStream implements StreamProtocol {
  readonly #clientWantsUsage: boolean;
  readonly #requestedChoices: number;
  /** Finish reasons that make the answer complete: the request's `n`, or what the engine streams (normalizer). */
  #choices: number;
  #finishes = 0;
  #normalizer: ChunkNormalizer | undefined;
  #upstream: UpstreamIdentity | undefined;
  usage: TokenUsage | undefined;

  /** `clientWantsUsage`: the client asked for the usage chunk (otherwise it is metered and dropped); `choices`: `n`. */
  constructor(o: { clientWantsUsage: boolean; choices: number }) {
    this.#clientWantsUsage = o.clientWantsUsage;
    this.#requestedChoices = o.choices;
    this.#choices = o.choices;
  }

  attach(normalizer: ChunkNormalizer | undefined, upstream: UpstreamIdentity | undefined): boolean {
    this.#normalizer = normalizer;
    this.#upstream = upstream;
    this.#choices = normalizer?.choices ?? this.#requestedChoices;
    return normalizer === undefined;
  }

  passRaw(read: Buffer): boolean {
    const finishes = passThroughFinishes(read);
    if (finishes === -1) return false;
    this.#finishes += finishes;
    return true;
  }

  onEvent(ev: SseEvent, w: StreamWriter): EventVerdict {
    const data = ev.data;
    if (data === '[DONE]') {
      // vLLM and OpenAI end every complete answer with a finish reason per choice; TGI 2.4.0 drops stream errors and
      // old llama.cpp writes them on an `error:` line SSE parsers skip, and a broken engine may send a usage chunk
      // and `[DONE]` alone. None of those is an answer.
      if (this.#finishes < this.#choices) return incomplete('upstream sent [DONE] before the answer was complete');
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

  /** One chunk: in-band errors, usage metering and stripping, completeness tracking. */
  #chunk(data: string, w: StreamWriter): EventVerdict {
    const inBand = parseInBandError(data);
    if (inBand) return upstreamFailure({ kind: 'in_band', upstream: this.#upstream, error: inBand });
    let out = data;
    const usageAt = data.indexOf('"usage"');
    // `"usage":null` (vLLM completions, SGLang and TGI on every chunk) holds nothing to meter: no parse.
    if (usageAt !== -1 && !data.startsWith(':null', usageAt + 7)) {
      const metered = meterChunk(data, !this.#clientWantsUsage);
      if (metered.usage) this.usage = metered.usage;
      if (metered.out === null) return undefined; // a usage-only chunk the client did not ask for
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
    w.data(out);
    return undefined;
  }

  onUpstreamEnd(w: StreamWriter): 'end' | SluiceError {
    if (this.#finishes < this.#choices) return incomplete('upstream ended the stream before the answer was complete');
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
