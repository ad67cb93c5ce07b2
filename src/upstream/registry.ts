import type { Config } from '../config/schema.ts';
import type { EventLog } from '../logger.ts';
import { Upstream, type UpstreamState } from './upstream.ts';
import { detectDialect } from './detect-dialect.ts';
import { dispatchRequest } from './upstream-body.ts';

/**
 * The largest `GET /v1/models` answer discovery reads. A model card is about 100–300 bytes, so 8 MiB is tens of
 * thousands of models, far past any engine (they serve a handful) or aggregator (hundreds). Without a bound, a broken
 * or hostile upstream's 200 MB list took the gateway to 856 MiB RSS (issue 12); past it, the request is aborted and
 * the upstream marked failed.
 */
export const MAX_DISCOVERY_BYTES = 8 * 1024 * 1024;
/**
 * One discovery request must be over (headers and the whole body) within this. A round waits for every upstream, and
 * a request naming an unknown model waits for a round (`rediscoverIfStale`): an upstream that trickles its list must
 * not hold them up. undici's per-read timeouts alone do not bound a body that sends a byte every few seconds.
 */
const DISCOVERY_TIMEOUT_MS = 15_000;

/** Where the registry reports what it found (`auto` dialect choices), at a level: the gateway's Logger. */
export type RegistryLog = EventLog;
const stderrLog: RegistryLog = (msg) => void process.stderr.write(`sluice: ${msg}\n`);

export interface ModelEntry {
  id: string;
  owned_by: string;
  /** Alias target, when this entry is an alias. */
  alias_of?: string;
}

/**
 * All upstreams and the models they serve: discovery from each upstream's /v1/models (at start and every
 * `discovery_interval_ms`), static model lists and aliases from config, and routing by model to replicas ordered by
 * health, then fewest in-flight requests.
 */
export class Registry {
  readonly upstreams: Upstream[];
  readonly #aliases: Record<string, string>;
  readonly #health: Config['health'];
  #timer: NodeJS.Timeout | undefined;
  #healthTimer: NodeJS.Timeout | undefined;
  #rr = 0;
  readonly #log: RegistryLog;
  #lastDiscovery = 0;
  #discovering: Promise<void> | undefined;
  /** The request to each upstream under way, shared by a discovery round and a health check that meet. */
  readonly #probes = new Map<Upstream, Promise<void>>();

  constructor(config: Config, env: NodeJS.ProcessEnv = process.env, log: RegistryLog = stderrLog) {
    this.upstreams = config.upstreams.map((u, i) => new Upstream({ ...u, http_client: u.http_client ?? config.upstream_client }, i, config.timeouts.connect_ms, env));
    this.#aliases = config.aliases;
    this.#health = config.health;
    this.#log = log;
    for (const u of this.upstreams) u.onStateChange = (up, state, previous, since) => this.#logChange(up, state, previous, since);
  }

  /**
   * Discovers models once, then periodically (0 = only at start); and checks each upstream every
   * `health.interval_ms` (0 = no checks).
   */
  async start(intervalMs: number): Promise<void> {
    await this.discover();
    if (intervalMs > 0) {
      this.#timer = setInterval(() => void this.discover(), intervalMs);
      this.#timer.unref();
    }
    if (this.#health.interval_ms > 0) {
      this.#healthTimer = setInterval(() => this.#checkAll(), this.#health.interval_ms);
      this.#healthTimer.unref();
    }
  }

  /**
   * An active health check: the discovery request, bounded by `health.timeout_ms`. It is what engines answer
   * cheaply (vLLM, SGLang, llama.cpp and Ollama serve their model list from memory), it needs no engine-specific
   * path, and an upstream that comes back gets its model list at once. A check still under way is not doubled.
   */
  #checkAll(): void {
    for (const u of this.upstreams) if (!this.#probes.has(u)) void this.#probe(u, this.#health.timeout_ms, 'health check failed');
  }

  /** One line per change of state (issue 13: nothing was printed when an engine went away). */
  #logChange(u: Upstream, state: 'up' | 'down', previous: UpstreamState, since: number): void {
    if (state === 'down') this.#log(`upstream ${u.name} is down: ${u.lastError ?? 'unknown error'}`, 'warn');
    // The first check's success is what start-up expects: nothing to say.
    else if (previous === 'down') this.#log(`upstream ${u.name} is up again (down for ${((Date.now() - since) / 1000).toFixed(1)} s)`, 'info');
  }

  /** Asks every upstream for its models; failures mark the upstream unhealthy and keep its last known list. */
  async discover(): Promise<void> {
    this.#discovering ??= Promise.all(this.upstreams.map((u) => this.#probes.get(u) ?? this.#probe(u, DISCOVERY_TIMEOUT_MS, 'model discovery failed'))).then(() => {
      this.#lastDiscovery = Date.now();
      this.#discovering = undefined;
    });
    await this.#discovering;
  }

  /**
   * Called when a request names a model nobody serves: if some upstream has not answered discovery yet (it started
   * after the gateway, or was down), ask again now — at most once a second — rather than waiting for the next round.
   */
  async rediscoverIfStale(): Promise<boolean> {
    const unknown = this.upstreams.some((u) => u.models.size === 0 && !u.staticModels);
    if (!unknown || Date.now() - this.#lastDiscovery < 1_000) return false;
    await this.discover();
    return true;
  }

  /** Reads one upstream's model list within `timeoutMs`; `failure` prefixes the reason it is marked down with. */
  #probe(u: Upstream, timeoutMs: number, failure: string): Promise<void> {
    const p = this.#discoverOne(u, timeoutMs, failure).finally(() => this.#probes.delete(u));
    this.#probes.set(u, p);
    return p;
  }

  async #discoverOne(u: Upstream, timeoutMs: number, failure: string): Promise<void> {
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(new Error(`GET /models did not complete within ${timeoutMs} ms`)), timeoutMs);
    timer.unref();
    const perRead = Math.min(10_000, timeoutMs);
    try {
      const res = await dispatchRequest(
        u.pool,
        { method: 'GET', path: u.path('/models'), headers: u.headers({ accept: 'application/json' }), headersTimeout: perRead, bodyTimeout: perRead },
        deadline.signal,
      );
      const body = await res.body.text(MAX_DISCOVERY_BYTES);
      if (body.truncated) throw new Error(`GET /models answered more than ${MAX_DISCOVERY_BYTES} bytes, the most the gateway reads; the request was aborted`);
      if (body.failure) throw body.failure;
      if (res.statusCode !== 200) throw new Error(`GET /models answered ${res.statusCode}`);
      const parsed = JSON.parse(body.text) as { data?: Array<{ id?: unknown; owned_by?: unknown }> };
      const data = Array.isArray(parsed.data) ? parsed.data : [];
      if (!u.staticModels) {
        const next = new Set<string>();
        for (const m of data) if (typeof m?.id === 'string') next.add(m.id);
        u.models = next;
      }
      for (const m of data) {
        if (typeof m?.id === 'string') u.owners.set(m.id, typeof m.owned_by === 'string' ? m.owned_by : u.name);
      }
      u.markHealthy();
      if (u.dialect === 'auto' && u.detected === undefined) {
        const server = res.headers['server'];
        u.detected = await detectDialect(u, { server: typeof server === 'string' ? server : undefined, body: parsed });
        this.#log(`upstream ${u.name} speaks ${u.detected.dialect} (dialect auto: ${u.redact(u.detected.reason)})`, 'info');
      }
    } catch (err) {
      // markFailed redacts: V8's JSON.parse message quotes the text, which may be an echo of the request headers.
      u.markFailed(`${failure}: ${(err as Error).message}`);
    } finally {
      clearTimeout(timer);
      u.lastCheck = Date.now();
    }
  }

  /** Whether any upstream serves `model` (or the model an alias names). */
  serves(model: string): boolean {
    const id = this.resolve(model);
    return this.upstreams.some((u) => u.models.has(id));
  }

  /** Resolves an alias to the model id upstreams know. */
  resolve(model: string): string {
    return this.#aliases[model] ?? model;
  }

  /** Replicas serving `model`, best first: healthy before unhealthy, then fewest in-flight, ties rotated. */
  route(model: string): Upstream[] {
    const id = this.resolve(model);
    const replicas = this.upstreams.filter((u) => u.models.has(id));
    if (replicas.length <= 1) return replicas;
    const start = this.#rr++ % replicas.length;
    const rotated = replicas.slice(start).concat(replicas.slice(0, start));
    return rotated.sort((a, b) => Number(b.healthy) - Number(a.healthy) || a.inFlight - b.inFlight);
  }

  /** Every model and alias, merged across upstreams. */
  models(): ModelEntry[] {
    const seen = new Map<string, ModelEntry>();
    for (const u of this.upstreams) {
      for (const id of u.models) if (!seen.has(id)) seen.set(id, { id, owned_by: u.owners.get(id) ?? u.name });
    }
    for (const [alias, target] of Object.entries(this.#aliases)) {
      const t = seen.get(target);
      if (t && !seen.has(alias)) seen.set(alias, { id: alias, owned_by: t.owned_by, alias_of: target });
    }
    return [...seen.values()];
  }

  /** Whether some upstream is reachable now and serves a model: what `/ready` answers 200 for. */
  get anyHealthy(): boolean {
    return this.upstreams.some((u) => u.state === 'up' && u.models.size > 0);
  }

  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    if (this.#healthTimer) clearInterval(this.#healthTimer);
    await Promise.all(this.upstreams.map((u) => u.close()));
  }
}
