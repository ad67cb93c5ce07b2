/**
 * Edits of a parsed chunk, for the rare chunks that must be rebuilt (a usage chunk, a finish chunk carrying usage,
 * a tool call to reshape) and for `strip_vendor_fields`, which has to look at every key.
 */

export type Json = Record<string, unknown>;

export function isObject(v: unknown): v is Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Parses a chunk; undefined when it is not a JSON object (then it is passed on untouched). */
export function parseChunk(data: string): Json | undefined {
  try {
    const v: unknown = JSON.parse(data);
    return isObject(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/**
 * OpenAI's usage object: `prompt_tokens`, `completion_tokens`, `total_tokens` first; `*_details` only when set.
 * SGLang's flat `reasoning_tokens` moves to `completion_tokens_details.reasoning_tokens` (OpenAI's place for it) when
 * it is non-zero. Other engine keys are kept.
 */
export function normalizeUsage(u: Json): Json {
  const out: Json = { prompt_tokens: u['prompt_tokens'], completion_tokens: u['completion_tokens'], total_tokens: u['total_tokens'] };
  for (const [k, v] of Object.entries(u)) {
    if (k in out) continue;
    if (k === 'reasoning_tokens') {
      if (typeof v === 'number' && v > 0) {
        const details = isObject(out['completion_tokens_details']) ? out['completion_tokens_details'] : {};
        out['completion_tokens_details'] = { ...details, reasoning_tokens: v };
      }
      continue;
    }
    if (v === null && k.endsWith('_details')) continue;
    out[k] = v;
  }
  return out;
}

/** The chunk envelope (id, object, created, model, system_fingerprint) with the given choices, in OpenAI's key order. */
export function envelope(chunk: Json, choices: unknown[]): Json {
  const out: Json = { id: chunk['id'], object: chunk['object'], created: chunk['created'], model: chunk['model'] };
  if (chunk['system_fingerprint'] !== undefined) out['system_fingerprint'] = chunk['system_fingerprint'];
  out['choices'] = choices;
  return out;
}

/**
 * Splits a chunk that carries both choices and usage (TGI's and llama.cpp's last frame) into the choices chunk and
 * OpenAI's separate usage chunk with `choices: []`. Vendor keys other than the envelope stay on the usage chunk
 * (llama.cpp's `timings` belongs to the final result).
 */
export function splitUsage(chunk: Json): Json[] {
  const usage = chunk['usage'];
  const choices = chunk['choices'];
  if (!isObject(usage) || !Array.isArray(choices) || choices.length === 0) return [chunk];
  const first: Json = {};
  const extras: Json = {};
  for (const [k, v] of Object.entries(chunk)) {
    if (k === 'usage') continue;
    if (k === 'id' || k === 'object' || k === 'created' || k === 'model' || k === 'system_fingerprint' || k === 'choices') first[k] = v;
    else extras[k] = v;
  }
  const second = envelope(chunk, []);
  second['usage'] = normalizeUsage(usage);
  Object.assign(second, extras);
  return [first, second];
}

const TOP = new Set(['id', 'object', 'created', 'model', 'system_fingerprint', 'service_tier', 'choices', 'usage']);
const CHAT_CHOICE = new Set(['index', 'delta', 'logprobs', 'finish_reason']);
const TEXT_CHOICE = new Set(['index', 'text', 'logprobs', 'finish_reason']);
const DELTA = new Set(['role', 'content', 'refusal', 'tool_calls', 'function_call']);
const TOOL_CALL = new Set(['index', 'id', 'type', 'function']);
const FUNCTION = new Set(['name', 'arguments']);
const USAGE = new Set(['prompt_tokens', 'completion_tokens', 'total_tokens', 'prompt_tokens_details', 'completion_tokens_details']);

function pick(o: Json, keep: ReadonlySet<string>, extra?: ReadonlySet<string>): Json {
  const out: Json = {};
  for (const [k, v] of Object.entries(o)) if (keep.has(k) || extra?.has(k)) out[k] = v;
  return out;
}

/**
 * Keeps only the fields OpenAI's chunk defines (plus the configured reasoning keys), for `strip_vendor_fields`.
 * Error objects are not chunks and are left alone by the caller.
 */
export function stripVendorFields(chunk: Json, reasoningKeys: ReadonlySet<string>): Json {
  const out = pick(chunk, TOP);
  if (isObject(out['usage'])) out['usage'] = pick(out['usage'], USAGE);
  const choices = out['choices'];
  if (Array.isArray(choices)) {
    out['choices'] = choices.map((c: unknown) => {
      if (!isObject(c)) return c;
      if (!('delta' in c)) return pick(c, TEXT_CHOICE);
      const choice = pick(c, CHAT_CHOICE);
      if (isObject(choice['delta'])) {
        const delta = pick(choice['delta'], DELTA, reasoningKeys);
        if (Array.isArray(delta['tool_calls'])) {
          delta['tool_calls'] = delta['tool_calls'].map((t: unknown) => {
            if (!isObject(t)) return t;
            const call = pick(t, TOOL_CALL);
            if (isObject(call['function'])) call['function'] = pick(call['function'], FUNCTION);
            return call;
          });
        }
        choice['delta'] = delta;
      }
      return choice;
    });
  }
  return out;
}
