import { Pool } from 'undici';
import type { UpstreamConfig } from '../config/schema.ts';
import { ConfigError } from '../config/load.ts';
import { redactSecrets, redactUrl } from '../openai/redact.ts';
import { UpstreamArrivals } from './arrival-stats.ts';
import { H1Pool } from './h1/pool.ts';
import type { Dispatches } from './upstream-body.ts';
import type { ResolvedDialect } from '../openai/dialects/create-normalizer.ts';

/** What `dialect: auto` found, and the evidence, for the log line. */
export interface DialectDetection {
  dialect: ResolvedDialect;
  reason: string;
}

/** After a failure, an upstream is skipped (unless nothing else is left) for this long, then tried again. */
const COOLDOWN_MS = 5_000;

/**
 * Whether an upstream is reachable, as `/ready` reports it: `down` from a failed request (connect error, 5xx) or a
 * failed check, `up` again only from a check or discovery that succeeds, so one request that happens to succeed
 * amid failures does not flip it back and forth (nor print a line each time). `unknown` until the first check.
 */
export type UpstreamState = 'unknown' | 'up' | 'down';

/** Told each time an upstream's state changes (the registry prints one line). */
export type StateChangeListener = (upstream: Upstream, state: 'up' | 'down', previous: UpstreamState, since: number) => void;

/**
 * One OpenAI-compatible engine endpoint: its pooled keep-alive connections (undici Pool), the models it serves,
 * in-flight count for balancing, and passive/active health.
 */
export class Upstream {
  readonly name: string;
  /** Origin + path prefix, e.g. http://gpu1:8000/v1 (no trailing slash, no userinfo: it is printed and logged). */
  readonly baseUrl: string;
  readonly #pathPrefix: string;
  readonly pool: Pool;
  /** The client of streamed generations: Sluice's own with `http_client: sluice`, else `pool`. */
  readonly streamPool: Dispatches;
  readonly #ownPool: H1Pool | undefined;
  readonly staticModels: readonly string[] | undefined;
  readonly dialect: UpstreamConfig['dialect'];
  /** `auto`'s finding, once model discovery has reached the engine. */
  detected: DialectDetection | undefined;
  readonly maxConnections: number;
  models = new Set<string>();
  /** owned_by per model, from discovery. */
  owners = new Map<string, string>();
  inFlight = 0;
  /** How its streams arrive at Sluice (events per read, gaps, a buffering hop behind it): src/upstream/arrival-stats.ts. */
  readonly arrivals = new UpstreamArrivals();
  #unhealthyUntil = 0;
  lastError: string | undefined;
  #state: UpstreamState = 'unknown';
  /** When the state last changed (epoch ms). */
  #since = Date.now();
  /** When the last active check or discovery of this upstream ended (epoch ms), whatever its outcome. */
  lastCheck: number | undefined;
  /** Set by the registry. */
  onStateChange: StateChangeListener | undefined;
  /** Authorization header value; kept out of logs and client responses. */
  readonly #authorization: string | undefined;
  /** What `redact` removes: the key, the URL's password, and the header values made of them. Private fields are not
   * shown by `util.inspect`, JSON or `toString`. */
  readonly #secrets: readonly string[];

  /** Throws ConfigError for a URL with `user:password@` beside an api_key (both would be the Authorization header). */
  constructor(config: UpstreamConfig, index: number, connectTimeoutMs: number, env: NodeJS.ProcessEnv = process.env) {
    const url = new URL(config.url);
    this.baseUrl = redactUrl(config.url).replace(/\/+$/, '');
    this.#pathPrefix = url.pathname.replace(/\/+$/, '');
    // `host` never includes userinfo.
    this.name = config.name ?? `${url.host}`;
    if (config.name === undefined && index > 0) this.name = `${url.host}#${index}`;
    const key = config.api_key ?? (config.api_key_env ? env[config.api_key_env] : undefined);
    const secrets: string[] = [];
    if (key) secrets.push(key, `Bearer ${key}`);
    this.#authorization = key ? `Bearer ${key}` : undefined;
    // `http://user:password@host/v1`: undici is given the origin only, which drops userinfo, so these credentials were
    // silently not sent. They are HTTP Basic credentials (RFC 9110 §11.2; how curl and browsers read such a URL):
    // send them as that, once, from here, and keep them out of every printed URL.
    if (url.username !== '' || url.password !== '') {
      if (key) throw new ConfigError(`upstreams[${index}]: the url has user:password and api_key is set; both would be the Authorization header: keep one`);
      const user = percentDecoded(url.username);
      const password = percentDecoded(url.password);
      const basic = Buffer.from(`${user}:${password}`, 'utf8').toString('base64');
      this.#authorization = `Basic ${basic}`;
      secrets.push(basic, `${user}:${password}`, `${url.username}:${url.password}`);
      if (password !== '') secrets.push(password, url.password);
    }
    // Longest first: a secret that contains another is replaced whole.
    this.#secrets = [...new Set(secrets)].sort((a, b) => b.length - a.length);
    this.staticModels = config.models;
    if (config.models) for (const m of config.models) this.models.add(m);
    this.dialect = config.dialect;
    this.maxConnections = config.max_connections;
    this.pool = new Pool(url.origin, {
      connect: { timeout: connectTimeoutMs },
      // Sluice's own relay enforces first-byte and idle timeouts with distinct codes; undici's are off.
      headersTimeout: 0,
      bodyTimeout: 0,
      keepAliveTimeout: 30_000,
      ...(config.max_connections > 0 ? { connections: config.max_connections } : {}),
    });
    // Streamed requests only: health checks, discovery, metrics scrapes and non-streamed requests stay on undici.
    this.#ownPool =
      config.http_client === 'sluice'
        ? new H1Pool(url.origin, { connectTimeoutMs, keepAliveTimeoutMs: 30_000, connections: config.max_connections })
        : undefined;
    this.streamPool = this.#ownPool ?? this.pool;
  }

  /** Path on the upstream for an OpenAI path such as `/chat/completions`. */
  path(openaiPath: string): string {
    return `${this.#pathPrefix}${openaiPath}`;
  }

  /** Path of an engine's own endpoint beside its OpenAI API (`/version`, `/info`, `/api/version`). */
  rootPath(enginePath: string): string {
    return `${this.#pathPrefix.replace(/\/v1$/, '')}${enginePath}`;
  }

  /** The dialect its streams are normalized for: the configured one, or what `auto` detected (until then, `openai`:
   * relayed as they are). */
  get activeDialect(): ResolvedDialect {
    return this.dialect === 'auto' ? (this.detected?.dialect ?? 'openai') : this.dialect;
  }

  /**
   * Headers for an upstream request (auth included). Every request asks for `accept-encoding: identity`: engines
   * answer uncompressed anyway, and a hop in between that compresses would cost the stream its token-by-token
   * delivery (src/upstream/content-encoding.ts says what happens when one does it regardless).
   */
  headers(extra: Record<string, string>): Record<string, string> {
    return this.#authorization ? { ...extra, 'accept-encoding': 'identity', authorization: this.#authorization } : { ...extra, 'accept-encoding': 'identity' };
  }

  /**
   * Removes this upstream's credentials — and any credential header value or `Bearer` token — from text that came
   * from it (an error body, an in-band error frame, a discovery failure) before a client or a log sees it.
   */
  redact(text: string): string {
    return redactSecrets(text, this.#secrets);
  }

  /** For routing: not cooling down after a failure. */
  get healthy(): boolean {
    return Date.now() >= this.#unhealthyUntil;
  }

  /** For readiness: see UpstreamState. */
  get state(): UpstreamState {
    return this.#state;
  }

  /** `reason` is shown on /ready, to clients with a key, and in the down line: it is redacted here. */
  markFailed(reason: string): void {
    this.lastError = this.redact(reason).slice(0, 500);
    this.#unhealthyUntil = Date.now() + COOLDOWN_MS;
    this.#become('down');
  }

  /** A check or discovery reached the engine. */
  markHealthy(): void {
    this.lastError = undefined;
    this.#unhealthyUntil = 0;
    this.#become('up');
  }

  #become(state: 'up' | 'down'): void {
    const previous = this.#state;
    if (previous === state) return;
    const since = this.#since;
    this.#state = state;
    this.#since = Date.now();
    this.onStateChange?.(this, state, previous, since);
  }

  async close(): Promise<void> {
    await Promise.all([this.pool.destroy(), this.#ownPool?.destroy()]);
  }

  toString(): string {
    return this.name;
  }
}

/** URL userinfo is percent-encoded (`p%40ss` for `p@ss`); a malformed escape is taken as written. */
function percentDecoded(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
