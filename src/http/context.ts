import type { Config } from '../config/schema.ts';
import type { Registry } from '../upstream/registry.ts';
import type { Ticker } from '../relay/ticker.ts';
import type { Cors } from './cors.ts';
import type { KeyChecker } from './auth.ts';
import type { RequestLogger } from './request-log.ts';
import type { StreamRelay } from '../relay/stream-relay.ts';

/** What every handler of one gateway shares. */
export interface GatewayContext {
  config: Config;
  registry: Registry;
  ticker: Ticker;
  cors: Cors;
  keys: KeyChecker;
  log: RequestLogger;
  version: string;
  /** Streams in flight, for draining on shutdown. */
  streams: Set<StreamRelay>;
}
