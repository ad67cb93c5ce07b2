import { randomUUID } from 'node:crypto';
import type { ReasoningField } from '../../config/schema.ts';
import type { ChunkNormalizer, NormalizeResult } from '../../relay/normalizer.ts';
import type { OpenAIErrorObject } from '../upstream-error.ts';
import { envelope, isObject, parseChunk, stripVendorFields, type Json } from './chunk-object.ts';
import { renameKey } from './chunk-text.ts';

export interface NormalizeOptions {
  kind: 'chat' | 'completion';
  reasoningField: ReasoningField;
  stripVendorFields: boolean;
}

/** What an engine's rewrite returns: like `NormalizeResult`, before the shared reasoning/vendor steps. */
export type Rewrite = NormalizeResult;

const isError = (r: NormalizeResult): r is { error: OpenAIErrorObject } => r !== null && typeof r === 'object' && !Array.isArray(r);

/**
 * The part every engine's normalizer shares: the engine's own `rewrite` of a chunk, then the configured reasoning key
 * and `strip_vendor_fields` on what it returns. Each step looks for a substring before it parses anything, so a chunk
 * that needs no change costs a few `indexOf`s and is passed on as the same string.
 */
export abstract class DialectNormalizer implements ChunkNormalizer {
  readonly choices: number | undefined = undefined;
  protected readonly kind: 'chat' | 'completion';
  readonly #reasoning: ReasoningField;
  readonly #strip: boolean;
  readonly #reasoningKeys: ReadonlySet<string>;
  /** Whether this engine's reasoning key can differ from the configured one (else no chunk is searched for it). */
  readonly #mapReasoning: boolean;
  #id: string | undefined;

  constructor(o: NormalizeOptions) {
    this.kind = o.kind;
    this.#reasoning = o.reasoningField;
    this.#strip = o.stripVendorFields;
    this.#reasoningKeys = new Set(o.reasoningField === 'both' ? ['reasoning_content', 'reasoning'] : [o.reasoningField]);
    const native = this.nativeReasoning;
    this.#mapReasoning = o.kind === 'chat' && native !== 'none' && (o.reasoningField === 'both' || native === 'either' || native !== o.reasoningField);
  }

  /** The reasoning key this engine writes in chat deltas. */
  protected get nativeReasoning(): 'reasoning_content' | 'reasoning' | 'either' | 'none' {
    return 'either';
  }

  /** The engine's own fixes. */
  protected abstract rewrite(data: string): Rewrite;

  chunk(data: string): NormalizeResult {
    const r = this.rewrite(data);
    if (r === null || isError(r)) return r;
    if (typeof r === 'string') return this.#post(r);
    return (r as readonly string[]).map((s) => this.#post(s));
  }

  #post(s: string): string {
    if (s.startsWith('{"error"')) return s;
    if (this.#mapReasoning && s.indexOf('"reasoning') !== -1) s = this.#renameReasoning(s);
    if (this.#strip) {
      const o = parseChunk(s);
      if (o) s = JSON.stringify(stripVendorFields(o, this.#reasoningKeys));
    }
    return s;
  }

  #renameReasoning(s: string): string {
    if (this.#reasoning === 'reasoning_content') return renameKey(s, 'reasoning', 'reasoning_content');
    if (this.#reasoning === 'reasoning') return renameKey(s, 'reasoning_content', 'reasoning');
    const o = parseChunk(s);
    const choices = o?.['choices'];
    if (!o || !Array.isArray(choices)) return s;
    let changed = false;
    for (const c of choices) {
      const d: unknown = isObject(c) ? c['delta'] : undefined;
      if (!isObject(d)) continue;
      const text = typeof d['reasoning_content'] === 'string' ? d['reasoning_content'] : typeof d['reasoning'] === 'string' ? d['reasoning'] : undefined;
      if (text === undefined) continue;
      d['reasoning_content'] = text;
      d['reasoning'] = text;
      changed = true;
    }
    return changed ? JSON.stringify(o) : s;
  }

  /** One id per stream, for engines whose ids are empty (TGI) or collide across requests (Ollama). */
  protected get streamId(): string {
    this.#id ??= `${this.kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomUUID().replaceAll('-', '')}`;
    return this.#id;
  }

  /** OpenAI's role chunk for choice `index`, in the envelope of `chunk` (vLLM writes one per choice, first). */
  protected roleChunk(chunk: Json, index: number): string {
    return JSON.stringify(envelope(chunk, [{ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]));
  }
}

/** Engines that already speak OpenAI's stream (vLLM, `openai`): only the configured reasoning/vendor steps apply. */
export class PassThroughNormalizer extends DialectNormalizer {
  protected rewrite(data: string): Rewrite {
    return data;
  }
}
