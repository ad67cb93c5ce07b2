import type { ResponsesNormalizer } from '../../relay/normalizer.ts';
import { isObject, parseChunk, type Json } from './chunk-object.ts';
import type { ResolvedDialect } from './create-normalizer.ts';

/** Events that carry the whole response object. */
const LIFECYCLE = new Set(['response.created', 'response.queued', 'response.in_progress']);
const TERMINAL = new Set(['response.completed', 'response.incomplete', 'response.failed']);

/** One output item seen in the stream: where it is in `output`, and how many content parts it has so far. */
interface ItemSlot {
  index: number;
  parts: number;
}

/**
 * Fills in what OpenAI's Responses event schema requires and an engine left out, so that openai-python's and
 * openai-node's `responses.stream()` can accumulate the answer. Seen on llama.cpp's llama-server (80fb11a, captured
 * 2026-11-29, /work/shared/engines): no `sequence_number` on any event; `response.created` / `.in_progress` without
 * `output`, `model` or `created_at` (openai-python appends to the missing `output` and raises AttributeError); no
 * `output_index` / `content_index` on item, part and text events (both SDKs index the snapshot with them); no
 * `logprobs` on text deltas and no `annotations` on the part added.
 *
 * What it adds, only where missing: `sequence_number` (the gateway's count of the events of this stream, from 0),
 * `object`, `created_at`, `model` (the model the client asked for) and `output` (`[]`, or on a terminal event the items
 * finished so far) on the response object; `output_index` (items numbered as they are added), `item_id` and
 * `content_index` (parts numbered per item) on the events of an item; `logprobs: []` on text events; `annotations: []`
 * on `output_text` parts. Present values are never changed. An event that already has a `sequence_number` is taken to
 * be OpenAI-shaped (vLLM, SGLang and Ollama build every event with one, from OpenAI's own types or their copy of them)
 * and is passed on as the same string, unparsed.
 */
export class ResponsesEventFiller implements ResponsesNormalizer {
  readonly #model: string;
  #seq = 0;
  #createdAt: number | undefined;
  #nextIndex = 0;
  readonly #items = new Map<string, ItemSlot>();
  /** The item the latest item-level event was about, for events that do not name theirs. */
  #current: ItemSlot | undefined;
  #currentId: string | undefined;
  /** Items finished (`output_item.done`), by output index: the `output` of a terminal event that has none. */
  readonly #done: Json[] = [];

  constructor(model: string) {
    this.#model = model;
  }

  event(type: string | undefined, data: string): string {
    const seq = this.#seq++;
    if (data.includes('"sequence_number":')) return data;
    const o = parseChunk(data);
    if (o === undefined) return data;
    const t = typeof o['type'] === 'string' ? o['type'] : type;
    if (t === undefined || t === 'error') return data;
    if (LIFECYCLE.has(t) || TERMINAL.has(t)) this.#response(o, TERMINAL.has(t));
    else if (t === 'response.output_item.added' || t === 'response.output_item.done') this.#item(o, t.endsWith('.added'));
    else if (t.startsWith('response.')) this.#itemEvent(o, t);
    return JSON.stringify({ type: t, sequence_number: seq, ...o });
  }

  #response(o: Json, terminal: boolean): void {
    const r = o['response'];
    if (!isObject(r)) return;
    r['object'] ??= 'response';
    if (typeof r['created_at'] === 'number') this.#createdAt ??= r['created_at'];
    else r['created_at'] = this.#createdAt ??= Math.floor(Date.now() / 1000);
    if (typeof r['model'] !== 'string' || r['model'] === '') r['model'] = this.#model;
    if (!Array.isArray(r['output'])) r['output'] = terminal ? this.#done.filter(isObject) : [];
  }

  #item(o: Json, added: boolean): void {
    const item = isObject(o['item']) ? o['item'] : undefined;
    const id = typeof item?.['id'] === 'string' ? item['id'] : undefined;
    let slot = id === undefined ? undefined : this.#items.get(id);
    if (added || slot === undefined) {
      const index = typeof o['output_index'] === 'number' ? o['output_index'] : (slot?.index ?? this.#nextIndex);
      slot = { index, parts: slot?.parts ?? 0 };
      this.#nextIndex = Math.max(this.#nextIndex, index + 1);
      if (id !== undefined) this.#items.set(id, slot);
    }
    this.#current = slot;
    this.#currentId = id;
    o['output_index'] ??= slot.index;
    if (item !== undefined && Array.isArray(item['content'])) for (const part of item['content']) fillPart(part);
    if (!added && item !== undefined && typeof o['output_index'] === 'number') this.#done[o['output_index']] = item;
  }

  #itemEvent(o: Json, t: string): void {
    const named = typeof o['item_id'] === 'string' ? o['item_id'] : undefined;
    const slot = named === undefined ? this.#current : this.#items.get(named);
    if (slot === undefined) return;
    if (named === undefined && this.#currentId !== undefined) o['item_id'] = this.#currentId;
    o['output_index'] ??= slot.index;
    if (t === 'response.content_part.added') {
      if (typeof o['content_index'] === 'number') slot.parts = Math.max(slot.parts, o['content_index'] + 1);
      else o['content_index'] = slot.parts++;
    } else if (hasContentIndex(t)) {
      o['content_index'] ??= Math.max(0, slot.parts - 1);
    }
    if (t === 'response.content_part.added' || t === 'response.content_part.done') fillPart(o['part']);
    if (t === 'response.output_text.delta' || t === 'response.output_text.done') o['logprobs'] ??= [];
  }
}

/** Event types that address a content part of an item (OpenAI's schema gives them a `content_index`). */
function hasContentIndex(t: string): boolean {
  return t === 'response.content_part.done' || t.startsWith('response.output_text.') || t.startsWith('response.refusal.') || t.startsWith('response.reasoning_text.');
}

/** An `output_text` part needs `annotations` (openai-node's accumulator copies it; OpenAI always sends it). */
function fillPart(part: unknown): void {
  if (isObject(part) && part['type'] === 'output_text') part['annotations'] ??= [];
}

/**
 * The Responses normalizer for an upstream's dialect, or undefined when its events are relayed as they are: vLLM and
 * `openai` build every event from OpenAI's own types; TGI has no `/v1/responses`. The others get the filler, which
 * passes OpenAI-shaped events through untouched, so an engine build that already numbers its events costs one
 * substring search per event.
 */
export function createResponsesNormalizer(dialect: ResolvedDialect, model: string): ResponsesNormalizer | undefined {
  switch (dialect) {
    case 'llamacpp':
    case 'sglang':
    case 'ollama':
      return new ResponsesEventFiller(model);
    case 'vllm':
    case 'openai':
    case 'tgi':
      return undefined;
  }
}
