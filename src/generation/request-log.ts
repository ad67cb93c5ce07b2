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
  duration_ms: number;
  outcome: string;
  error_code: string | undefined;
}

export type RequestLogger = (entry: RequestLogEntry) => void;

export const jsonLineLogger: RequestLogger = (entry) => {
  process.stdout.write(`${JSON.stringify(entry)}\n`);
};
