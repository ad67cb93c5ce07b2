import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Upstream } from '../upstream/upstream.ts';

/**
 * Bucket boundaries (seconds) of OpenTelemetry's GenAI server histograms (semantic conventions, "Generative AI model
 * server metrics"), so dashboards built for those conventions read Sluice's figures as they are.
 */
const TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];
const TPOT_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5];
const DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92];
/** The gateway's own time before the upstream request leaves: sub-millisecond when all is well. */
const OVERHEAD_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

/** What one finished generation contributes, handed over once at its end (never per chunk). */
export interface GenerationRecord {
  /** The endpoint's path, e.g. `/v1/chat/completions` (a fixed set). */
  endpoint: string;
  /** OpenTelemetry's `gen_ai.operation.name`: `chat`, `text_completion` or `embeddings`. */
  operation: string;
  /** The model as routed (a name some upstream or alias serves), or '' when the request was refused before routing. */
  model: string;
  /** The upstream's configured name, or '' when none answered. */
  upstream: string;
  outcome: string;
  durationSeconds: number;
  /** From the request's arrival to the first token; only for completed streams. */
  ttftSeconds: number | undefined;
  /** (last token − first token) / (completion tokens − 1); only for completed streams with two tokens or more. */
  tpotSeconds: number | undefined;
  promptTokens: number | undefined;
  completionTokens: number | undefined;
  /** Reported by the engine, or counted from the chunks relayed (docs/metering.md). */
  tokenSource: 'reported' | 'counted';
  /** Time the gateway spent between the whole request and the upstream request leaving (parse, auth, route). */
  overheadSeconds: number | undefined;
  heartbeats: number;
}

/** Why a request moved on to another replica before its first byte. */
export type FailoverReason = 'connect_error' | 'connect_timeout' | 'status_5xx' | 'status_429' | 'bad_response';

/** Why a stream moved to another replica after tokens reached its client (docs/failover.md). */
export type MidStreamReason = 'connection_lost' | 'idle_timeout' | 'first_byte_timeout' | 'error_frame';

/** Why a failed stream was not moved to another replica although mid-stream failover is on. */
export type MidStreamRefusal = 'hop_limit' | 'not_exact' | 'no_replica';

/**
 * The gateway's Prometheus metrics (docs/metrics.md), on a registry of its own so that two gateways in one process
 * (tests, embedding) do not mix figures. Labels are bounded: endpoints are a fixed set, models and upstreams come from
 * the configuration and discovery, outcomes and reasons are enums; nothing a client sends becomes a label unchecked.
 */
export class GatewayMetrics {
  readonly registry = new Registry();
  readonly #requests: Counter<'endpoint' | 'model' | 'upstream' | 'outcome'>;
  readonly #ttft: Histogram<'gen_ai_operation_name' | 'gen_ai_request_model'>;
  readonly #tpot: Histogram<'gen_ai_operation_name' | 'gen_ai_request_model'>;
  readonly #duration: Histogram<'gen_ai_operation_name' | 'gen_ai_request_model'>;
  readonly #tokens: Counter<'model' | 'type' | 'source'>;
  readonly #inFlight: Gauge<'model'>;
  readonly #failovers: Counter<'reason'>;
  readonly #midStream: Counter<'reason' | 'from' | 'to'>;
  readonly #midStreamRefused: Counter<'reason'>;
  readonly #heartbeats: Counter;
  readonly #overhead: Histogram;

  constructor(upstreams: readonly Upstream[]) {
    const registers = [this.registry];
    this.#requests = new Counter({
      name: 'sluice_requests_total',
      help: 'Generation requests by endpoint, model, upstream and outcome (the log line\'s outcome).',
      labelNames: ['endpoint', 'model', 'upstream', 'outcome'],
      registers,
    });
    const genAi = ['gen_ai_operation_name', 'gen_ai_request_model'] as const;
    this.#ttft = new Histogram({
      name: 'gen_ai_server_time_to_first_token_seconds',
      help: 'Time from the request\'s arrival at Sluice to the first token, for completed streams.',
      labelNames: genAi,
      buckets: TTFT_BUCKETS,
      registers,
    });
    this.#tpot = new Histogram({
      name: 'gen_ai_server_time_per_output_token_seconds',
      help: 'Per request: (last token - first token) / (completion tokens - 1), for completed streams.',
      labelNames: genAi,
      buckets: TPOT_BUCKETS,
      registers,
    });
    this.#duration = new Histogram({
      name: 'gen_ai_server_request_duration_seconds',
      help: 'Time from the request\'s arrival to its end, any outcome.',
      labelNames: genAi,
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.#tokens = new Counter({
      name: 'sluice_tokens_total',
      help: 'Tokens metered, by model, type (prompt or completion) and source (reported by the engine, or counted from the chunks relayed).',
      labelNames: ['model', 'type', 'source'],
      registers,
    });
    this.#inFlight = new Gauge({ name: 'sluice_streams_in_flight', help: 'Streams open right now, by model.', labelNames: ['model'], registers });
    new Gauge({
      name: 'sluice_upstream_up',
      help: '1 when the upstream is reachable (its last check succeeded and no request has failed on it since), else 0: what /ready reports.',
      labelNames: ['upstream'],
      registers,
      // Over several workers (`--workers`): up only when every worker sees it up.
      aggregator: 'min',
      collect() {
        for (const u of upstreams) this.set({ upstream: u.name }, u.state === 'up' ? 1 : 0);
      },
    });
    new Gauge({
      name: 'sluice_upstream_in_flight',
      help: 'Requests in flight to the upstream right now.',
      labelNames: ['upstream'],
      registers,
      collect() {
        for (const u of upstreams) this.set({ upstream: u.name }, u.inFlight);
      },
    });
    // How each upstream's streams arrive at Sluice (src/upstream/arrival-stats.ts): read from its sketch at scrape
    // time, so the relay's per-read path never touches prom-client.
    new Gauge({
      name: 'sluice_upstream_buffering',
      help: '1 when the upstream\'s latest stream arrived in bursts (many events per read, long gaps between reads): a buffering hop between Sluice and the engine.',
      labelNames: ['upstream'],
      registers,
      collect() {
        for (const u of upstreams) this.set({ upstream: u.name }, u.arrivals.buffering ? 1 : 0);
      },
    });
    new Counter({
      name: 'sluice_upstream_buffered_streams_total',
      help: 'Streams from the upstream that arrived with the buffering signature.',
      labelNames: ['upstream'],
      registers,
      collect() {
        this.reset();
        for (const u of upstreams) this.inc({ upstream: u.name }, u.arrivals.bufferedStreams);
      },
    });
    new Gauge({
      name: 'sluice_upstream_events_per_read',
      help: 'Mean SSE events per upstream read over every stream from the upstream (about 1 for an engine streaming token by token).',
      labelNames: ['upstream'],
      registers,
      collect() {
        for (const u of upstreams) {
          const d = u.arrivals.mean();
          if (d !== null) this.set({ upstream: u.name }, d);
        }
      },
    });
    this.#failovers = new Counter({ name: 'sluice_failovers_total', help: 'Requests moved to another replica before their first byte, by reason.', labelNames: ['reason'], registers });
    this.#midStream = new Counter({
      name: 'sluice_mid_stream_failovers_total',
      help: 'Streams continued on another replica after tokens reached the client, by reason, the replica that failed and the one that took over.',
      labelNames: ['reason', 'from', 'to'],
      registers,
    });
    this.#midStreamRefused = new Counter({
      name: 'sluice_mid_stream_failovers_refused_total',
      help: 'Streams that failed mid-answer with mid-stream failover on but were not continued elsewhere, by reason.',
      labelNames: ['reason'],
      registers,
    });
    this.#heartbeats = new Counter({ name: 'sluice_heartbeats_total', help: 'SSE heartbeats (`: keep-alive`) written.', registers });
    this.#overhead = new Histogram({
      name: 'sluice_overhead_seconds',
      help: 'Time Sluice spent between the whole request and the upstream request leaving (parse, auth, route).',
      buckets: OVERHEAD_BUCKETS,
      registers,
    });
    collectDefaultMetrics({ register: this.registry });
  }

  /**
   * The state store's figures (when there is one): whether it answers, its errors, and the ledger's records dropped
   * while it failed. Read at each scrape from the objects that keep them.
   */
  watchState(state: { readonly health?: { readonly up: boolean; readonly errors: number } | undefined }, ledger: { readonly dropped: number } | undefined): void {
    const registers = [this.registry];
    new Gauge({
      name: 'sluice_state_store_up',
      help: '1 when the state store answers (Redis: connected and its last command succeeded), else 0. SQLite is always 1.',
      registers,
      // Over several workers (`--workers`): up only when every worker reaches it.
      aggregator: 'min',
      collect() {
        this.set(state.health === undefined || state.health.up ? 1 : 0);
      },
    });
    new Counter({
      name: 'sluice_state_store_errors_total',
      help: 'State store commands that failed (key refreshes, limit reservations and settlements, ledger writes) and lost connections.',
      registers,
      collect() {
        this.reset();
        this.inc(state.health?.errors ?? 0);
      },
    });
    new Counter({
      name: 'sluice_ledger_dropped_records_total',
      help: 'Ledger records dropped because the store failed for longer than the in-memory buffer (100,000 records) lasts.',
      registers,
      collect() {
        this.reset();
        this.inc(ledger?.dropped ?? 0);
      },
    });
  }

  streamStarted(model: string): void {
    this.#inFlight.inc({ model });
  }

  streamEnded(model: string): void {
    this.#inFlight.dec({ model });
  }

  failover(reason: FailoverReason): void {
    this.#failovers.inc({ reason });
  }

  midStreamFailover(reason: MidStreamReason, from: string, to: string): void {
    this.#midStream.inc({ reason, from, to });
  }

  midStreamRefused(reason: MidStreamRefusal): void {
    this.#midStreamRefused.inc({ reason });
  }

  /** Records a finished generation. */
  record(r: GenerationRecord): void {
    this.#requests.inc({ endpoint: r.endpoint, model: r.model, upstream: r.upstream, outcome: r.outcome });
    const g = { gen_ai_operation_name: r.operation, gen_ai_request_model: r.model };
    this.#duration.observe(g, r.durationSeconds);
    if (r.ttftSeconds !== undefined) this.#ttft.observe(g, r.ttftSeconds);
    if (r.tpotSeconds !== undefined) this.#tpot.observe(g, r.tpotSeconds);
    if (r.promptTokens) this.#tokens.inc({ model: r.model, type: 'prompt', source: r.tokenSource }, r.promptTokens);
    if (r.completionTokens) this.#tokens.inc({ model: r.model, type: 'completion', source: r.tokenSource }, r.completionTokens);
    if (r.overheadSeconds !== undefined) this.#overhead.observe(r.overheadSeconds);
    if (r.heartbeats > 0) this.#heartbeats.inc(r.heartbeats);
  }

  /** Where /metrics reads its text instead of this registry: a cluster worker asks the primary for the figures of
   * every worker (src/cluster/worker.ts). */
  textSource: (() => Promise<string>) | undefined;

  /** The Prometheus text exposition of every metric. */
  text(): Promise<string> {
    return this.textSource === undefined ? this.registry.metrics() : this.textSource();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
