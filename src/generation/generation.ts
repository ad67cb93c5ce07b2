import { clientAbortedError, SluiceError, toSluiceError } from '../errors.ts';
import { upstreamBody, type ParsedRequest, type RequestKind } from '../openai/request.ts';
import { readUsage } from '../openai/usage.ts';
import { createNormalizer } from '../openai/dialects/create-normalizer.ts';
import { createResponsesNormalizer } from '../openai/dialects/responses-events.ts';
import { ChatStream } from '../openai/chat-stream.ts';
import { SpliceStream } from '../openai/splice-stream.ts';
import type { UpstreamStream } from '../relay/protocol.ts';
import { MidStreamFailover, midStreamHops } from './mid-stream.ts';
import { ResponsesStream } from '../openai/responses-stream.ts';
import { StreamRelay, type Outcome, type RelayResult } from '../relay/stream-relay.ts';
import type { StreamWriter } from '../relay/writer.ts';
import type { Upstream } from '../upstream/upstream.ts';
import { attachStreamAnswer, MAX_ERROR_BYTES, readUnaryAnswer, type UnaryAnswer } from './attach.ts';
import type { GatewayContext } from './context.ts';
import { forward, type Forwarded } from './forward.ts';
import type { RequestLogEntry } from './request-log.ts';
import type { GatewayMetrics } from '../metrics/gateway-metrics.ts';
import { textValue } from '../logger.ts';
import type { Principal } from '../auth/key-ring.ts';
import type { Reservation } from '../limits/limiter.ts';
import { estimateTokens } from '../limits/estimate.ts';
import { ArrivalTrace, headerText } from '../upstream/arrival-stats.ts';
import { HopReportWriter, hopReport } from './hop-report.ts';
import type { RoutePlan } from '../routing/router.ts';

const UPSTREAM_PATHS: Record<RequestKind, string> = {
  chat: '/chat/completions',
  completion: '/completions',
  responses: '/responses',
  embeddings: '/embeddings',
};

/** Where a generation came from, for its log line. */
export interface GenerationOrigin {
  /** The request id (the client's `X-Request-Id` when valid, else a new one). */
  id: string;
  /** `POST`, or `WS` for a generation asked for over a WebSocket. */
  method: string;
  path: string;
  kind: RequestKind;
  /** `performance.now()` when the request arrived. */
  startedPerf: number;
  /** Who asked, as authenticated by the transport; undefined is `static` (no stored key). */
  principal?: Principal | undefined;
  /** The session header's value (`routing.session_header`): routing keeps a session's requests together. */
  session?: string | undefined;
}

/** Where a non-streamed generation's answer goes (the HTTP adapter: a JSON response). */
export interface UnaryResponder {
  answer(answer: UnaryAnswer): void;
  /** The error as the client sees it, before any byte of an answer. */
  fail(err: SluiceError): void;
}

/** A request admitted and routed: its replicas, best first, and what to send them. */
interface Routed {
  replicas: Upstream[];
  /** The body for one replica: with `continuous_usage_stats` for the engines that take it. */
  body: (upstream: Upstream) => string;
  /** Whether this replica is asked for usage on every chunk. */
  continuousUsage: (upstream: Upstream) => boolean;
  headers: Record<string, string>;
  /** The router's plan: whether to wait for a replica first, and who to tell which one took the request. */
  plan: RoutePlan | undefined;
}

/**
 * One generation, whatever transport asked for it: admission (the hook for keys and limits), routing by model,
 * forwarding with failover, the decision that attaches an upstream answer to the relay or fails it, and the finish
 * with its log line. Transports (src/http/, src/ws/) parse their request, build a writer and call `stream` or
 * `unary`, and call `cancel` when their client goes away; every outcome reaches the client through the writer.
 */
export class Generation {
  readonly log: RequestLogEntry;
  readonly #ctx: GatewayContext;
  readonly #kind: RequestKind;
  readonly #startedPerf: number;
  readonly #onEnd: (() => void) | undefined;
  #relay: StreamRelay | undefined;
  /** A non-streamed generation's upstream request. */
  #unary: AbortController | undefined;
  #cancelled = false;
  /** The model as a metrics label: set once admitted (a name the registry serves), so it is bounded. */
  #model = '';
  /** When the whole request had arrived (its body read); the start of the gateway's own overhead. */
  #receivedPerf: number | undefined;
  /** When the upstream request left. */
  #dispatchPerf: number | undefined;
  #relayResult: RelayResult | undefined;
  /** A non-streamed answer was handed to the transport: a close from here on is its end, not a cancel. */
  #answered = false;
  #logged = false;
  readonly #principal: Principal;
  readonly #session: string | undefined;
  /** The stored key's name, for the ledger; null for a static key or no auth. */
  #keyName: string | null = null;
  /** The key's hold on its limits, settled at the end with the real usage. */
  #reservation: Reservation | undefined;
  /** The prompt's estimated tokens: what is settled when the engine never reported the prompt's real count. */
  #promptEstimate = 0;
  /** The key's `x-ratelimit-*` headers, set at admission; every response of the request carries them. */
  rateHeaders: Readonly<Record<string, string>> = NO_HEADERS;
  /** The client asked for the hop report (`X-Sluice-Hop-Report: 1`, src/generation/hop-report.ts). */
  hopReport = false;
  /** How the attached upstream's reads arrived: folded into its `arrivals` at the end. */
  #trace: ArrivalTrace | undefined;

  /** `onEnd` runs once when the generation is over, whatever its outcome (after its log line). */
  constructor(ctx: GatewayContext, origin: GenerationOrigin, onEnd?: () => void) {
    this.#ctx = ctx;
    this.#onEnd = onEnd;
    this.#kind = origin.kind;
    this.#startedPerf = origin.startedPerf;
    this.#principal = origin.principal ?? 'static';
    this.#session = origin.session;
    this.log = newLogEntry(origin);
  }

  /** The transport has read the whole request: what follows until the upstream request leaves is the gateway's own. */
  received(): void {
    this.#receivedPerf = performance.now();
  }

  /** Whether the request asks for a stream (embeddings never stream). */
  static streams(parsed: ParsedRequest): boolean {
    return parsed.stream && parsed.kind !== 'embeddings';
  }

  /** The request was refused before it started (unreadable or invalid body): logs it, returns the client's error. */
  reject(err: unknown): SluiceError {
    const e = toSluiceError(err);
    this.log.outcome = 'rejected';
    this.log.status = e.status;
    this.log.error_code = e.code;
    this.#end();
    return e;
  }

  /**
   * Runs a streamed generation into `writer`: admission, then the relay (heartbeats and timeouts from here on) and
   * the upstream request with failover. Every outcome, a refusal included, is written to `writer`.
   */
  async stream(parsed: ParsedRequest, clientWriter: StreamWriter): Promise<void> {
    let writer = clientWriter;
    let routed: Routed;
    try {
      routed = await this.#admit(parsed, true);
    } catch (err) {
      writer.fail(this.reject(err), () => {});
      return;
    }
    writer.setHeaders?.(this.rateHeaders);
    if (this.#cancelled) {
      const e = clientAbortedError();
      this.log.outcome = 'client_aborted';
      this.log.error_code = e.code;
      this.log.status = e.status;
      writer.destroy();
      this.#end();
      return;
    }
    const ctx = this.#ctx;
    const t = ctx.config.timeouts;
    const kind = this.#kind;
    let forwarded: Forwarded | undefined;
    if (this.hopReport && writer.comment !== undefined) {
      const w = writer as StreamWriter & { comment(text: string): void };
      writer = new HopReportWriter(w, () => {
        const trace = this.#trace;
        return JSON.stringify(trace === undefined || forwarded === undefined ? { v: 1, upstream: null } : hopReport(trace, this.#startedPerf, forwarded.upstream.name));
      });
    }
    const chat = (): ChatStream => new ChatStream({ usage: { final: parsed.wantsUsage, continuous: parsed.wantsContinuousUsage }, choices: parsed.choices });
    // Mid-stream failover (docs/failover.md): a stream that can be continued on another replica, when it is on.
    const modelId = ctx.registry.resolve(parsed.model);
    const hops = midStreamHops(ctx.config, parsed, modelId);
    const splice = hops === undefined ? undefined : new SpliceStream(kind === 'completion' ? 'completion' : 'chat', chat);
    let mid: MidStreamFailover | undefined;
    const relay = new StreamRelay({
      protocol: kind === 'responses' ? new ResponsesStream() : (splice ?? chat()),
      writer,
      ticker: ctx.ticker,
      heartbeatMs: ctx.config.heartbeat_ms,
      timeouts: { firstByteMs: t.first_byte_ms, idleMs: t.idle_ms, totalMs: t.total_ms, clientStallMs: t.client_stall_ms },
      maxEventBytes: ctx.config.limits.max_event_bytes,
      onUpstreamFailure: splice && ((err) => mid?.onFailure(err) ?? false),
      onFinish: (r) => {
        forwarded?.release();
        if (forwarded !== undefined && this.#trace !== undefined) this.#foldArrivals(forwarded.upstream, this.#trace);
        mid?.release();
        ctx.metrics?.streamEnded(this.#model);
        this.#finishStream(r, writer.opened);
      },
    });
    this.#relay = relay;
    ctx.generations.add(this);
    ctx.monitor?.started(this.log, this.#keyName);
    ctx.metrics?.streamStarted(this.#model);
    try {
      forwarded = await this.#forward(routed, relay.signal, true);
    } catch (err) {
      relay.fail(toSluiceError(err), 'upstream_error');
      return;
    }
    const upstream = forwarded.upstream;
    this.log.upstream = upstream.name;
    if (relay.finished) forwarded.release();
    const trace = new ArrivalTrace(this.#dispatchPerf ?? performance.now());
    trace.headersAt = performance.now();
    trace.server = headerText(forwarded.response.headers['server']);
    trace.via = headerText(forwarded.response.headers['via']);
    this.#trace = trace;
    // The engine's dialect is normalized on the way through (none for vLLM: its stream is OpenAI's already). The
    // arrival trace (the hop report, the buffering signature) follows the first upstream only.
    const source = (u: Upstream): UpstreamStream => ({
      upstream: u,
      trace: u === upstream ? trace : undefined,
      continuousUsage: routed.continuousUsage(u),
      responsesNormalizer: kind === 'responses' ? createResponsesNormalizer(u.activeDialect, parsed.model) : undefined,
      normalizer:
        kind === 'responses' || kind === 'embeddings'
          ? undefined
          : createNormalizer(u.activeDialect, { kind, reasoningField: ctx.config.reasoning_field, stripVendorFields: ctx.config.strip_vendor_fields }),
    });
    if (splice !== undefined && hops !== undefined) {
      const o = { ctx, startedPerf: this.#startedPerf, parsed, modelId, maxHops: hops, relay, splice, log: this.log, path: UPSTREAM_PATHS[kind], headers: routed.headers, source, continuousUsage: routed.continuousUsage };
      mid = new MidStreamFailover(o, forwarded);
    }
    try {
      await attachStreamAnswer(relay, forwarded, () => source(upstream));
    } catch (err) {
      relay.fail(toSluiceError(err));
    }
  }

  /**
   * Folds a finished stream's arrivals into its upstream's (the buffering signature: metric, `/ready`) and logs a
   * buffering hop behind Sluice, at most once per upstream per 5 minutes.
   */
  #foldArrivals(upstream: Upstream, trace: ArrivalTrace): void {
    if (trace.firstReadAt < 0) return;
    const v = upstream.arrivals.add(trace);
    if (v.warn) {
      const server = trace.server === null ? '' : ` (its Server header: ${textValue(trace.server)})`;
      this.#ctx.logger?.event(
        `upstream ${upstream.name} streams in bursts: ${v.reason}${server}. A hop between Sluice and the engine buffers the stream (nginx proxy_buffering, a proxy that flushes on a timer); clients see the same bursts. Fix that hop (docs/proxies/), or point Sluice at the engine directly`,
        'warn',
      );
    }
  }

  /** Runs a non-streamed generation: forwards with failover and hands the upstream's JSON answer to `reply`. */
  async unary(parsed: ParsedRequest, reply: UnaryResponder): Promise<void> {
    let routed: Routed;
    try {
      routed = await this.#admit(parsed, false);
    } catch (err) {
      reply.fail(this.reject(err));
      return;
    }
    const ctx = this.#ctx;
    const controller = (this.#unary = new AbortController());
    if (this.#cancelled) controller.abort(clientAbortedError());
    ctx.generations.add(this);
    ctx.monitor?.started(this.log, this.#keyName);
    const total = ctx.config.timeouts.total_ms;
    const timer = total > 0 ? setTimeout(() => controller.abort(new SluiceError('SLUICE_TOTAL_TIMEOUT', `request exceeded the total timeout of ${total} ms`)), total) : undefined;
    timer?.unref();
    let forwarded: Forwarded | undefined;
    const log = this.log;
    try {
      forwarded = await this.#forward(routed, controller.signal, false);
      log.upstream = forwarded.upstream.name;
      const answer = await readUnaryAnswer(forwarded, ctx.config.limits.max_response_bytes);
      const usage = readUsage(answer.body);
      log.tokens_in = usage?.promptTokens;
      log.tokens_out = usage?.completionTokens;
      if (usage) log.tokens_source = 'reported';
      log.status = answer.status;
      if (controller.signal.aborted) throw controller.signal.reason;
      this.#answered = true;
      reply.answer(answer);
    } catch (err) {
      const e = controller.signal.aborted && controller.signal.reason instanceof SluiceError ? controller.signal.reason : toSluiceError(err);
      log.outcome = unaryOutcome(e);
      log.error_code = e.code;
      log.status = e.status;
      reply.fail(e);
    } finally {
      if (timer) clearTimeout(timer);
      forwarded?.release();
      this.#end();
    }
  }

  /** The client went away (or cancelled): aborts the upstream request at once, whatever stage it is in. */
  cancel(): void {
    if (this.#logged || this.#answered) return;
    this.#cancelled = true;
    this.#relay?.clientClosed();
    this.#unary?.abort(clientAbortedError());
  }

  /** Ends the generation with an error the client sees (the gateway is shutting down). */
  fail(err: SluiceError, outcome: Outcome): void {
    if (this.#logged || this.#answered) return;
    this.#relay?.fail(err, outcome);
    this.#unary?.abort(err);
  }

  async #forward(routed: Routed, signal: AbortSignal, streamed: boolean): Promise<Forwarded> {
    const metrics = this.#ctx.metrics;
    // Every replica saturated: the request waits in the router's queue (a stream's heartbeats go on meanwhile).
    if (routed.plan?.saturated && this.#ctx.router) routed.replicas = await this.#ctx.router.wait(routed.plan, signal);
    this.#dispatchPerf = performance.now();
    // A request's own lines at debug: where it went and why it moved on. The line at its end says how it went; these
    // show a request that has not ended yet (a hung engine) and the replicas that failed it on the way.
    const debug = this.#ctx.logger?.enabled('debug') ? this.#ctx.logger : undefined;
    const id = this.log.id;
    debug?.event(`${id}: ${this.log.method} ${this.log.path} model=${textValue(this.#model)} to ${routed.replicas.map((u) => u.name).join(', ')}`, 'debug');
    const forwarded = await forward(routed.replicas, {
      path: UPSTREAM_PATHS[this.#kind],
      body: routed.body,
      headers: routed.headers,
      signal,
      streamed,
      maxErrorBytes: MAX_ERROR_BYTES,
      onFailover:
        metrics === undefined && debug === undefined
          ? undefined
          : (reason, from, failure) => {
              metrics?.failover(reason);
              debug?.event(`${id}: ${from.name} failed before the first byte (${reason}: ${failure.message}); trying the next replica`, 'debug');
            },
    });
    routed.plan?.served(forwarded.upstream);
    return forwarded;
  }

  /**
   * Admission, then routing: the replicas serving the model, best first, with the body and headers to send them.
   * Keys and limits go here (they may need the state store, hence async). Throws the client's SluiceError.
   */
  async #admit(parsed: ParsedRequest, stream: boolean): Promise<Routed> {
    // Under a wave of new requests, set-up may wait its turn here (`setup_slice_ms`, src/generation/setup-gate.ts).
    const turn = this.#ctx.setupGate?.enter();
    if (turn !== undefined) await turn;
    const { registry } = this.#ctx;
    this.log.model = parsed.model;
    this.log.stream = stream;
    const key = this.#principal === 'static' ? undefined : this.#ctx.keys.current(this.#principal);
    if (this.#principal !== 'static') {
      // Checked again here: a WebSocket authenticated at its upgrade may outlive its key.
      if (key === undefined) throw new SluiceError('SLUICE_UNAUTHORIZED', 'This API key has been revoked or has expired.', { wireCode: 'invalid_api_key' });
      this.#keyName = key.record.name;
      const models = key.record.models;
      if (models !== null && !models.includes(parsed.model)) {
        throw new SluiceError('SLUICE_MODEL_NOT_ALLOWED', `This API key may not use the model '${parsed.model}'. It may use: ${models.join(', ')}.`, { param: 'model', wireCode: 'model_not_allowed' });
      }
    }
    if (!registry.serves(parsed.model)) await registry.rediscoverIfStale();
    // The router orders the replicas by its strategy (docs/routing.md); it may refuse with 429 when all are saturated.
    const plan = this.#ctx.router?.plan(parsed, this.#session);
    const replicas = plan?.replicas ?? registry.route(parsed.model);
    if (replicas.length === 0) {
      const known = registry.models().map((m) => m.id);
      throw registry.upstreams.length > 0 && known.length === 0
        ? new SluiceError('SLUICE_NO_HEALTHY_UPSTREAM', 'No upstream has answered model discovery yet; no model is available.')
        : new SluiceError('SLUICE_MODEL_NOT_FOUND', `The model '${parsed.model}' does not exist. Available models: ${known.join(', ') || '(none)'}.`, { param: 'model', wireCode: 'model_not_found' });
    }
    this.#model = parsed.model;
    if (key !== undefined) {
      // Limits last, once the request is known to be servable, and before any upstream work.
      const r = key.record;
      if (r.rpm !== null || r.tpm !== null || r.concurrency !== null) {
        const estimate = estimateTokens(parsed, this.#ctx.config.limits.tpm_reserve_completion);
        // The in-memory limiter answers at once (no promise, nothing to await); the Redis one with a promise.
        const pending = this.#ctx.limiter.admit(r.name, r, estimate.total);
        const admitted = pending instanceof Promise ? await pending : pending;
        this.#reservation = admitted.reservation;
        this.#promptEstimate = estimate.prompt;
        this.rateHeaders = admitted.headers;
      }
    }
    const id = registry.resolve(parsed.model);
    // vLLM and SGLang put the running usage on every chunk when asked (`continuous_usage_stats`): a stream cut short
    // is then metered exactly (docs/metering.md). Other engines may refuse the unknown option, so only these two.
    const metered = stream && (parsed.kind === 'chat' || parsed.kind === 'completion') && this.#ctx.config.metering.continuous_usage;
    const continuousUsage = (u: Upstream): boolean => metered && CONTINUOUS_USAGE_DIALECTS.has(u.activeDialect);
    let plain: string | undefined;
    let continuous: string | undefined;
    return {
      replicas,
      body: (u) => (continuousUsage(u) ? (continuous ??= upstreamBody(parsed, id, true)) : (plain ??= upstreamBody(parsed, id))),
      continuousUsage,
      headers: { 'content-type': 'application/json', accept: stream ? 'text/event-stream' : 'application/json', 'x-request-id': this.log.id, via: '1.1 sluice' },
      plan,
    };
  }

  #finishStream(r: RelayResult, opened: boolean): void {
    this.#relayResult = r;
    const log = this.log;
    log.outcome = r.outcome;
    log.error_code = r.error?.code;
    log.status = opened ? 200 : (r.error?.status ?? 200);
    // From the request's arrival at the gateway, as the metric is.
    log.ttft_ms = r.firstEventAt === undefined ? undefined : round(r.firstEventAt - this.#startedPerf);
    log.tokens_source = r.tokenSource;
    // Counted from the chunks relayed: the prompt's tokens are not known.
    log.tokens_in = r.tokenSource === 'counted' ? undefined : r.usage?.promptTokens;
    log.tokens_out = r.usage?.completionTokens;
    this.#end();
  }

  /** The generation's contribution to the metrics: the log line's figures, in seconds. */
  #record(metrics: GatewayMetrics, now: number): void {
    const log = this.log;
    const r = this.#relayResult;
    const completed = log.outcome === 'completed';
    const tokens = log.tokens_out;
    const first = r?.firstEventAt;
    const last = r?.lastEventAt;
    const from = this.#receivedPerf ?? this.#startedPerf;
    metrics.record({
      endpoint: log.path,
      operation: OPERATIONS[this.#kind],
      model: this.#model,
      upstream: log.upstream ?? '',
      outcome: log.outcome,
      durationSeconds: (now - this.#startedPerf) / 1000,
      ttftSeconds: completed && first !== undefined ? (first - this.#startedPerf) / 1000 : undefined,
      tpotSeconds: completed && first !== undefined && last !== undefined && tokens !== undefined && tokens >= 2 ? (last - first) / 1000 / (tokens - 1) : undefined,
      promptTokens: log.tokens_in,
      completionTokens: tokens,
      tokenSource: log.tokens_source ?? 'reported',
      overheadSeconds: this.#dispatchPerf === undefined ? undefined : (this.#dispatchPerf - from) / 1000,
      heartbeats: r?.heartbeats ?? 0,
    });
  }

  /**
   * Replaces the tokens reserved at admission with what the request used, aborted and failed ones included: the
   * metered figures (docs/metering.md); the prompt's estimate when the engine never reported the prompt but did
   * generate (a counted stream); nothing for a request the engine never worked on.
   */
  #settle(): void {
    const r = this.#reservation;
    if (r === undefined) return;
    const log = this.log;
    const prompt = log.tokens_in ?? (log.tokens_out !== undefined ? this.#promptEstimate : 0);
    r.settle(prompt + (log.tokens_out ?? 0));
  }

  /** Writes the log line, once. */
  #end(): void {
    if (this.#logged) return;
    this.#logged = true;
    const ctx = this.#ctx;
    ctx.generations.delete(this);
    const log = this.log;
    const now = performance.now();
    log.duration_ms = round(now - this.#startedPerf);
    ctx.monitor?.ended(log, this.#keyName);
    if (ctx.metrics) this.#record(ctx.metrics, now);
    this.#settle();
    ctx.ledger?.add({
      ts: Math.round(performance.timeOrigin + this.#startedPerf),
      request_id: log.id,
      key: this.#keyName,
      model: log.model ?? null,
      upstream: log.upstream ?? null,
      endpoint: log.path,
      stream: log.stream,
      prompt_tokens: log.tokens_in ?? null,
      completion_tokens: log.tokens_out ?? null,
      tokens_source: log.tokens_source ?? null,
      outcome: log.outcome,
      status: log.status,
      error_code: log.error_code ?? null,
      ttft_ms: log.ttft_ms ?? null,
      duration_ms: log.duration_ms,
    });
    if (ctx.config.log.requests) {
      log.ts = new Date(performance.timeOrigin + this.#startedPerf).toISOString();
      ctx.log(log);
    }
    this.#onEnd?.();
  }
}

/** Engines that take `stream_options.continuous_usage_stats`. */
const CONTINUOUS_USAGE_DIALECTS: ReadonlySet<string> = new Set(['vllm', 'sglang']);

const OPERATIONS: Record<RequestKind, string> = { chat: 'chat', responses: 'chat', completion: 'text_completion', embeddings: 'embeddings' };

function unaryOutcome(e: SluiceError): string {
  if (e.code === 'SLUICE_CLIENT_ABORTED') return 'client_aborted';
  if (e.code === 'SLUICE_TOTAL_TIMEOUT') return 'timeout';
  if (e.code === 'SLUICE_SHUTTING_DOWN') return 'shutdown';
  return 'upstream_error';
}

/** A fresh log line for a request; filled in as it goes and written when the generation ends. */
function newLogEntry(o: GenerationOrigin): RequestLogEntry {
  return {
    ts: '', // the request's start, written only when the line is logged
    id: o.id,
    method: o.method,
    path: o.path,
    model: undefined,
    upstream: undefined,
    status: 0,
    stream: false,
    ttft_ms: undefined,
    tokens_in: undefined,
    tokens_out: undefined,
    tokens_source: undefined,
    duration_ms: 0,
    outcome: 'completed',
    error_code: undefined,
  };
}

const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

const round = (ms: number): number => Math.round(ms * 10) / 10;
