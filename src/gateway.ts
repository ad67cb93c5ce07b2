import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { validateConfig } from './config/load.ts';
import type { Config, ConfigInput } from './config/schema.ts';
import { Registry } from './upstream/registry.ts';
import { Ticker } from './relay/ticker.ts';
import { Cors } from './http/cors.ts';
import { KeyChecker } from './http/auth.ts';
import { jsonLineLogger, type RequestLogger } from './http/request-log.ts';
import { createGatewayServer } from './http/server.ts';
import type { GatewayContext } from './http/context.ts';
import { SluiceError } from './errors.ts';
import { startSimulator, type Simulator } from './sim/server.ts';

export const VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** Options for `startGateway`: the config file's keys, plus shorthands and hooks for embedding and tests. */
export interface GatewayOptions extends Omit<ConfigInput, 'upstreams'> {
  upstreams?: ConfigInput['upstreams'];
  /** Shorthand for `heartbeat_ms`. */
  heartbeatMs?: number;
  /** Replaces the JSON-lines request log (tests pass a collector). */
  logger?: RequestLogger;
  env?: NodeJS.ProcessEnv;
}

export interface Gateway {
  /** Base URL ending in /v1. */
  readonly url: string;
  readonly port: number;
  readonly config: Config;
  readonly server: Server;
  /** The built-in simulator, when no upstream was configured. */
  readonly simulator: Simulator | undefined;
  /** Stops accepting, lets in-flight streams finish for up to `drain_timeout_ms`, then ends them with an error. */
  close(): Promise<void>;
}

/** Starts a gateway. With no upstream configured, the built-in simulator is started in-process as its upstream. */
export async function startGateway(options: GatewayOptions = {}): Promise<Gateway> {
  const { heartbeatMs, logger, env, ...rest } = options;
  const input: ConfigInput = { ...rest, ...(heartbeatMs !== undefined ? { heartbeat_ms: heartbeatMs } : {}) };
  return startGatewayWithConfig(validateConfig(input), { logger, env });
}

/** Starts a gateway from a validated configuration (the CLI's path). */
export async function startGatewayWithConfig(
  config: Config,
  hooks: { logger?: RequestLogger | undefined; env?: NodeJS.ProcessEnv | undefined } = {},
): Promise<Gateway> {
  let simulator: Simulator | undefined;
  if (config.upstreams.length === 0) {
    simulator = await startSimulator({ timing: { ttftMs: config.sim.ttft_ms, itlMs: config.sim.itl_ms, tokens: config.sim.tokens } });
    config = { ...config, upstreams: [{ url: simulator.url, name: 'simulator', dialect: 'vllm', max_connections: 0 }] };
  }
  const registry = new Registry(config, hooks.env ?? process.env);
  await registry.start(config.discovery_interval_ms);
  // The ticker's period bounds how late a heartbeat or timeout can fire: a fifth of the shortest one, 5 ms–1 s.
  const t = config.timeouts;
  const shortest = Math.min(config.heartbeat_ms, ...[t.first_byte_ms, t.idle_ms, t.total_ms, t.client_stall_ms].filter((v) => v > 0));
  const ticker = new Ticker(Math.max(5, Math.min(1_000, Math.floor(shortest / 5))));
  const ctx: GatewayContext = {
    config,
    registry,
    ticker,
    cors: new Cors(config.cors.origins),
    keys: new KeyChecker(config.api_keys),
    log: hooks.logger ?? jsonLineLogger,
    version: VERSION,
    streams: new Set(),
  };
  const server = createGatewayServer(ctx);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port, config.host, () => resolve());
    });
  } catch (err) {
    await registry.close();
    await simulator?.close();
    throw err;
  }
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  let closing: Promise<void> | undefined;

  async function close(): Promise<void> {
    server.close();
    server.closeIdleConnections();
    const deadline = Date.now() + config.drain_timeout_ms;
    while (ctx.streams.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const relay of [...ctx.streams]) {
      relay.fail(new SluiceError('SLUICE_SHUTTING_DOWN', 'the gateway is shutting down'), 'shutdown');
    }
    server.closeAllConnections();
    ticker.stop();
    await registry.close();
    await simulator?.close();
  }

  return {
    url: `http://${host}:${addr.port}/v1`,
    port: addr.port,
    config,
    server,
    simulator,
    close: () => (closing ??= close()),
  };
}
