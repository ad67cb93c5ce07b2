import type { LogLevel } from '../config/schema.ts';
import { textValue, type LineSink, type Logger } from '../logger.ts';

/** One structured line per request (JSON on stdout by default). Upstream credentials never appear here. */
export interface RequestLogEntry {
  ts: string;
  id: string;
  method: string;
  path: string;
  model: string | undefined;
  upstream: string | undefined;
  status: number;
  stream: boolean;
  ttft_ms: number | undefined;
  tokens_in: number | undefined;
  tokens_out: number | undefined;
  /**
   * How the tokens were metered: `reported` by the engine (its usage, also on every chunk when it can, so a cut
   * stream is exact), or `counted` from the chunks relayed when the engine reported none (docs/metering.md).
   */
  tokens_source: 'reported' | 'counted' | undefined;
  duration_ms: number;
  outcome: string;
  error_code: string | undefined;
  /** Mid-stream failovers (docs/failover.md): the replica that failed, the one that took over, why, after how many tokens. */
  failovers?: Array<{ from: string; to?: string; reason: string; after_tokens: number; at_ms?: number }>;
  /** Why a stream that failed mid-answer was not failed over although mid-stream failover is on. */
  failover_refused?: string;
}

export type RequestLogger = (entry: RequestLogEntry) => void;

/** Outcomes where the gateway or an upstream let the client down, as opposed to its own refusal or departure. */
const FAILED = new Set(['upstream_error', 'truncated', 'timeout', 'shutdown']);

/**
 * A request line's level: `error` for a fault of the gateway itself, `warn` when the gateway or an upstream failed the
 * client (a 5xx, or a stream cut after its 200), `info` for the rest: answers, the client's own mistakes (4xx, an
 * upstream's 4xx relayed) and clients that left. An operator at `log.level: warn` sees exactly the requests that went
 * wrong on the serving side.
 */
export function requestLevel(e: RequestLogEntry): LogLevel {
  if (e.error_code === 'SLUICE_INTERNAL') return 'error';
  if (e.status >= 500) return 'warn';
  if (e.status >= 400) return 'info';
  return FAILED.has(e.outcome) ? 'warn' : 'info';
}

/**
 * The text form: `TS LEVEL METHOD PATH STATUS OUTCOME [error=CODE] model=… upstream=… ttft=…ms tokens=in/out
 * [(counted)] DURATIONms id=…`, fields the request never reached left out.
 */
export function requestText(e: RequestLogEntry, level: LogLevel): string {
  const words = [e.ts, level, e.method, textValue(e.path), String(e.status), e.outcome];
  if (e.error_code !== undefined) words.push(`error=${e.error_code}`);
  if (e.model !== undefined) words.push(`model=${textValue(e.model)}`);
  if (e.upstream !== undefined) words.push(`upstream=${textValue(e.upstream)}`);
  if (e.ttft_ms !== undefined) words.push(`ttft=${e.ttft_ms}ms`);
  if (e.tokens_in !== undefined || e.tokens_out !== undefined) {
    // Counted from the relayed chunks rather than reported by the engine (docs/metering.md): said, since it may differ.
    words.push(`tokens=${e.tokens_in ?? '-'}/${e.tokens_out ?? '-'}${e.tokens_source === 'counted' ? ' (counted)' : ''}`);
  }
  for (const f of e.failovers ?? []) words.push(`failover=${textValue(`${f.from}>${f.to ?? '-'}:${f.reason}@${f.after_tokens}`)}`);
  if (e.failover_refused !== undefined) words.push(`failover_refused=${textValue(e.failover_refused)}`);
  words.push(`${e.duration_ms}ms`, `id=${textValue(e.id)}`);
  return words.join(' ');
}

/**
 * The request log of `sluice serve`: one line on stdout per finished request, at its level. The JSON form is the
 * entry as it is: its fields are an interface that users parse (docs/config.md), so the level is not added to it.
 */
export function requestLogger(logger: Logger, sink: LineSink = process.stdout): RequestLogger {
  return (entry) => {
    const level = requestLevel(entry);
    if (!logger.enabled(level)) return;
    sink.write(`${logger.format === 'json' ? JSON.stringify(entry) : requestText(entry, level)}\n`);
  };
}
