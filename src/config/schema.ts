import { z } from 'zod';

/**
 * The gateway's configuration: YAML file keys (snake_case), each with a flag and/or env twin (see docs/config.md).
 * Validated with zod at start-up; a bad key stops start-up with one line naming it (src/config/load.ts).
 */

const ms = (def: number) => z.number().int().min(0).default(def);

export const DIALECTS = ['auto', 'vllm', 'sglang', 'llamacpp', 'ollama', 'tgi', 'openai'] as const;
export type Dialect = (typeof DIALECTS)[number];
/** Which key carries reasoning text in chat deltas sent to clients (docs/engines.md, "What Sluice normalizes"). */
export const REASONING_FIELDS = ['reasoning_content', 'reasoning', 'both'] as const;
export type ReasoningField = (typeof REASONING_FIELDS)[number];
/** Log levels, most severe first: a level prints its own lines and those above it. */
export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const LOG_FORMATS = ['json', 'text'] as const;
/** How a request's replica is chosen (docs/routing.md); `auto` is `engine-aware`, which is `least-loaded` for a
 * replica whose engine publishes no metrics. */
export const ROUTING_STRATEGIES = ['auto', 'least-loaded', 'engine-aware', 'prefix-aware', 'round-robin'] as const;
export type RoutingStrategy = (typeof ROUTING_STRATEGIES)[number];
export const SATURATION_ACTIONS = ['queue', 'shed'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];
/** The HTTP/1.1 client of an upstream's streamed requests: undici's, or Sluice's own (src/upstream/h1/). */
export const HTTP_CLIENTS = ['undici', 'sluice'] as const;
export type HttpClient = (typeof HTTP_CLIENTS)[number];

const upstreamSchema = z.strictObject({
  /** OpenAI-compatible base URL ending in /v1, as the SDKs' baseURL. */
  // z.url() reports a malformed URL itself; the refinement runs anyway, so it must not throw on one.
  // `gpu1:8000` is the likeliest mistake (it even parses, as scheme `gpu1:`): the message shows the whole form.
  url: z
    .url({ protocol: /^https?$/, error: 'must be an http:// or https:// base URL ending in /v1, such as http://127.0.0.1:8000/v1' })
    .refine((u) => !URL.canParse(u) || /\/v1\/?$/.test(new URL(u).pathname), {
      message: 'must be a base URL ending in /v1, as the OpenAI SDKs\' baseURL (e.g. http://gpu1:8000/v1)',
    }),
  name: z.string().min(1).optional(),
  /** Sent upstream as `Authorization: Bearer`; never logged or returned to clients. */
  api_key: z.string().min(1).optional(),
  /** Read the key from this environment variable instead of the file. */
  api_key_env: z.string().min(1).optional(),
  /** Models this upstream serves; when omitted they are discovered from its /v1/models. */
  models: z.array(z.string().min(1)).optional(),
  dialect: z.enum(DIALECTS).default('auto'),
  /** Upper bound on concurrent requests to this upstream; 0 = no limit. */
  max_connections: z.number().int().min(0).default(0),
  /** The engine's Prometheus endpoint, read by engine-aware routing; default: `/metrics` at the url's origin (vLLM and
   * SGLang serve it at the root, not under /v1). */
  metrics_url: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL, such as http://127.0.0.1:8000/metrics' }).optional(),
  /** The client of its streamed generations (docs/config.md, "The upstream HTTP client"); default: `upstream_client`. */
  http_client: z.enum(HTTP_CLIENTS).optional(),
});

/** Routing across the replicas of a model (docs/routing.md). A plain string (`routing: prefix-aware`) is `strategy`. */
const routingSchema = z
  .strictObject({
    strategy: z.enum(ROUTING_STRATEGIES).default('auto'),
    /** Model id (or alias) → its own strategy. */
    models: z.record(z.string().min(1), z.enum(ROUTING_STRATEGIES)).default({}),
    /** The header whose value keeps a client's requests together (after the prompt's prefix); else the `user` field. */
    session_header: z.string().regex(/^[A-Za-z0-9-]+$/, 'must be a header name').default('x-session-id'),
    /** Engine metrics scraped from each upstream's metrics_url, for the strategies that read them. */
    metrics: z
      .strictObject({
        interval_ms: z.number().int().min(10).default(250),
        /** One scrape (headers and body) must be over within this. */
        timeout_ms: z.number().int().min(10).default(1_000),
        /** Metrics older than this are unknown, not idle. */
        stale_ms: z.number().int().min(10).default(2_000),
        /** Largest metrics answer read; past it the scrape fails. */
        max_bytes: z.number().int().min(1024).default(1024 * 1024),
      })
      .prefault({}),
    prefix: z
      .strictObject({
        /** Characters of the canonical prompt text per hashed block. */
        block_chars: z.number().int().min(16).default(256),
        /** Block hashes remembered per replica (LRU). */
        max_blocks: z.number().int().min(1).default(65_536),
        /** What a whole-prompt match is worth, in queued requests. */
        weight: z.number().min(0).default(4),
      })
      .prefault({}),
    saturation: z
      .strictObject({
        /** A replica is saturated when its engine's queue (plus what Sluice sent it since the scrape) reaches this;
         * 0 = never. */
        queue_threshold: z.number().int().min(0).default(8),
        /** When every replica of the model is saturated: `queue` in Sluice, or `shed` with 429. */
        action: z.enum(SATURATION_ACTIONS).default('queue'),
        /** Requests waiting in Sluice's queue, all models; past it new ones are shed. */
        max_queue: z.number().int().min(0).default(1_000),
        /** A request waits at most this long, then is shed. */
        max_wait_ms: z.number().int().min(1).default(30_000),
      })
      .prefault({}),
  })
  .prefault({});

export const configSchema = z.strictObject({
  host: z.string().min(1).default('127.0.0.1'),
  port: z.number().int().min(0).max(65535).default(8080),
  /** Host names clients may use to reach the gateway (DNS-rebinding defence, src/http/host-check.ts): `.example.com`
   * also allows its subdomains, `*` any name. Unset: checked only when `host` is a loopback address. */
  allowed_hosts: z
    .array(z.string().regex(/^(\*|\.?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?|\[[0-9A-Fa-f:.]+\])$/, 'must be a host name without port (llm.example.com, .example.com for its subdomains too) or *'))
    .optional(),
  /** Serve HTTPS: HTTP/2 and HTTP/1.1 chosen by ALPN (PEM files). */
  tls: z.strictObject({ cert_file: z.string().min(1), key_file: z.string().min(1) }).optional(),
  /** Without TLS, also accept cleartext HTTP/2 with prior knowledge (h2c) on the same port as HTTP/1.1. */
  h2c: z.boolean().default(false),
  /** WebSocket transports: OpenAI's Responses WebSocket mode on /v1/responses and the multiplexed /v1/ws
   * (docs/websocket.md). */
  websocket: z
    .strictObject({
      enabled: z.boolean().default(true),
      /** Largest client message; a bigger one closes the connection with 1009. */
      max_message_bytes: z.number().int().min(1024).default(16 * 1024 * 1024),
      /** Generations one /v1/ws connection may run at once. */
      max_concurrent_per_connection: z.number().int().min(1).default(16),
      /** Ping frames on every connection this often; a peer that misses a pong is dropped. 0 = off. */
      ping_interval_ms: ms(30_000),
      /** Bytes queued on a socket before its streams pause their upstreams (the slow-reader bound). */
      max_buffered_bytes: z.number().int().min(1024).default(1024 * 1024),
      /** Browser origins allowed to open a socket; defaults to cors.origins. Clients that send no Origin pass. */
      origins: z.array(z.string().min(1)).optional(),
    })
    .prefault({}),
  upstreams: z.array(upstreamSchema).default([]),
  /** `http_client` of the upstreams that do not set their own (those given by `--upstream` included). */
  upstream_client: z.enum(HTTP_CLIENTS).default('undici'),
  routing: routingSchema,
  /** Alias → model id served by some upstream. */
  aliases: z.record(z.string().min(1), z.string().min(1)).default({}),
  /** Static client keys (Bearer). Empty: no auth. */
  api_keys: z.array(z.string().min(8, 'keys must be at least 8 characters')).default([]),
  /** The operator's key for `/admin/` and `/console` (src/auth/admin-key.ts). Unset: no admin API. Never a client key. */
  admin_key: z.string().min(16, 'admin_key must be at least 16 characters').optional(),
  cors: z
    .strictObject({
      /** Allowed browser origins; ["*"] allows any. Empty: no CORS headers. */
      origins: z.array(z.string().min(1)).default([]),
    })
    .prefault({}),
  heartbeat_ms: z.number().int().min(10).default(15_000),
  timeouts: z
    .strictObject({
      connect_ms: ms(5_000),
      first_byte_ms: ms(300_000),
      idle_ms: ms(60_000),
      total_ms: ms(1_800_000),
      /** A client that reads nothing for this long while its buffer is full is disconnected. */
      client_stall_ms: ms(30_000),
    })
    .prefault({}),
  limits: z
    .strictObject({
      max_body_bytes: z.number().int().min(1024).default(16 * 1024 * 1024),
      /** Largest SSE line/event accepted from an upstream. */
      max_event_bytes: z.number().int().min(1024).default(16 * 1024 * 1024),
      /** Largest non-streamed upstream response (or error body) read. */
      max_response_bytes: z.number().int().min(1024).default(64 * 1024 * 1024),
      /** Completion tokens reserved against a key's tpm for a request that sets no max_tokens (docs/keys.md). */
      tpm_reserve_completion: z.number().int().min(0).default(256),
    })
    .prefault({}),
  discovery_interval_ms: z.number().int().min(0).default(30_000),
  /** Active health checks: each upstream's `/v1/models` is read on this interval, so `/ready` says whether an engine
   * is reachable now, not only whether the last request to it failed (issue 13). */
  health: z
    .strictObject({
      /** 0 = off: an upstream marked down by a failed request comes back only at a discovery round. */
      interval_ms: ms(5_000),
      /** One check (headers and body) must be over within this; past it the upstream is down. */
      timeout_ms: z.number().int().min(1).default(5_000),
    })
    .prefault({}),
  /** Drop fields OpenAI's stream does not define (vLLM's `stop_reason`, SGLang's `matched_stop`, llama.cpp's
   * `timings`, …). Costs a parse of every chunk, so it is off by default: unknown fields are kept. */
  strip_vendor_fields: z.boolean().default(false),
  /** The reasoning key clients receive; engines write `reasoning_content` (SGLang, llama.cpp, vLLM ≤0.11) or
   * `reasoning` (Ollama, later vLLM). `both` writes both keys. */
  reasoning_field: z.enum(REASONING_FIELDS).default('reasoning_content'),
  /** What SIGTERM does (docs/deploy.md): `/ready` answers 503 at once, new connections are still accepted for
   * `announce_ms` (load balancers take a few probes to deregister), then refused; streams in flight have until
   * `timeout_ms` after the signal to finish, and only then end with `SLUICE_SHUTTING_DOWN`. */
  drain: z
    .strictObject({
      announce_ms: ms(5_000),
      /** Long enough for a long generation: minutes, not the 30 s most gateways give. */
      timeout_ms: ms(600_000),
    })
    .prefault({}),
  /** Deprecated alias of `drain.timeout_ms` (src/config/load.ts moves it there). */
  drain_timeout_ms: z.number().int().min(0).optional(),
  /** Where stored client keys, their limits and the usage ledger live (docs/keys.md). */
  state: z
    .strictObject({
      /** `sqlite:PATH` or `redis://HOST:PORT`. Unset: no stored keys and no ledger (`sluice serve` then uses
       * ./sluice.db if it exists). */
      url: z.string().regex(/^(sqlite:.+|rediss?:\/\/.+)$/, 'must be sqlite:PATH or redis://HOST:PORT').optional(),
      /** How often the store's key version is polled: a revoked or changed key takes effect within this plus a poll. */
      refresh_ms: z.number().int().min(10).default(500),
      /** How often queued ledger records are written (and at 1,000 records, and on shutdown). */
      ledger_flush_ms: z.number().int().min(10).default(1000),
      /** Redis down: how long limited keys are admitted on this process's own counters before they get 503. */
      outage_grace_ms: z.number().int().min(0).default(60_000),
    })
    .prefault({}),
  /** Resumable streams (docs/resume.md): a dropped client reconnects with `GET /v1/streams/{id}?after=N`. */
  resume: z
    .strictObject({
      /** Every streamed request is resumable unless it sends `X-Sluice-Resume: 0`; off: only those that ask. */
      default: z.boolean().default(false),
      /** How long a resumable stream whose clients all left keeps generating, waiting for one to reconnect. */
      grace_ms: ms(30_000),
      /** How long a finished stream stays replayable. */
      ttl_ms: ms(300_000),
      /** Largest log of one stream (its events' bytes); past it the stream ends with SLUICE_RESUME_LOG_FULL. */
      max_stream_bytes: z.number().int().min(1024).default(8 * 1024 * 1024),
      /** All logs of this instance together; finished ones are dropped oldest first to make room. */
      max_total_bytes: z.number().int().min(1024).default(256 * 1024 * 1024),
      /** Clients following one stream at once (the original client not counted). */
      max_readers: z.number().int().min(1).default(8),
    })
    .prefault({}),
  /** How tokens are metered (docs/metering.md). */
  metering: z
    .strictObject({
      /** Ask vLLM and SGLang for usage on every chunk, so a stream cut short is metered exactly. */
      continuous_usage: z.boolean().default(true),
    })
    .prefault({}),
  /** Continuing a stream on another replica when its engine fails after tokens reached the client (docs/failover.md). */
  failover: z
    .strictObject({
      /** Opt-in: splice another replica's continuation of the answer so far into the same client stream. */
      mid_stream: z.boolean().default(false),
      /** Most mid-stream failovers of one stream. */
      max_mid_stream: z.number().int().min(0).default(1),
      /** Per model (the name clients request, or the id it resolves to): these keys, over the global ones. */
      models: z.record(z.string().min(1), z.strictObject({ mid_stream: z.boolean().optional(), max_mid_stream: z.number().int().min(0).optional() })).default({}),
    })
    .prefault({}),
  /** Prometheus metrics on GET /metrics (docs/metrics.md). */
  metrics: z
    .strictObject({
      enabled: z.boolean().default(true),
    })
    .prefault({}),
  /** The console: a page at /console to try a model and watch the gateway live (docs/console.md). */
  console: z
    .strictObject({
      /** Unset: on when `host` is a loopback address (and then only for loopback clients), off otherwise. */
      enabled: z.boolean().optional(),
      /** Finished requests kept in memory for the live view. */
      recent_requests: z.number().int().min(1).max(10_000).default(200),
      /** Live-view feeds (`/console/api/events`) open at once; more are refused with 429. */
      max_live_clients: z.number().int().min(1).max(1_000).default(16),
    })
    .prefault({}),
  log: z
    .strictObject({
      /** One line per request on stdout, when it ends. */
      requests: z.boolean().default(true),
      /** Lines below this level are not printed: request lines are info (warn when the gateway or an upstream
       * failed the client), operational events have their own level (src/logger.ts). */
      level: z.enum(LOG_LEVELS).default('info'),
      /** `json`: one JSON object per line (the request line's fields are a stable interface); `text`: one readable
       * line per event. */
      format: z.enum(LOG_FORMATS).default('json'),
    })
    .prefault({}),
  /** The longest the set-up of a burst of new requests runs before the streams already open get their turn, ms per
   * turn of the event loop (src/generation/setup-gate.ts); 0 (the default): no slicing. Measured: it costs a wave's
   * time to first byte more than it gives the open streams (docs/performance.md, "Set-up in slices"). */
  setup_slice_ms: z.number().min(0).max(1000).default(0),
  /** Gateway processes sharing the port (node:cluster, docs/deploy.md): `auto` = one per core. Shared state (limits,
   * resumable streams) is shared across workers as across instances: through the Redis state store. */
  workers: z.union([z.number().int().min(1).max(256), z.literal('auto')]).default(1),
  /** Built-in simulator settings, used when no upstream is configured. */
  sim: z
    .strictObject({
      ttft_ms: ms(120),
      itl_ms: ms(25),
      tokens: z.number().int().min(1).default(32),
    })
    .prefault({}),
});

export type Config = z.output<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
export type UpstreamConfig = z.output<typeof upstreamSchema>;
export type RoutingConfig = z.output<typeof routingSchema>;
