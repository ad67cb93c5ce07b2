import type { UsageRecord } from '../state/store.ts';

export type UsageGrouping = 'key' | 'model' | 'day';

/** One group of the ledger: requests, tokens and outcomes. */
export interface UsageRow {
  /** The key's name (`(static)` for static keys or no auth), the model, or the UTC day (YYYY-MM-DD). */
  group: string;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  /** Requests whose completion tokens were counted from the chunks relayed, not reported by the engine. */
  counted: number;
  /** Requests per outcome (`completed`, `client_aborted`, `upstream_error`, …). */
  outcomes: Record<string, number>;
}

/** Sums ledger records by key, model or UTC day, groups in order. */
export async function summarizeUsage(records: AsyncIterable<UsageRecord>, by: UsageGrouping): Promise<UsageRow[]> {
  const groups = new Map<string, UsageRow>();
  for await (const r of records) {
    const g = by === 'key' ? (r.key ?? '(static)') : by === 'model' ? (r.model ?? '(none)') : new Date(r.ts).toISOString().slice(0, 10);
    let row = groups.get(g);
    if (row === undefined) groups.set(g, (row = { group: g, requests: 0, prompt_tokens: 0, completion_tokens: 0, counted: 0, outcomes: {} }));
    row.requests++;
    row.prompt_tokens += r.prompt_tokens ?? 0;
    row.completion_tokens += r.completion_tokens ?? 0;
    if (r.tokens_source === 'counted') row.counted++;
    row.outcomes[r.outcome] = (row.outcomes[r.outcome] ?? 0) + 1;
  }
  return [...groups.values()].sort((a, b) => (a.group < b.group ? -1 : a.group > b.group ? 1 : 0));
}

/** The outcomes that appear in any row, `completed` first. */
export function outcomeColumns(rows: readonly UsageRow[]): string[] {
  const all = new Set<string>(['completed']);
  for (const r of rows) for (const o of Object.keys(r.outcomes)) all.add(o);
  return ['completed', ...[...all].filter((o) => o !== 'completed').sort()];
}

/** RFC 4180 CSV: a header, one line per group, one column per outcome. */
export function usageCsv(rows: readonly UsageRow[], by: UsageGrouping): string {
  const outcomes = outcomeColumns(rows);
  const cell = (s: string | number): string => (typeof s === 'number' || !/[",\r\n]/.test(s) ? String(s) : `"${s.replaceAll('"', '""')}"`);
  const lines = [[by, 'requests', 'prompt_tokens', 'completion_tokens', 'counted', ...outcomes].join(',')];
  for (const r of rows) lines.push([r.group, r.requests, r.prompt_tokens, r.completion_tokens, r.counted, ...outcomes.map((o) => r.outcomes[o] ?? 0)].map(cell).join(','));
  return `${lines.join('\r\n')}\r\n`;
}
