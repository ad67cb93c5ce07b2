import type { Config } from '../config/schema.ts';
import type { Registry } from '../upstream/registry.ts';
import type { Ticker } from '../relay/ticker.ts';
import type { KeyChecker } from '../auth/key-checker.ts';
import type { RequestLogger } from './request-log.ts';
import type { GatewayMetrics } from '../metrics/gateway-metrics.ts';
import type { Generation } from './generation.ts';
import type { Logger } from '../logger.ts';

/** What every generation and transport adapter of one gateway shares. */
export interface GatewayContext {
  config: Config;
  registry: Registry;
  ticker: Ticker;
  keys: KeyChecker;
  log: RequestLogger;
  /** Operational events (debug lines of a request's routing); absent in unit tests that want none. */
  logger?: Logger | undefined;
  version: string;
  /** Generations in flight (streamed or not), for draining on shutdown. */
  generations: Set<Generation>;
  /** Prometheus metrics; undefined when `metrics.enabled` is false. */
  metrics: GatewayMetrics | undefined;
}
