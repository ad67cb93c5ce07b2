import type { ParsedRequest } from '../openai/request.ts';

/**
 * Tokens reserved against a key's tpm when a request is admitted, before anything is known of its real usage (the
 * real figure replaces it when the request ends): the prompt at 4 bytes per token, OpenAI's own rule of thumb, from
 * the body's size (no tokenizer on the request path), plus the completion's cap (`max_tokens`,
 * `max_completion_tokens`, `max_output_tokens`) when the request sets one, else `defaultCompletion`.
 */
export function estimateTokens(parsed: ParsedRequest, defaultCompletion: number): { prompt: number; total: number } {
  const b = parsed.body;
  const bytes = parsed.raw !== undefined ? parsed.raw.length : JSON.stringify(b).length;
  const cap = firstInt(b['max_completion_tokens'], b['max_tokens'], b['max_output_tokens']);
  const n = typeof b['n'] === 'number' && b['n'] > 1 ? b['n'] : 1;
  const prompt = Math.ceil(bytes / 4);
  return { prompt, total: prompt + (parsed.kind === 'embeddings' ? 0 : (cap ?? defaultCompletion) * n) };
}

function firstInt(...vs: unknown[]): number | undefined {
  for (const v of vs) if (typeof v === 'number' && Number.isInteger(v) && v > 0) return v;
  return undefined;
}
