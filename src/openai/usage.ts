import type { UsageCut } from '../sse/passthrough.ts';

/** Token usage as metered by the gateway (chat/completions names; Responses' input/output tokens mapped). */
export interface TokenUsage {
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

function parseObject(json: string): Record<string, unknown> | undefined {
  try {
    const parsed: unknown = JSON.parse(json);
    return parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function usageOf(o: Record<string, unknown>): TokenUsage | undefined {
  let u = o['usage'];
  if ((u === undefined || u === null) && o['response'] !== null && typeof o['response'] === 'object') {
    u = (o['response'] as Record<string, unknown>)['usage'];
  }
  if (u === null || typeof u !== 'object') return undefined;
  const r = u as Record<string, unknown>;
  const prompt = num(r['prompt_tokens']) ?? num(r['input_tokens']);
  const completion = num(r['completion_tokens']) ?? num(r['output_tokens']);
  if (prompt === undefined && completion === undefined) return undefined;
  const p = prompt ?? 0;
  const c = completion ?? 0;
  return { promptTokens: p, completionTokens: c, totalTokens: num(r['total_tokens']) ?? p + c };
}

/** Reads usage from a chunk or a Responses terminal event (`response.usage`); undefined when absent or null. */
export function readUsage(json: string): TokenUsage | undefined {
  const o = parseObject(json);
  return o === undefined ? undefined : usageOf(o);
}

/**
 * Meters a chat/completions chunk and cuts its usage as `cut` says (one parse for both): `out` is the chunk to send,
 * unchanged when nothing is cut, null when nothing is left (a usage-only chunk, `choices: []`, with `cut: 'all'`),
 * else the chunk without its `usage` field; `choices` says whether it carries any (an answer's chunk, not the usage
 * chunk). `'chunks'` cuts usage from chunks with choices and keeps the usage chunk; `'none'` cuts nothing.
 */
export function meterChunk(json: string, cut: UsageCut): { usage: TokenUsage | undefined; out: string | null; choices: boolean } {
  const o = parseObject(json);
  const usage = o === undefined ? undefined : usageOf(o);
  const c = o?.['choices'];
  const choices = !Array.isArray(c) || c.length > 0;
  if (o === undefined || usage === undefined || cut === 'none') return { usage, out: json, choices };
  if (!choices) return { usage, out: cut === 'all' ? null : json, choices };
  delete o['usage'];
  return { usage, out: JSON.stringify(o), choices };
}

/** The integer after `key` in `text` from `from` on (spaces allowed), or -1. */
function countAfter(text: string, key: string, from: number, to: number): number {
  const at = text.indexOf(key, from);
  if (at === -1 || at >= to) return -1;
  let p = at + key.length;
  while (text.charCodeAt(p) === 0x20) p++;
  let value = -1;
  for (let c = text.charCodeAt(p); c >= 0x30 && c <= 0x39; c = text.charCodeAt(++p)) value = (value === -1 ? 0 : value * 10) + (c - 0x30);
  return value;
}

/**
 * The usage object of a chunk where vLLM writes it (`,"usage":{…}` after another key), found by text rather than by
 * parsing: its counts, whether the chunk carries choices, and the chunk without it. Undefined when it is not there
 * (the caller parses). For the parser path of streams with usage on every chunk, where a parse and a re-serialization
 * per chunk would cost more than all the rest of the relay's work on it.
 */
export function splitUsage(json: string): { usage: TokenUsage; choices: boolean; without: string } | undefined {
  const at = json.indexOf(',"usage":{');
  if (at === -1) return undefined;
  let q = at + 10;
  let depth = 1;
  const len = json.length;
  while (depth > 0) {
    if (q >= len) return undefined;
    const c = json.charCodeAt(q);
    if (c === 0x7b) depth++;
    else if (c === 0x7d) depth--;
    else if (c === 0x22) for (q++; q < len && json.charCodeAt(q) !== 0x22; q++) if (json.charCodeAt(q) === 0x5c) q++;
    q++;
  }
  const prompt = countAfter(json, '"prompt_tokens":', at, q);
  const completion = countAfter(json, '"completion_tokens":', at, q);
  if (prompt === -1 && completion === -1) return undefined;
  const p = Math.max(0, prompt);
  const c = Math.max(0, completion);
  return {
    usage: { promptTokens: p, completionTokens: c, totalTokens: p + c },
    choices: !json.includes('"choices":[]'),
    without: json.slice(0, at) + json.slice(q),
  };
}
