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
}

export type RequestLogger = (entry: RequestLogEntry) => void;

export const jsonLineLogger: RequestLogger = (entry) => {
  process.stdout.write(`${JSON.stringify(entry)}\n`);
};
