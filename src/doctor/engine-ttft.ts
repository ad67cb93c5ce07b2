import { check, type Check } from './check.ts';
import { DoctorError } from './doctor-error.ts';
import { fetchSmall } from './fetch-small.ts';
import type { Transport } from './http-exchange.ts';

/**
 * The engine's own time to first token (issue 18): vLLM and SGLang keep a histogram of it on their `/metrics`
 * (`vllm:time_to_first_token_seconds`, `sglang:time_to_first_token_seconds`). Read before and after the probe, the
 * change of its `_sum` and `_count` is the engine's TTFT for the probe (from the request's arrival in the engine,
 * its queue included, to the first token); what the doctor measured beyond it was spent everywhere in between.
 */

export interface TtftTotals {
  family: 'vllm' | 'sglang';
  /** Seconds, summed over the series counted. */
  sum: number;
  count: number;
}

const SAMPLE = /^(vllm|sglang):time_to_first_token_seconds_(sum|count)(\{[^}]*\})?\s+(\S+)/;
const MODEL_LABEL = /(?:^|[{,])\s*model_name="((?:[^"\\]|\\.)*)"/;

/**
 * The TTFT histogram's totals in a Prometheus text exposition: the series of `model` summed over engines (every series
 * when none is labelled with that model), or null when the text has no such histogram.
 */
export function readTtftTotals(text: string, model: string | null): TtftTotals | null {
  let family: TtftTotals['family'] | null = null;
  const all = { sum: 0, count: 0 };
  const mine = { sum: 0, count: 0, seen: false };
  for (const line of text.split('\n')) {
    if (line.length === 0 || line.charCodeAt(0) === 0x23 /* # */) continue;
    const m = SAMPLE.exec(line);
    if (m === null) continue;
    const value = Number(m[4]);
    if (!Number.isFinite(value)) continue;
    family ??= m[1] as TtftTotals['family'];
    const kind = m[2] as 'sum' | 'count';
    all[kind] += value;
    const labelled = MODEL_LABEL.exec(m[3] ?? '')?.[1];
    if (model !== null && labelled === model) {
      mine.seen = true;
      mine[kind] += value;
    }
  }
  if (family === null) return null;
  return mine.seen ? { family, sum: mine.sum, count: mine.count } : { family, sum: all.sum, count: all.count };
}

/** `/metrics` of the server whose OpenAI base URL is `base` (vLLM and SGLang serve it beside `/v1`). */
export function metricsUrl(base: URL): URL {
  const u = new URL(base.href);
  u.pathname = u.pathname.replace(/\/v1\/?$/, '') + '/metrics';
  u.search = '';
  return u;
}

/** The totals now, or null when the target serves no such histogram (not vLLM or SGLang, metrics off, refused). */
export async function snapshotTtft(base: URL, headers: Array<[string, string]>, model: string, timeoutMs: number, transport?: Transport): Promise<TtftTotals | null> {
  try {
    const res = await fetchSmall({ url: metricsUrl(base), method: 'GET', headers, timeoutMs, transport, maxBodyBytes: 8 * 1024 * 1024 });
    if (res.head.status !== 200) return null;
    return readTtftTotals(res.body.toString('utf8'), model);
  } catch (err) {
    if (err instanceof DoctorError) return null;
    throw err;
  }
}

/**
 * `engine.ttft`: the client's time to first token split into the engine's own and everything in between. Skipped
 * (with the reason) when the histogram did not move, which means another engine answered the probe.
 */
export function checkEngineTtft(before: TtftTotals, after: TtftTotals, clientTtftMs: number | null, probe: string): Check {
  const base = { id: 'engine.ttft', group: 'hops', probe, title: "The engine's share of time to first token" } as const;
  const n = Math.round(after.count - before.count);
  const name = `${after.family}:time_to_first_token_seconds`;
  if (n <= 0 || clientTtftMs === null) {
    return check({
      ...base,
      status: 'skip',
      summary: n <= 0 ? `${name} did not change during the probe: the engine behind this /metrics did not answer it` : 'no token arrived, nothing to split',
    });
  }
  const engineMs = ((after.sum - before.sum) / n) * 1000;
  const between = clientTtftMs - engineMs;
  const evidence = [
    `${name}: _count ${before.count} → ${after.count}, _sum ${before.sum.toFixed(4)} → ${after.sum.toFixed(4)} s`,
    n === 1 ? 'exactly one request got its first token during the probe: the probe' : `${n} requests got their first token during the probe (other traffic): the engine time is their mean`,
  ];
  return check({
    ...base,
    status: 'pass',
    summary: `time to first token ${fmt(clientTtftMs)}: ${fmt(engineMs)} in the engine (queue and prefill), ${fmt(Math.max(0, between))} everything in between (network, proxies, the server's HTTP layer)${n === 1 ? '' : ` — mean of ${n} requests`}`,
    evidence,
  });
}

function fmt(ms: number): string {
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}
