import type { ParsedRequest } from '../openai/request.ts';

/**
 * Prefix affinity (docs/routing.md): a prompt rendered to a canonical text, hashed in fixed-size blocks with chained
 * hashes (a block's hash covers everything before it, so equal hashes mean an equal prefix), and per replica the block
 * hashes it has been sent recently. The engine's chat template is not needed: a conversation that resends its history
 * renders to the same leading text each turn, which is all affinity needs.
 */

/**
 * Characters of the canonical text hashed at most (about 64k tokens): affinity is decided by the prompt's beginning,
 * and a 16 MiB prompt must not cost the request path tens of milliseconds of hashing.
 */
export const MAX_HASHED_CHARS = 256 * 1024;

const RS = '\u001e';
const US = '\u001f';

/** The prompt of a request as one text: chat messages (role and content), a completion prompt, a Responses input. */
export function canonicalPrompt(parsed: ParsedRequest): string {
  const b = parsed.body;
  let out = '';
  if (typeof b['instructions'] === 'string') out += `instructions${US}${b['instructions']}${RS}`;
  const messages = parsed.kind === 'chat' ? b['messages'] : parsed.kind === 'responses' ? b['input'] : undefined;
  if (Array.isArray(messages)) {
    for (const m of messages) out += message(m);
    return out;
  }
  const prompt = parsed.kind === 'completion' ? b['prompt'] : parsed.kind === 'responses' ? b['input'] : undefined;
  if (typeof prompt === 'string') return out + prompt;
  if (Array.isArray(prompt) && prompt.length > 0) return out + (typeof prompt[0] === 'string' ? String(prompt[0]) : JSON.stringify(prompt[0]));
  return out;
}

function message(m: unknown): string {
  if (m === null || typeof m !== 'object') return `${JSON.stringify(m)}${RS}`;
  const o = m as Record<string, unknown>;
  const role = typeof o['role'] === 'string' ? o['role'] : typeof o['type'] === 'string' ? o['type'] : '';
  const c = o['content'];
  let text: string;
  if (typeof c === 'string') text = c;
  else if (Array.isArray(c)) text = c.map((p) => (p !== null && typeof p === 'object' && typeof (p as Record<string, unknown>)['text'] === 'string' ? (p as { text: string }).text : JSON.stringify(p))).join('');
  else text = c === undefined || c === null ? '' : JSON.stringify(c);
  // Tool calls and their results are part of the history the engine caches.
  if (o['tool_calls'] !== undefined) text += JSON.stringify(o['tool_calls']);
  if (typeof o['tool_call_id'] === 'string') text += o['tool_call_id'];
  return `${role}${US}${text}${RS}`;
}

/**
 * Chained hashes of a text's whole blocks of `blockChars` characters: two 32-bit FNV-1a lanes over the whole text so
 * far, 53 bits kept (a safe integer, a cheap Map key). One pass, no allocation per character.
 */
export function prefixHashes(text: string, blockChars: number): number[] {
  const out: number[] = [];
  let a = 0x811c9dc5;
  let b = 0x2f6b7d4a;
  const length = Math.min(text.length, MAX_HASHED_CHARS);
  const whole = length - (length % blockChars);
  for (let i = 0; i < whole; i++) {
    const c = text.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193) >>> 0;
    b = Math.imul(b ^ c, 0x01000193) >>> 0;
    b = (b ^ (b >>> 13)) >>> 0;
    if ((i + 1) % blockChars === 0) out.push((a & 0x1fffff) * 0x100000000 + b);
  }
  return out;
}

/** One replica's recently sent block hashes, least recently used first, at most `maxBlocks`. */
export class PrefixIndex {
  readonly #blocks = new Map<number, true>();
  readonly #max: number;

  constructor(maxBlocks: number) {
    this.#max = maxBlocks;
  }

  get size(): number {
    return this.#blocks.size;
  }

  /** Leading blocks of `hashes` this replica holds (a chained hash is found only with its whole prefix). */
  match(hashes: readonly number[]): number {
    let n = 0;
    while (n < hashes.length && this.#blocks.has(hashes[n] as number)) n++;
    return n;
  }

  /** The replica was sent these blocks: they become the most recent; the oldest go past the bound. */
  add(hashes: readonly number[]): void {
    for (const h of hashes) {
      this.#blocks.delete(h);
      this.#blocks.set(h, true);
    }
    const over = this.#blocks.size - this.#max;
    if (over <= 0) return;
    const it = this.#blocks.keys();
    for (let i = 0; i < over; i++) this.#blocks.delete(it.next().value as number);
  }
}
