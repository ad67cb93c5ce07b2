/** Token usage as metered by the gateway (chat/completions names; Responses' input/output tokens mapped). */
export interface TokenUsage {
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

/** Reads usage from a chunk or a Responses terminal event (`response.usage`); undefined when absent or null. */
export function readUsage(json: string): TokenUsage | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (parsed === null || typeof parsed !== 'object') return undefined;
  const o = parsed as Record<string, unknown>;
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

/**
 * Removes usage from a chunk the client did not ask usage for. Returns null when nothing is left to send (the
 * usage-only chunk with `choices: []`), else the chunk without its `usage` field.
 */
export function stripUsage(json: string): string | null {
  const o = JSON.parse(json) as Record<string, unknown>;
  const choices = o['choices'];
  if (!Array.isArray(choices) || choices.length === 0) return null;
  delete o['usage'];
  return JSON.stringify(o);
}
