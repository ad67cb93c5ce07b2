import type { Config } from '../config/schema.ts';
import type { Registry } from '../upstream/registry.ts';
import type { Ticker } from '../relay/ticker.ts';
import type { KeyRing } from '../auth/key-ring.ts';
import type { Limiter } from '../limits/limiter.ts';
import type { Ledger } from '../ledger/ledger.ts';
import type { RequestLogger } from './request-log.ts';
import type { GatewayMetrics } from '../metrics/gateway-metrics.ts';
import type { Generation } from './generation.ts';

/** What every generation and transport adapter of one gateway shares. */
export interface GatewayContext {
  config: Config;
  registry: Registry;
  ticker: Ticker;
  /** Client keys: static and stored (src/auth/key-ring.ts). */
  keys: KeyRing;
  /** Per-key limits of this process. */
  limiter: Limiter;
  /** The usage ledger; undefined without a state store. */
  ledger: Ledger | undefined;
  log: RequestLogger;
  version: string;
  /** Generations in flight (streamed or not), for draining on shutdown. */
  generations: Set<Generation>;
  /** Prometheus metrics; undefined when `metrics.enabled` is false. */
  metrics: GatewayMetrics | undefined;
}
