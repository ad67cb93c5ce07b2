import { seedOf, simToken, SIM_WORDS } from './text.ts';

/**
 * Where a simulated answer starts when the request already holds its beginning: a chat request with the answer so far
 * as a prefilled assistant message (`continue_final_message`), or a completions prompt that ends with it. The
 * simulator's answer is a function of its prompt (the seed) and of the token index, so a continuation is the rest of
 * the very answer the shorter request gets, word for word: what lets a test assert that an answer spliced from two
 * replicas (mid-stream failover, docs/failover.md) equals the uninterrupted one.
 */
export interface Continuation {
  /** The seed of the request without the prefilled answer. */
  seed: number;
  /** Tokens of the answer already in the request: the continuation starts at this token index. */
  offset: number;
}

/** The text of the first `k` tokens of the answer for `seed`. */
function answerText(seed: number, k: number): string {
  let s = '';
  for (let i = 0; i < k; i++) s += simToken(i, seed);
  return s;
}

/** How many whole tokens of the answer for `seed` `prefix` is made of, or -1 when it is not such a beginning. */
function tokensIn(prefix: string, seed: number): number {
  let text = '';
  for (let i = 0; ; i++) {
    if (text.length === prefix.length) return text === prefix ? i : -1;
    const next = text + simToken(i, seed);
    if (next.length > prefix.length || !prefix.startsWith(next)) return -1;
    text = next;
  }
}

/** The text of a message's content: a string, or the `text` parts of an array (OpenAI's content parts). */
function contentText(content: unknown): string | undefined {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return undefined;
  let s = '';
  for (const p of content) {
    if (p === null || typeof p !== 'object' || (p as Record<string, unknown>)['type'] !== 'text') return undefined;
    const t = (p as Record<string, unknown>)['text'];
    if (typeof t !== 'string') return undefined;
    s += t;
  }
  return s;
}

/**
 * A chat request's continuation, as vLLM and SGLang read `continue_final_message`: the final assistant message is the
 * beginning of the answer, continued without a new assistant turn (vLLM refuses `add_generation_prompt` with it, and
 * that defaults to true there, so a client must set it false). Returns undefined for an ordinary request, an error
 * message for an invalid one. A prefill that is not the beginning of the simulator's own answer continues from token 0.
 */
export function chatContinuation(body: Record<string, unknown>): Continuation | { error: string } | undefined {
  if (body['continue_final_message'] !== true) return undefined;
  // vLLM protocol.py ChatCompletionRequest.check_generation_prompt.
  if (body['add_generation_prompt'] !== false) return { error: 'Cannot set both `continue_final_message` and `add_generation_prompt` to True.' };
  const messages = body['messages'];
  const last: unknown = Array.isArray(messages) ? messages[messages.length - 1] : undefined;
  const prefix = last !== null && typeof last === 'object' && (last as Record<string, unknown>)['role'] === 'assistant' ? contentText((last as Record<string, unknown>)['content']) : undefined;
  if (prefix === undefined || !Array.isArray(messages)) return { error: 'continue_final_message is set but the final message is not an assistant message with text content.' };
  const seed = seedOf(JSON.stringify(messages.slice(0, -1)));
  return { seed, offset: Math.max(0, tokensIn(prefix, seed)) };
}

const DISTINCT_WORDS: readonly string[] = [...new Set(SIM_WORDS)];

/**
 * A completions prompt that ends with the beginning of the answer the simulator gives to the prompt before it (the
 * first answer word follows the prompt without a space, each later one has its leading space): the longest such
 * beginning, found by trying each tail of whole words. Undefined when there is none (an ordinary prompt). At most
 * `maxTokens` tokens are looked for: an answer is never longer.
 */
export function completionContinuation(prompt: unknown, maxTokens: number): Continuation | undefined {
  const text = typeof prompt === 'string' ? prompt : Array.isArray(prompt) && prompt.length === 1 && typeof prompt[0] === 'string' ? prompt[0] : undefined;
  if (text === undefined) return undefined;
  let best: Continuation | undefined;
  // `end`: where the first answer token would end; the tokens after it are the last k-1 space-separated words.
  let end = text.length;
  for (let k = 1; k <= maxTokens && end > 0; k++) {
    for (const w of DISTINCT_WORDS) {
      if (!text.startsWith(w, end - w.length)) continue;
      const base = text.slice(0, end - w.length);
      const seed = seedOf(JSON.stringify(Array.isArray(prompt) ? [base] : base));
      if (answerText(seed, k) === text.slice(base.length)) best = { seed, offset: k };
    }
    end = text.lastIndexOf(' ', end - 1);
  }
  return best;
}
