import { Pool } from 'undici';
import type { Upstream } from '../upstream/upstream.ts';
import { dispatchRequest } from '../upstream/upstream-body.ts';
import { parseEngineMetrics, type EngineLoad } from './engine-metrics.ts';

/** What one scrape found, and when. */
export interface EngineSnapshot {
  load: EngineLoad;
  /** `performance.now()` when the scrape was sent. */
  at: number;
  /** Sluice's own requests in flight to the upstream when the scrape was sent: what the engine's figures include. */
  inFlightAtScrape: number;
}

export interface ScrapeOptions {
  intervalMs: number;
  timeoutMs: number;
  maxBytes: number;
}

/** After failures in a row, the next scrape waits interval × 2^failures, at most this (an engine with no metrics). */
const MAX_BACKOFF_MS = 10_000;

/**
 * Reads one upstream's engine metrics on an interval (docs/routing.md). Its own connection (the upstream's pool may be
 * full of streams, and the URL may be another origin); one scrape at a time, each bounded in time (`timeoutMs`, headers
 * and body together) and size (`maxBytes`). A scrape that fails leaves the last figures to age: past `stale_ms` the
 * router treats them as unknown. Failures in a row back the interval off, so an engine without `/metrics` (Ollama,
 * llama.cpp without `--metrics`) costs a request every 10 s, not four a second.
 */
export class EngineScraper {
  readonly url: URL;
  latest: EngineSnapshot | undefined;
  /** Why the last scrape failed; undefined after a success. */
  lastError: string | undefined;
  /** Failed scrapes since the last success. */
  failures = 0;
  readonly #upstream: Upstream;
  readonly #opts: ScrapeOptions;
  readonly #pool: Pool;
  readonly #headers: Record<string, string>;
  readonly #onUpdate: () => void;
  #timer: NodeJS.Timeout | undefined;
  #inFlight: AbortController | undefined;
  #stopped = false;

  constructor(upstream: Upstream, url: URL, opts: ScrapeOptions, onUpdate: () => void) {
    this.#upstream = upstream;
    this.url = url;
    this.#opts = opts;
    this.#onUpdate = onUpdate;
    this.#pool = new Pool(url.origin, { connections: 1, connect: { timeout: opts.timeoutMs }, headersTimeout: 0, bodyTimeout: 0, keepAliveTimeout: Math.max(4_000, opts.intervalMs * 4) });
    // The upstream's credentials go only to its own origin, never to a metrics_url elsewhere.
    const accept = { accept: 'text/plain;version=0.0.4, */*;q=0.1' };
    this.#headers = url.origin === new URL(upstream.baseUrl).origin ? upstream.headers(accept) : { ...accept, 'accept-encoding': 'identity' };
  }

  start(): void {
    this.#schedule(0);
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.scrape().then(() => this.#schedule(this.#nextDelay())), delayMs);
    this.#timer.unref();
  }

  #nextDelay(): number {
    const base = this.#opts.intervalMs;
    return this.failures === 0 ? base : Math.min(MAX_BACKOFF_MS, base * 2 ** Math.min(this.failures, 16));
  }

  /** One scrape; never rejects. */
  async scrape(): Promise<void> {
    const deadline = new AbortController();
    this.#inFlight = deadline;
    const timeout = this.#opts.timeoutMs;
    const timer = setTimeout(() => deadline.abort(new Error(`no whole answer within ${timeout} ms`)), timeout);
    timer.unref();
    const at = performance.now();
    const inFlightAtScrape = this.#upstream.inFlight;
    try {
      const res = await dispatchRequest(
        this.#pool,
        { method: 'GET', path: `${this.url.pathname}${this.url.search}`, headers: this.#headers, headersTimeout: timeout, bodyTimeout: timeout },
        deadline.signal,
      );
      const body = await res.body.text(this.#opts.maxBytes);
      if (res.statusCode !== 200) throw new Error(`answered ${res.statusCode}`);
      if (body.truncated) throw new Error(`answered more than ${this.#opts.maxBytes} bytes (routing.metrics.max_bytes); the scrape was aborted`);
      if (body.failure) throw body.failure;
      const load = parseEngineMetrics(body.text);
      if (load === undefined) throw new Error('has none of the vLLM or SGLang queue metrics');
      this.latest = { load, at, inFlightAtScrape };
      this.lastError = undefined;
      this.failures = 0;
    } catch (err) {
      this.failures++;
      this.lastError = this.#upstream.redact(deadline.signal.aborted ? String((deadline.signal.reason as Error).message) : (err as Error).message).slice(0, 300);
    } finally {
      clearTimeout(timer);
      this.#inFlight = undefined;
    }
    if (!this.#stopped) this.#onUpdate();
  }

  /** The last figures if younger than `staleMs`, else undefined: unknown, not idle. */
  fresh(now: number, staleMs: number): EngineSnapshot | undefined {
    const s = this.latest;
    return s !== undefined && now - s.at <= staleMs ? s : undefined;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#inFlight?.abort(new Error('routing stopped'));
    await this.#pool.destroy();
  }
}

/** Where an upstream's engine metrics are: `metrics_url`, else `/metrics` beside its `/v1` (vLLM, SGLang). */
export function metricsUrl(upstream: Upstream, configured: string | undefined): URL {
  if (configured !== undefined) return new URL(configured);
  return new URL(upstream.rootPath('/metrics'), new URL(upstream.baseUrl).origin);
}
