import type { AddressInfo, Server } from 'node:net';
import { readFileSync } from 'node:fs';
import { ConfigError, validateConfig } from './config/load.ts';
import type { Config, ConfigInput } from './config/schema.ts';
import { Registry } from './upstream/registry.ts';
import { Ticker } from './relay/ticker.ts';
import { KeyChecker } from './auth/key-checker.ts';
import { KeyRing } from './auth/key-ring.ts';
import { Limiter } from './limits/limiter.ts';
import { Ledger } from './ledger/ledger.ts';
import { openStore, type StateStore } from './state/store.ts';
import { jsonLineLogger, type RequestLogger } from './generation/request-log.ts';
import { createRequestHandler } from './http/server.ts';
import { createListener, type Listener } from './http/listener.ts';
import { WebSocketHub } from './ws/hub.ts';
import type { GatewayContext } from './generation/context.ts';
import { SluiceError } from './errors.ts';
import { GatewayMetrics } from './metrics/gateway-metrics.ts';
import { startSimulator, type Simulator } from './sim/server.ts';

export const VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** Options for `startGateway`: the config file's keys, plus shorthands and hooks for embedding and tests. */
export interface GatewayOptions extends Omit<ConfigInput, 'upstreams'> {
  upstreams?: ConfigInput['upstreams'];
  /** Shorthand for `heartbeat_ms`. */
  heartbeatMs?: number;
  /** Replaces the JSON-lines request log (tests pass a collector). */
  logger?: RequestLogger;
  /** Receives operational notices (e.g. which dialect `auto` chose); stderr by default. */
  notice?: (line: string) => void;
  env?: NodeJS.ProcessEnv;
}

export interface Gateway {
  /** Base URL ending in /v1 (`https:` when TLS is configured). */
  readonly url: string;
  readonly port: number;
  readonly config: Config;
  /** The listening server: HTTP/1.1, HTTPS with HTTP/2 (TLS), or the h2c/HTTP/1.1 front (src/http/listener.ts). */
  readonly server: Server;
  /** Model ids (and aliases) known right now. */
  models(): string[];
  /** The built-in simulator, when no upstream was configured. */
  readonly simulator: Simulator | undefined;
  /** The state store (keys, ledger), when `state.url` is set. */
  readonly store: StateStore | undefined;
  /** Stops accepting, lets in-flight streams finish for up to `drain_timeout_ms`, then ends them with an error. */
  close(): Promise<void>;
}

/** Starts a gateway. With no upstream configured, the built-in simulator is started in-process as its upstream. */
export async function startGateway(options: GatewayOptions = {}): Promise<Gateway> {
  const { heartbeatMs, logger, notice, env, ...rest } = options;
  const input: ConfigInput = { ...rest, ...(heartbeatMs !== undefined ? { heartbeat_ms: heartbeatMs } : {}) };
  return startGatewayWithConfig(validateConfig(input), { logger, notice, env });
}

/** Starts a gateway from a validated configuration (the CLI's path). */
export async function startGatewayWithConfig(
  config: Config,
  hooks: { logger?: RequestLogger | undefined; notice?: ((line: string) => void) | undefined; env?: NodeJS.ProcessEnv | undefined } = {},
): Promise<Gateway> {
  const notice = hooks.notice ?? ((line: string) => void process.stderr.write(`${line}\n`));
  // The store first: a bad state.url stops start-up before anything listens.
  const store = config.state.url === undefined ? undefined : await openStore(config.state.url);
  const keys = new KeyRing(new KeyChecker(config.api_keys), store, notice);
  try {
    await keys.start(config.state.refresh_ms);
  } catch (err) {
    await store?.close();
    throw err;
  }
  const ledger = store === undefined ? undefined : new Ledger(store, config.state.ledger_flush_ms, notice);
  /** What start-up opened before the listener, closed when start-up fails. */
  const closeState = async (): Promise<void> => {
    keys.stop();
    await ledger?.close();
    await store?.close();
  };
  let simulator: Simulator | undefined;
  if (config.upstreams.length === 0) {
    simulator = await startSimulator({ timing: { ttftMs: config.sim.ttft_ms, itlMs: config.sim.itl_ms, tokens: config.sim.tokens } });
    config = { ...config, upstreams: [{ url: simulator.url, name: 'simulator', dialect: 'vllm', max_connections: 0 }] };
  }
  const registry = new Registry(config, hooks.env ?? process.env, hooks.notice);
  await registry.start(config.discovery_interval_ms);
  // The ticker's period bounds how late a heartbeat, timeout or WebSocket ping can fire: a fifth of the shortest
  // one, 5 ms–1 s.
  const t = config.timeouts;
  const shortest = Math.min(config.heartbeat_ms, ...[t.first_byte_ms, t.idle_ms, t.total_ms, t.client_stall_ms, config.websocket.ping_interval_ms].filter((v) => v > 0));
  const ticker = new Ticker(Math.max(5, Math.min(1_000, Math.floor(shortest / 5))));
  const ctx: GatewayContext = {
    config,
    registry,
    ticker,
    keys,
    limiter: new Limiter(),
    ledger,
    log: hooks.logger ?? jsonLineLogger,
    version: VERSION,
    generations: new Set(),
    metrics: config.metrics.enabled ? new GatewayMetrics(registry.upstreams) : undefined,
  };
  const hub = new WebSocketHub(ctx);
  let listener: Listener;
  try {
    listener = createListener({ tls: readTls(config), h2c: config.h2c }, createRequestHandler(ctx), (req, socket, head) => hub.handleUpgrade(req, socket, head));
  } catch (err) {
    await registry.close();
    await simulator?.close();
    await closeState();
    throw err instanceof Error && 'code' in err && String(err.code).startsWith('ERR_OSSL') ? new ConfigError(`tls: ${err.message}`) : err;
  }
  const server = listener.server;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port, config.host, () => resolve());
    });
  } catch (err) {
    await registry.close();
    await simulator?.close();
    await closeState();
    throw err;
  }
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  let closing: Promise<void> | undefined;

  async function close(): Promise<void> {
    listener.stop();
    hub.stop();
    const deadline = Date.now() + config.drain_timeout_ms;
    while (ctx.generations.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const gen of [...ctx.generations]) {
      gen.fail(new SluiceError('SLUICE_SHUTTING_DOWN', 'the gateway is shutting down'), 'shutdown');
    }
    hub.closeAll();
    listener.destroyAll();
    ticker.stop();
    await registry.close();
    await simulator?.close();
    // After every generation has ended: their ledger records are queued, and this writes them.
    await closeState();
  }

  return {
    url: `${listener.secure ? 'https' : 'http'}://${host}:${addr.port}/v1`,
    port: addr.port,
    config,
    server,
    models: () => registry.models().map((m) => m.id),
    simulator,
    store,
    close: () => (closing ??= close()),
  };
}

/** The PEM certificate and key named by `tls`, read at start so a mistake stops start-up with one line. */
function readTls(config: Config): { cert: Buffer; key: Buffer } | undefined {
  const tls = config.tls;
  if (tls === undefined) return undefined;
  const read = (key: 'cert_file' | 'key_file'): Buffer => {
    try {
      return readFileSync(tls[key]);
    } catch (err) {
      throw new ConfigError(`tls.${key}: cannot read ${tls[key]}: ${(err as Error).message}`);
    }
  };
  return { cert: read('cert_file'), key: read('key_file') };
}
