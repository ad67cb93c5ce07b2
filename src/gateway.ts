import type { AddressInfo, Server } from 'node:net';
import { readFileSync } from 'node:fs';
import { ConfigError, validateConfig } from './config/load.ts';
import type { Config, ConfigInput } from './config/schema.ts';
import { Registry } from './upstream/registry.ts';
import { Router } from './routing/router.ts';
import { Ticker } from './relay/ticker.ts';
import { KeyChecker } from './auth/key-checker.ts';
import { requestLogger, type RequestLogger } from './generation/request-log.ts';
import { Logger, type EventLog } from './logger.ts';
import { KeyRing } from './auth/key-ring.ts';
import { AdminKey } from './auth/admin-key.ts';
import { AdminApi } from './admin/admin-api.ts';
import { Limiter, type RateLimiter } from './limits/limiter.ts';
import type { RedisStore } from './state/redis-store.ts';
import { Ledger } from './ledger/ledger.ts';
import { openStore, type StateStore } from './state/store.ts';
import { createRequestHandler } from './http/server.ts';
import { createListener, type Listener } from './http/listener.ts';
import { WebSocketHub } from './ws/hub.ts';
import type { GatewayContext, LifecyclePhase } from './generation/context.ts';
import { Shutdown } from './shutdown.ts';
import { GatewayMetrics } from './metrics/gateway-metrics.ts';
import { startSimulator, type Simulator } from './sim/server.ts';
import { MemoryLogStore } from './resume/memory-log-store.ts';
import type { StreamLogStore } from './resume/log-store.ts';
import { ConsoleMonitor } from './console/monitor.ts';
import { SetupGate } from './generation/setup-gate.ts';
import { consoleEnabled } from './console/access.ts';

export const VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** Options for `startGateway`: the config file's keys, plus shorthands and hooks for embedding and tests. */
export interface GatewayOptions extends Omit<ConfigInput, 'upstreams'> {
  upstreams?: ConfigInput['upstreams'];
  /** Shorthand for `heartbeat_ms`. */
  heartbeatMs?: number;
  /** Replaces the JSON-lines request log (tests pass a collector). */
  logger?: RequestLogger;
  /** Receives operational events at or above `log.level` (e.g. which dialect `auto` chose) instead of stderr. */
  notice?: EventLog;
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
  /** The Prometheus metrics, when `metrics.enabled`. */
  readonly metrics: GatewayMetrics | undefined;
  /** Generations in flight (streamed or not, HTTP or WebSocket). */
  readonly inFlight: number;
  /** Whether it is serving, announcing its shutdown or draining (src/shutdown.ts). */
  readonly phase: LifecyclePhase;
  /**
   * What SIGTERM does (src/shutdown.ts): `/ready` answers 503 at once, connections are still accepted for
   * `drain.announce_ms`, then refused; in-flight streams have until `drain.timeout_ms` after the call to finish, then
   * end with `SLUICE_SHUTTING_DOWN`. Resolves once every connection is closed.
   */
  shutdown(): Promise<void>;
  /** As `shutdown()` without the announce window: stops accepting at once (for embedding and tests). */
  close(): Promise<void>;
  /** Ends every stream in flight at once with `SLUICE_SHUTTING_DOWN` and closes everything (a second signal). */
  terminate(): Promise<void>;
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
  hooks: { logger?: RequestLogger | undefined; notice?: EventLog | undefined; env?: NodeJS.ProcessEnv | undefined } = {},
): Promise<Gateway> {
  const logger = new Logger(config.log, { events: hooks.notice });
  const notice = (line: string): void => logger.event(line, 'warn');
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
  if (store?.health) store.health.notice = notice;
  const limiter = await createLimiter(store, config);
  let resume: StreamLogStore;
  try {
    resume = await openLogStore(config);
  } catch (err) {
    limiter.close?.();
    await ledger?.close();
    keys.stop();
    await store?.close();
    throw err;
  }
  /** What start-up opened before the listener, closed when start-up fails and after the drain. */
  const closeState = async (): Promise<void> => {
    keys.stop();
    limiter.close?.();
    await resume.close();
    await ledger?.close();
    await store?.close();
  };
  let simulator: Simulator | undefined;
  if (config.upstreams.length === 0) {
    simulator = await startSimulator({ timing: { ttftMs: config.sim.ttft_ms, itlMs: config.sim.itl_ms, tokens: config.sim.tokens } });
    config = { ...config, upstreams: [{ url: simulator.url, name: 'simulator', dialect: 'vllm', max_connections: 0 }] };
  }
  const env = hooks.env ?? process.env;
  const registry = new Registry(config, env, logger.event);
  warnUnsetKeys(config, env, registry, logger);
  await registry.start(config.discovery_interval_ms);
  const router = new Router(config, registry, logger.event);
  router.start();
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
    limiter,
    ledger,
    log: hooks.logger ?? requestLogger(logger),
    logger,
    version: VERSION,
    generations: new Set(),
    lifecycle: { phase: 'serving' },
    metrics: config.metrics.enabled ? new GatewayMetrics(registry.upstreams) : undefined,
    resume,
    monitor: consoleEnabled(config) ? new ConsoleMonitor(config.console.recent_requests) : undefined,
    setupGate: config.setup_slice_ms > 0 ? new SetupGate(config.setup_slice_ms) : undefined,
    router,
    admin: config.admin_key === undefined ? undefined : new AdminApi(new AdminKey(config.admin_key), store, keys),
  };
  if (ctx.metrics) router.registerMetrics([ctx.metrics.registry]);
  if (store !== undefined) ctx.metrics?.watchState(store, ledger);
  const hub = new WebSocketHub(ctx);
  let listener: Listener;
  try {
    listener = createListener({ tls: readTls(config), h2c: config.h2c }, createRequestHandler(ctx), (req, socket, head) => hub.handleUpgrade(req, socket, head));
  } catch (err) {
    await router.close();
    await registry.close();
    await simulator?.close();
    await closeState();
    // OpenSSL's text names neither file ("PEM routines::no start line"): the line says which pair it was.
    const files = config.tls ? ` (tls.cert_file ${config.tls.cert_file}, tls.key_file ${config.tls.key_file}: a PEM certificate and its private key)` : '';
    throw err instanceof Error && 'code' in err && String(err.code).startsWith('ERR_OSSL') ? new ConfigError(`tls: ${err.message}${files}`) : err;
  }
  const server = listener.server;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port, config.host, () => resolve());
    });
  } catch (err) {
    await router.close();
    await registry.close();
    await simulator?.close();
    await closeState();
    throw err;
  }
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const shutdown = new Shutdown({
    listener,
    hub,
    generations: ctx.generations,
    release: async () => {
      ticker.stop();
      await ctx.resume?.close();
      await router.close();
      await registry.close();
      await simulator?.close();
      // After every generation has ended: their ledger records are queued, and this writes them.
      await closeState();
    },
    notice: logger.event,
  });
  // The handler reads the phase from the context, built before the listener and hub that the shutdown stops.
  ctx.lifecycle = shutdown;
  const drain = config.drain;

  return {
    url: `${listener.secure ? 'https' : 'http'}://${host}:${addr.port}/v1`,
    port: addr.port,
    config,
    server,
    models: () => registry.models().map((m) => m.id),
    simulator,
    store,
    metrics: ctx.metrics,
    get inFlight() {
      return ctx.generations.size;
    },
    get phase() {
      return shutdown.phase;
    },
    shutdown: () => shutdown.begin(drain.announce_ms, drain.timeout_ms),
    close: () => shutdown.begin(0, drain.timeout_ms),
    terminate: () => shutdown.now(),
  };
}

/**
 * Limits per process (no store, SQLite), or shared by every instance through Redis (loaded only then, so the other
 * paths never load the Redis client).
 */
/**
 * Where resumable streams are logged (docs/resume.md): in Redis when `state.url` is `redis://…`, so a client may resume
 * on any instance or worker; in this process's memory otherwise.
 */
async function openLogStore(config: Config): Promise<StreamLogStore> {
  const limits = {
    maxStreamBytes: config.resume.max_stream_bytes,
    maxTotalBytes: config.resume.max_total_bytes,
    maxReaders: config.resume.max_readers,
    ttlMs: config.resume.ttl_ms,
  };
  const url = config.state.url;
  if (url === undefined || !/^rediss?:/.test(url)) return new MemoryLogStore(limits);
  const { RedisLogStore } = await import('./resume/redis-log-store.ts');
  return RedisLogStore.open(url, limits);
}

async function createLimiter(store: StateStore | undefined, config: Config): Promise<RateLimiter> {
  if (store === undefined || !/^rediss?:/.test(store.url)) return new Limiter();
  const { RedisLimiter } = await import('./limits/redis-limiter.ts');
  const redis = store as RedisStore;
  return new RedisLimiter(redis.redis, redis.health, { outageGraceMs: config.state.outage_grace_ms });
}

/**
 * An `api_key_env` that names an unset variable leaves that upstream without a key: its engine then answers 401 to
 * every request, which reaches clients as a 502. Said once at start, where the cause is plain.
 */
function warnUnsetKeys(config: Config, env: NodeJS.ProcessEnv, registry: Registry, logger: Logger): void {
  config.upstreams.forEach((u, i) => {
    if (u.api_key === undefined && u.api_key_env !== undefined && !env[u.api_key_env]) {
      logger.event(`upstream ${registry.upstreams[i]?.name}: api_key_env names ${u.api_key_env}, which is not set: requests to it carry no key`, 'warn');
    }
  });
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
