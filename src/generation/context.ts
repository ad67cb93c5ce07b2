import type { Config } from '../config/schema.ts';
import type { Registry } from '../upstream/registry.ts';
import type { Ticker } from '../relay/ticker.ts';
import type { KeyRing } from '../auth/key-ring.ts';
import type { RateLimiter } from '../limits/limiter.ts';
import type { Ledger } from '../ledger/ledger.ts';
import type { RequestLogEntry, RequestLogger } from './request-log.ts';
import type { GatewayMetrics } from '../metrics/gateway-metrics.ts';
import type { Generation } from './generation.ts';
import type { Logger } from '../logger.ts';
import type { SetupGate } from './setup-gate.ts';
import type { StreamLogStore } from '../resume/log-store.ts';
import type { Router } from '../routing/router.ts';
import type { AdminApi } from '../admin/admin-api.ts';

/**
 * Where a gateway is in its life (src/shutdown.ts): `serving`; `announcing` its shutdown (SIGTERM: `/ready` answers
 * 503 and every connection is still served, so load balancers deregister it); `draining` (no new connections or
 * requests; generations in flight finish).
 */
export type LifecyclePhase = 'serving' | 'announcing' | 'draining';

/**
 * Told when a generation starts and ends: the console's live view (src/console/monitor.ts). Called off the per-chunk
 * path, once each; `entry` is the generation's log line, the same object throughout (its upstream is set once chosen).
 */
export interface GenerationMonitor {
  /** Admitted and routed; `key` is the stored key's name (null for a static key or no auth). */
  started(entry: RequestLogEntry, key: string | null): void;
  /** Over, whatever the outcome (requests refused before they started included), the log line complete. */
  ended(entry: RequestLogEntry, key: string | null): void;
}

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
  /** Routing across replicas (src/routing/); without it, the registry's order (fewest in flight). */
  router?: Router | undefined;
  /** The admin API under /admin/; undefined without `admin_key` (then /admin/ is 404). */
  admin?: AdminApi | undefined;
  /** Prometheus metrics; undefined when `metrics.enabled` is false. */
  metrics: GatewayMetrics | undefined;
  /** The logs of resumable streams (src/resume/, docs/resume.md); absent where a test builds its own context. */
  resume?: StreamLogStore | undefined;
  /** The console's live view; undefined when the console is off. */
  monitor?: GenerationMonitor | undefined;
  /** Set-up in slices under a wave of new requests (`setup_slice_ms`, src/generation/setup-gate.ts); undefined: off. */
  setupGate?: SetupGate | undefined;
}
