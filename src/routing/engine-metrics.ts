/**
 * What routing reads from an engine's Prometheus text: its queue, its running batch and its KV-cache usage. vLLM
 * (v1 `vllm/v1/metrics/loggers.py`): `vllm:num_requests_waiting`, `vllm:num_requests_running`,
 * `vllm:kv_cache_usage_perc` (0–1; `vllm:gpu_cache_usage_perc` before v0.10). SGLang
 * (`sglang/srt/metrics/collector.py`): `sglang:num_queue_reqs`, `sglang:num_running_reqs`, `sglang:token_usage`.
 * Pure: no I/O. Samples of one name with several label sets (an engine serving two models, data-parallel ranks) are
 * summed, the KV usage averaged.
 */

export interface EngineLoad {
  /** Requests waiting in the engine's queue. */
  waiting: number;
  /** Requests in the engine's running batch. */
  running: number;
  /** KV-cache usage, 0–1; undefined when the engine does not say. */
  kvUsage: number | undefined;
}

type Field = 'waiting' | 'running' | 'kv';

const NAMES: ReadonlyMap<string, Field> = new Map([
  ['vllm:num_requests_waiting', 'waiting'],
  ['vllm:num_requests_running', 'running'],
  ['vllm:kv_cache_usage_perc', 'kv'],
  ['vllm:gpu_cache_usage_perc', 'kv'],
  ['sglang:num_queue_reqs', 'waiting'],
  ['sglang:num_running_reqs', 'running'],
  ['sglang:token_usage', 'kv'],
]);

/** A line longer than this is not one of the gauges above (a huge label set, garbage): skipped unread. */
const MAX_LINE = 4096;

/**
 * Reads an engine's load from its `/metrics` text. Returns undefined when neither a queue nor a running figure is in
 * it (not an engine this knows, or not metrics at all): routing then treats the engine as unknown.
 */
export function parseEngineMetrics(text: string): EngineLoad | undefined {
  let waiting: number | undefined;
  let running: number | undefined;
  let kvSum = 0;
  let kvCount = 0;
  let kvName: string | undefined;
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    const lineStart = start;
    start = end + 1;
    // Cheap tests first: every wanted name starts with `vllm:` or `sglang:`, and comments start with `#`.
    const c = text.charCodeAt(lineStart);
    if ((c !== 0x76 && c !== 0x73) || end - lineStart > MAX_LINE) continue;
    const line = text.slice(lineStart, end);
    const nameEnd = nameLength(line);
    const field = NAMES.get(line.slice(0, nameEnd));
    if (field === undefined) continue;
    const value = sampleValue(line, nameEnd);
    if (value === undefined) continue;
    if (field === 'waiting') waiting = (waiting ?? 0) + value;
    else if (field === 'running') running = (running ?? 0) + value;
    else {
      // Both KV names in one answer (a vLLM that publishes the old and the new): one of them only.
      const name = line.slice(0, nameEnd);
      kvName ??= name;
      if (name !== kvName) continue;
      kvSum += value;
      kvCount++;
    }
  }
  if (waiting === undefined && running === undefined) return undefined;
  return { waiting: waiting ?? 0, running: running ?? 0, kvUsage: kvCount > 0 ? Math.min(1, kvSum / kvCount) : undefined };
}

/** Length of the metric name at the start of a sample line: up to `{`, a space or the end. */
function nameLength(line: string): number {
  for (let i = 0; i < line.length; i++) {
    const ch = line.charCodeAt(i);
    if (ch === 0x7b || ch === 0x20 || ch === 0x09) return i;
  }
  return line.length;
}

/** The sample's value: the first field after the labels (an optional timestamp follows). Non-finite or negative → none. */
function sampleValue(line: string, nameEnd: number): number | undefined {
  let i = nameEnd;
  if (line.charCodeAt(i) === 0x7b) {
    // Label values may hold `}` inside quotes.
    let quoted = false;
    for (i++; i < line.length; i++) {
      const ch = line.charCodeAt(i);
      if (quoted) {
        if (ch === 0x5c) i++;
        else if (ch === 0x22) quoted = false;
      } else if (ch === 0x22) quoted = true;
      else if (ch === 0x7d) break;
    }
    if (i >= line.length) return undefined;
    i++;
  }
  const rest = line.slice(i).trim();
  const sp = rest.search(/\s/);
  const v = Number(sp < 0 ? rest : rest.slice(0, sp));
  return rest !== '' && Number.isFinite(v) && v >= 0 ? v : undefined;
}
