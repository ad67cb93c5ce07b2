import { Counter, Gauge, type Registry as MetricsRegistry } from 'prom-client';
import type { Config, RoutingStrategy } from '../config/schema.ts';
import { SluiceError } from '../errors.ts';
import type { ParsedRequest } from '../openai/request.ts';
import type { Registry } from '../upstream/registry.ts';
import type { Upstream } from '../upstream/upstream.ts';
import type { EventLog } from '../logger.ts';
import { EngineScraper, metricsUrl } from './engine-scraper.ts';
import { canonicalPrompt, PrefixIndex, prefixHashes } from './prefix.ts';
import { rank, rendezvous, type Candidate, type Strategy } from './score.ts';

/** A request's routing: its replicas best first, and what to do with them. */
export interface RoutePlan {
  replicas: Upstream[];
  strategy: Strategy;
  /** Every healthy replica is saturated: the request waits in Sluice's queue (`wait`) before it is forwarded. */
  saturated: boolean;
  /** The replica that took the request: it now holds the prompt's prefix. */
  served(upstream: Upstream): void;
}

/** What a plan needs to be computed again (when it leaves the queue). */
interface PlanInput {
  model: string;
  replicas: Upstream[];
  strategy: Strategy;
  hashes: number[];
  session: string | undefined;
}

interface Waiter {
  input: PlanInput;
  resolve(replicas: Upstream[]): void;
  reject(err: SluiceError): void;
  done: boolean;
}

const reads = (s: RoutingStrategy): boolean => s === 'auto' || s === 'engine-aware' || s === 'prefix-aware';

/**
 * Routing across a model's replicas (issue 17, docs/routing.md): the strategy per model, engine metrics scraped from
 * each upstream that a metrics-reading strategy routes to, prefix affinity, and the saturation queue. Generation asks
 * for a plan at admission, waits when the plan says every replica is saturated, and reports the replica that took it.
 */
export class Router {
  readonly #config: Config['routing'];
  readonly #upstreamConfigs: Config['upstreams'];
  readonly #registry: Registry;
  readonly #scrapers = new Map<Upstream, EngineScraper>();
  readonly #prefixes = new Map<Upstream, PrefixIndex>();
  readonly #queue: Waiter[] = [];
  #rr = 0;
  #wakeTimer: NodeJS.Timeout | undefined;
  #closed = false;
  #shed: Counter<'reason'> | undefined;
  readonly #log: EventLog;
  /** Per upstream, whether its metrics were last said to be read (true) or not (false): one line per change. */
  readonly #said = new Map<Upstream, boolean>();

  constructor(config: Config, registry: Registry, log: EventLog = () => {}) {
    this.#config = config.routing;
    this.#upstreamConfigs = config.upstreams;
    this.#registry = registry;
    this.#log = log;
  }

  /** Starts scraping the upstreams routing reads now (more are added when a request needs them). */
  start(): void {
    for (const u of this.#registry.upstreams) {
      for (const model of u.models) {
        const strategy = this.#strategyOf(model);
        if (this.#scrapes(strategy, this.#replicasOf(model).length)) this.#scraperFor(u);
      }
    }
  }

  /** The upstreams serving a model, in configuration order (ranking rotates ties itself). */
  #replicasOf(model: string): Upstream[] {
    const id = this.#registry.resolve(model);
    return this.#registry.upstreams.filter((u) => u.models.has(id));
  }

  /** The configured strategy of a model (an alias's own entry first, then its target's, then the global one). */
  #strategyOf(model: string): RoutingStrategy {
    const models = this.#config.models;
    return models[model] ?? models[this.#registry.resolve(model)] ?? this.#config.strategy;
  }

  /** `auto` reads metrics only where there is a choice to make; explicit strategies also for one replica (its queue). */
  #scrapes(strategy: RoutingStrategy, replicas: number): boolean {
    return reads(strategy) && (strategy !== 'auto' || replicas > 1);
  }

  #scraperFor(u: Upstream): EngineScraper {
    let s = this.#scrapers.get(u);
    if (s === undefined) {
      const index = this.#registry.upstreams.indexOf(u);
      const m = this.#config.metrics;
      const scraper: EngineScraper = new EngineScraper(u, metricsUrl(u, this.#upstreamConfigs[index]?.metrics_url), { intervalMs: m.interval_ms, timeoutMs: m.timeout_ms, maxBytes: m.max_bytes }, () => {
        this.#report(u, scraper);
        this.#wake();
      });
      s = scraper;
      this.#scrapers.set(u, s);
      if (!this.#closed) s.start();
    }
    return s;
  }

  /**
   * One line when routing starts reading an upstream's engine metrics, and one when it stops (three failed reads in a
   * row): an engine without metrics is then routed by in-flight count, which an operator should know.
   */
  #report(u: Upstream, s: EngineScraper): void {
    const said = this.#said.get(u);
    if (s.failures === 0 && said !== true) {
      this.#said.set(u, true);
      this.#log(`upstream ${u.name}: routing reads its engine metrics (${s.url.href})`, 'info');
    } else if (s.failures === 3 && said !== false) {
      this.#said.set(u, false);
      this.#log(`upstream ${u.name}: routing cannot read engine metrics at ${s.url.href} (${s.lastError ?? 'unknown error'}); it is routed by in-flight count until they come (upstreams[].metrics_url sets the URL)`, 'info');
    }
  }

  /** The scraper of an upstream, if routing reads it (tests and metrics). */
  scraper(u: Upstream): EngineScraper | undefined {
    return this.#scrapers.get(u);
  }

  /**
   * Plans a request: its replicas best first. `session` is the session header's value (else the body's `user`).
   * Throws SLUICE_UPSTREAMS_SATURATED when every replica is saturated and the request may not wait.
   */
  plan(parsed: ParsedRequest, session: string | undefined): RoutePlan {
    const replicas = this.#replicasOf(parsed.model);
    const configured = this.#strategyOf(parsed.model);
    const strategy: Strategy = configured === 'auto' ? 'engine-aware' : configured;
    const scrapes = this.#scrapes(configured, replicas.length);
    if (replicas.length === 0 || (replicas.length === 1 && !scrapes)) return { replicas, strategy, saturated: false, served: noop };
    if (scrapes) for (const u of replicas) this.#scraperFor(u);
    const user = parsed.body['user'];
    const input: PlanInput = {
      model: parsed.model,
      replicas,
      strategy,
      hashes: strategy === 'prefix-aware' ? prefixHashes(canonicalPrompt(parsed), this.#config.prefix.block_chars) : [],
      session: session ?? (typeof user === 'string' && user !== '' ? user : undefined),
    };
    const ranked = this.#rank(input, undefined);
    const served = strategy === 'prefix-aware' && input.hashes.length > 0 ? (u: Upstream) => this.#prefixFor(u).add(input.hashes) : noop;
    if (!ranked.saturated) return { replicas: ranked.replicas, strategy, saturated: false, served };
    const sat = this.#config.saturation;
    if (sat.action === 'shed') throw this.#shedError('shed', parsed.model);
    if (this.#queue.length >= sat.max_queue) throw this.#shedError('queue_full', parsed.model);
    const plan: RoutePlan & { input: PlanInput } = { replicas: ranked.replicas, strategy, saturated: true, served, input };
    return plan;
  }

  /**
   * Waits in Sluice's queue until some replica of the plan's model is no longer saturated (checked at every scrape),
   * then resolves with the replicas best first. Rejects with SLUICE_UPSTREAMS_SATURATED after `max_wait_ms`, or with
   * the signal's reason when the request is cancelled. The queue is FIFO per model.
   */
  wait(plan: RoutePlan, signal: AbortSignal): Promise<Upstream[]> {
    const input = (plan as RoutePlan & { input?: PlanInput }).input;
    if (!plan.saturated || input === undefined) return Promise.resolve(plan.replicas);
    if (this.#queue.length >= this.#config.saturation.max_queue) return Promise.reject(this.#shedError('queue_full', input.model));
    return new Promise<Upstream[]>((resolve, reject) => {
      const maxWait = this.#config.saturation.max_wait_ms;
      const finish = (): void => {
        w.done = true;
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        const i = this.#queue.indexOf(w);
        if (i >= 0) this.#queue.splice(i, 1);
      };
      const w: Waiter = {
        input,
        done: false,
        resolve: (r) => {
          finish();
          resolve(r);
        },
        reject: (e) => {
          finish();
          reject(e);
        },
      };
      const onAbort = (): void => {
        finish();
        reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
      };
      const timer = setTimeout(() => w.reject(this.#shedError('timeout', input.model)), maxWait);
      timer.unref();
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      this.#queue.push(w);
      this.#armWake();
    });
  }

  /** Requests waiting in the queue now. */
  get queued(): number {
    return this.#queue.length;
  }

  /**
   * Lets queued requests go, oldest first, while their model has an unsaturated replica. Those let go in this pass
   * count as in flight on the replica they will take, so a pass does not send them all to the same one.
   */
  #wake(): void {
    if (this.#queue.length === 0) return;
    const extra = new Map<Upstream, number>();
    const blocked = new Set<string>();
    for (const w of [...this.#queue]) {
      if (w.done || blocked.has(w.input.model)) continue;
      const ranked = this.#rank(w.input, extra);
      if (ranked.saturated) {
        blocked.add(w.input.model);
        continue;
      }
      const first = ranked.replicas[0] as Upstream;
      extra.set(first, (extra.get(first) ?? 0) + 1);
      w.resolve(ranked.replicas);
    }
  }

  /** While the queue is not empty, a check every scrape interval too: figures that go stale release the queue. */
  #armWake(): void {
    if (this.#wakeTimer !== undefined || this.#closed) return;
    this.#wakeTimer = setInterval(() => {
      this.#wake();
      if (this.#queue.length === 0 && this.#wakeTimer !== undefined) {
        clearInterval(this.#wakeTimer);
        this.#wakeTimer = undefined;
      }
    }, this.#config.metrics.interval_ms);
    this.#wakeTimer.unref();
  }

  #rank(input: PlanInput, extra: ReadonlyMap<Upstream, number> | undefined): { replicas: Upstream[]; saturated: boolean } {
    const now = performance.now();
    const stale = this.#config.metrics.stale_ms;
    const reading = input.strategy === 'engine-aware' || input.strategy === 'prefix-aware';
    const candidates: Candidate[] = input.replicas.map((u) => {
      const snap = reading ? this.#scrapers.get(u)?.fresh(now, stale) : undefined;
      return {
        healthy: u.healthy,
        inFlight: u.inFlight + (extra?.get(u) ?? 0),
        engine: snap === undefined ? undefined : { ...snap.load, inFlightAtScrape: snap.inFlightAtScrape },
        matched: input.hashes.length > 0 ? (this.#prefixes.get(u)?.match(input.hashes) ?? 0) : 0,
        session: input.session === undefined ? 0 : rendezvous(input.session, u.name),
      };
    });
    const { order, scores } = rank(
      candidates,
      input.strategy,
      { totalBlocks: input.hashes.length, prefixWeight: this.#config.prefix.weight, queueThreshold: this.#config.saturation.queue_threshold },
      this.#rr++ % input.replicas.length,
    );
    // Saturated: every replica that could take the request now (healthy) has a queue at the threshold.
    const saturated = order.every((i) => !(candidates[i] as Candidate).healthy || (scores[i]?.saturated ?? false)) && order.some((i) => scores[i]?.saturated);
    return { replicas: order.map((i) => input.replicas[i] as Upstream), saturated };
  }

  #prefixFor(u: Upstream): PrefixIndex {
    let p = this.#prefixes.get(u);
    if (p === undefined) {
      p = new PrefixIndex(this.#config.prefix.max_blocks);
      this.#prefixes.set(u, p);
    }
    return p;
  }

  #shedError(reason: 'shed' | 'queue_full' | 'timeout', model: string): SluiceError {
    this.#shed?.inc({ reason });
    const sat = this.#config.saturation;
    const why =
      reason === 'shed'
        ? 'and routing.saturation.action is shed'
        : reason === 'queue_full'
          ? `and the gateway's queue is full (routing.saturation.max_queue = ${sat.max_queue})`
          : `and the request waited routing.saturation.max_wait_ms (${sat.max_wait_ms} ms) for one`;
    return new SluiceError(
      'SLUICE_UPSTREAMS_SATURATED',
      `Every replica of the model '${model}' is saturated (its engine queue is at routing.saturation.queue_threshold = ${sat.queue_threshold} or more), ${why}. Retry shortly.`,
      { headers: { 'retry-after': '1' }, wireCode: 'upstreams_saturated' },
    );
  }

  /** Routing's metrics on the gateway's registry (docs/metrics.md). */
  registerMetrics(registers: MetricsRegistry[]): void {
    const router = this;
    new Gauge({
      name: 'sluice_routing_queued',
      help: 'Requests waiting in the gateway\'s saturation queue (routing.saturation).',
      registers,
      collect() {
        this.set(router.queued);
      },
    });
    this.#shed = new Counter({ name: 'sluice_routing_shed_total', help: 'Requests refused with SLUICE_UPSTREAMS_SATURATED, by reason.', labelNames: ['reason'], registers });
    const engineGauge = (name: string, help: string, read: (s: EngineScraperFigures) => number | undefined): void => {
      new Gauge({
        name,
        help,
        labelNames: ['upstream'],
        registers,
        collect() {
          this.reset();
          const now = performance.now();
          for (const [u, s] of router.#scrapers) {
            const snap = s.fresh(now, router.#config.metrics.stale_ms);
            const v = snap === undefined ? undefined : read(snap.load);
            if (v !== undefined) this.set({ upstream: u.name }, v);
          }
        },
      });
    };
    engineGauge('sluice_upstream_engine_waiting', 'The engine\'s queue as last scraped (absent while unknown or stale).', (l) => l.waiting);
    engineGauge('sluice_upstream_engine_running', 'The engine\'s running batch as last scraped (absent while unknown or stale).', (l) => l.running);
    engineGauge('sluice_upstream_engine_kv_usage', 'The engine\'s KV-cache usage, 0-1, as last scraped (absent while unknown or stale).', (l) => l.kvUsage);
  }

  /** The upstream's engine figures as last scraped, when fresh (the console's live view); undefined otherwise. */
  engineLoad(u: Upstream): EngineScraperFigures | undefined {
    return this.#scrapers.get(u)?.fresh(performance.now(), this.#config.metrics.stale_ms)?.load;
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#wakeTimer !== undefined) clearInterval(this.#wakeTimer);
    for (const w of [...this.#queue]) w.reject(new SluiceError('SLUICE_SHUTTING_DOWN', 'the gateway is shutting down; retry on another instance'));
    await Promise.all([...this.#scrapers.values()].map((s) => s.stop()));
  }
}

type EngineScraperFigures = NonNullable<EngineScraper['latest']>['load'];

const noop = (): void => {};
