/**
 * The simulator's timing and failure knobs. Server flags set the defaults; a request may override them with a `sim`
 * object in its JSON body (the gateway passes unknown body fields through, so tests reach the simulator behind it).
 */

export const FAIL_MODES = ['none', 'status', 'hang', 'drop', 'error_frame'] as const;
export type FailMode = (typeof FAIL_MODES)[number];

export interface SimTiming {
  /** Time to first token, ms: the fixed part, before the prefill of the prompt's uncached tokens. */
  ttftMs: number;
  /** Prefill time per prompt token not found in the prefix cache, µs (0 = prefill is free). */
  prefillUsPerToken: number;
  /** Inter-token latency, ms. */
  itlMs: number;
  /** Uniform jitter added to each delay, ± ms. */
  jitterMs: number;
  /** Tokens to generate when the request sets no max_tokens. */
  tokens: number;
  /** Delay before response headers are sent, ms. */
  headersDelayMs: number;
  /** Failure to inject. `status`: HTTP error before headers; `hang`: stop sending after failAfter tokens, keep the
   * connection open; `drop`: destroy the connection after failAfter tokens; `error_frame`: an in-band error. */
  fail: FailMode;
  failAfter: number;
  failStatus: number;
  /** Probability in [0,1] that `fail` applies to a given request (1 = always). */
  failRate: number;
  /** Probe mode: each token's text is ` @<epoch ms, µs precision>`, the time it was written, for delay measurement. */
  probe: boolean;
  /** Reasoning tokens streamed before the answer, in the dialect's reasoning field (0 = none). */
  reasoning: number;
  /** Answer chat requests with a tool call (to the request's first tool, `get_weather` if none) instead of text. */
  tools: boolean;
}

export const DEFAULT_TIMING: SimTiming = {
  ttftMs: 120,
  prefillUsPerToken: 0,
  itlMs: 25,
  jitterMs: 0,
  tokens: 32,
  headersDelayMs: 0,
  fail: 'none',
  failAfter: 0,
  failStatus: 500,
  failRate: 1,
  probe: false,
  reasoning: 0,
  tools: false,
};

const KEYS: Record<string, keyof SimTiming> = {
  ttft_ms: 'ttftMs',
  prefill_us_per_token: 'prefillUsPerToken',
  itl_ms: 'itlMs',
  jitter_ms: 'jitterMs',
  tokens: 'tokens',
  headers_delay_ms: 'headersDelayMs',
  fail: 'fail',
  fail_after: 'failAfter',
  fail_status: 'failStatus',
  fail_rate: 'failRate',
  probe: 'probe',
  reasoning: 'reasoning',
  tools: 'tools',
};

/** Applies a request's `sim` object over the defaults. Returns an error message for a bad knob. */
export function mergeSimOptions(base: SimTiming, raw: unknown): SimTiming | string {
  if (raw === undefined || raw === null) return base;
  if (typeof raw !== 'object' || Array.isArray(raw)) return '`sim` must be an object';
  const out: SimTiming = { ...base };
  for (const [k, v] of Object.entries(raw)) {
    const key = KEYS[k];
    if (!key) return `unknown sim option \`${k}\`; allowed: ${Object.keys(KEYS).join(', ')}`;
    if (key === 'fail') {
      if (typeof v !== 'string' || !(FAIL_MODES as readonly string[]).includes(v)) {
        return `sim.fail must be one of ${FAIL_MODES.join(', ')}`;
      }
      out.fail = v as FailMode;
    } else if (key === 'probe' || key === 'tools') {
      if (typeof v !== 'boolean') return `sim.${k} must be a boolean`;
      out[key] = v;
    } else {
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) return `sim.${k} must be a non-negative number`;
      out[key] = v;
    }
  }
  return out;
}
