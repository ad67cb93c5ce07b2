import type { Config } from '../config/schema.ts';
import type { Registry } from '../upstream/registry.ts';
import type { Ticker } from '../relay/ticker.ts';
import type { KeyRing } from '../auth/key-ring.ts';
import type { RateLimiter } from '../limits/limiter.ts';
import type { Ledger } from '../ledger/ledger.ts';
import type { RequestLogger } from './request-log.ts';
import type { GatewayMetrics } from '../metrics/gateway-metrics.ts';
import type { Generation } from './generation.ts';
import type { Logger } from '../logger.ts';
import type { AdminApi } from '../admin/admin-api.ts';

/**
 * Where a gateway is in its life (src/shutdown.ts): `serving`; `announcing` its shutdown (SIGTERM: `/ready` answers
 * 503 and every connection is still served, so load balancers deregister it); `draining` (no new connections or
 * requests; generations in flight finish).
 */
export type LifecyclePhase = 'serving' | 'announcing' | 'draining';

/** What every generation and transport adapter of one gateway shares. */
export interface GatewayContext {
  config: Config;
  registry: Registry;
  ticker: Ticker;
  /** Client keys: static and stored (src/auth/key-ring.ts). */
  keys: KeyRing;
  /** Per-key limits: this process's (`Limiter`) or shared through Redis (src/limits/redis-limiter.ts). */
  limiter: RateLimiter;
  /** The usage ledger; undefined without a state store. */
  ledger: Ledger | undefined;
  log: RequestLogger;
  /** Operational events (debug lines of a request's routing); absent in unit tests that want none. */
  logger?: Logger | undefined;
  version: string;
  /** Generations in flight (streamed or not), for draining on shutdown. */
  generations: Set<Generation>;
  /** Read by the HTTP handler for `/ready` and to send clients elsewhere once shutdown began. */
  lifecycle: { readonly phase: LifecyclePhase };
  /** The admin API under /admin/; undefined without `admin_key` (then /admin/ is 404). */
  admin?: AdminApi | undefined;
  /** Prometheus metrics; undefined when `metrics.enabled` is false. */
  metrics: GatewayMetrics | undefined;
}
