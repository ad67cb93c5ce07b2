import type { GatewayContext } from '../generation/context.ts';
import { WINDOW_MS, type ConsoleMonitor, type ConsoleRequest } from './monitor.ts';

/** In-flight streams listed in one snapshot (the count is always exact). */
export const MAX_IN_FLIGHT_SHOWN = 100;
/** Recent requests in one snapshot (the ring may hold more; `GET /console/api/requests/{id}` reads any of them). */
export const MAX_RECENT_SHOWN = 50;

/**
 * One upstream as the live view shows it. Fields an engine or a later feature may add are optional and omitted when
 * unknown: `queue` (requests waiting in the engine) and `kv_cache` (its KV-cache use, 0–1), from engine metrics.
 */
export interface ConsoleUpstream {
  name: string;
  state: 'unknown' | 'up' | 'down';
  in_flight: number;
  models: number;
  /** The last failure, credentials redacted (src/openai/redact.ts); only while the upstream is not up. */
  last_error: string | null;
  /** Time to first token of completed streams over the window, ms; null when none completed. */
  ttft_ms: { p50: number; p99: number; count: number } | null;
  queue?: number;
  kv_cache?: number;
}

/** The live view's whole state: what `GET /console/api/state` answers and each `snapshot` event of the feed carries. */
export interface ConsoleSnapshot {
  version: string;
  /** Epoch ms on the gateway's clock (ages are computed against it). */
  now: number;
  phase: string;
  window_s: number;
  upstreams: ConsoleUpstream[];
  in_flight: { count: number; requests: ConsoleRequest[] };
  recent: ConsoleRequest[];
  /** Requests and tokens per stored key over the window (keys with a name; static keys are not told apart). */
  keys: Array<{ key: string; requests: number; tokens_in: number; tokens_out: number }>;
}

/** Builds the snapshot. Never includes an upstream's URL or key, nor a client key: names and figures only. */
export function consoleSnapshot(ctx: GatewayContext, monitor: ConsoleMonitor): ConsoleSnapshot {
  const ttft = monitor.ttft();
  return {
    version: ctx.version,
    now: Date.now(),
    phase: ctx.lifecycle.phase,
    window_s: WINDOW_MS / 1000,
    upstreams: ctx.registry.upstreams.map((u) => {
      const engine = ctx.router?.engineLoad(u);
      return {
        name: u.name,
        state: u.state,
        in_flight: u.inFlight,
        models: u.models.size,
        last_error: u.state === 'up' ? null : (u.lastError ?? null),
        ttft_ms: ttft.get(u.name) ?? null,
        ...(engine?.waiting === undefined ? {} : { queue: engine.waiting }),
        ...(engine?.kvUsage === undefined ? {} : { kv_cache: engine.kvUsage }),
      };
    }),
    in_flight: { count: monitor.inFlightCount, requests: monitor.inFlight(MAX_IN_FLIGHT_SHOWN) },
    recent: monitor.recent(MAX_RECENT_SHOWN),
    keys: monitor.keyUsage(),
  };
}
