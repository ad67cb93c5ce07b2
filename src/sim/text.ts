/**
 * Deterministic text for the simulator. It never pretends to be a model: the words say what they are. A few
 * multibyte characters are mixed in on purpose, so that every hop is exercised with UTF-8 split across reads.
 */
const WORDS: readonly string[] = (
  'This is the Sluice simulator streaming tokens with realistic timing so that gateways proxies and clients can be ' +
  'tested without a GPU . Every token arrives on its own , and héllo wörld ☕ 日本語 🚀 show that multibyte text ' +
  'survives each hop . No model is running here ; these words are generated from a fixed list .'
).split(' ');

/** The simulator's vocabulary, in order: answers walk through it from a seed. */
export const SIM_WORDS = WORDS;

/** The i-th token of a simulated answer (0-based): a word with a leading space except the first. */
export function simToken(i: number, seed: number): string {
  const word = WORDS[(i + seed) % WORDS.length] as string;
  return i === 0 ? word : ` ${word}`;
}

/** A stable small seed from the prompt, so the same request gets the same answer. */
export function seedOf(text: string): number {
  let h = 0;
  for (let i = 0; i < text.length; i++) h = (h * 31 + text.charCodeAt(i)) >>> 0;
  return h % WORDS.length;
}

/** Rough prompt token count: one token per 4 characters, at least 1. */
export function countPromptTokens(text: string): number {
  return Math.max(1, Math.ceil(text.length / 4));
}
