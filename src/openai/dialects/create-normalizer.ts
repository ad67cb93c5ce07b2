import type { Dialect } from '../../config/schema.ts';
import type { ChunkNormalizer } from '../../relay/normalizer.ts';
import { PassThroughNormalizer, type NormalizeOptions } from './dialect-normalizer.ts';
import { LlamaCppNormalizer } from './llamacpp.ts';
import { OllamaNormalizer } from './ollama.ts';
import { SglangNormalizer } from './sglang.ts';
import { TgiNormalizer } from './tgi.ts';

export type { NormalizeOptions } from './dialect-normalizer.ts';

/** A dialect once `auto` has been resolved. */
export type ResolvedDialect = Exclude<Dialect, 'auto'>;

/**
 * The per-stream normalizer for an upstream's dialect, or undefined when the stream is relayed as it is: vLLM (the
 * reference dialect) and `openai` get none unless the configuration asks for a rewrite that applies to them
 * (`strip_vendor_fields`, or a `reasoning_field` other than the default), so their hot path is unchanged.
 */
export function createNormalizer(dialect: ResolvedDialect, options: NormalizeOptions): ChunkNormalizer | undefined {
  switch (dialect) {
    case 'sglang':
      return new SglangNormalizer(options);
    case 'llamacpp':
      return new LlamaCppNormalizer(options);
    case 'ollama':
      return new OllamaNormalizer(options);
    case 'tgi':
      return new TgiNormalizer(options);
    case 'vllm':
    case 'openai':
      return options.stripVendorFields || options.reasoningField !== 'reasoning_content' ? new PassThroughNormalizer(options) : undefined;
  }
}
