import { toSluiceError, type SluiceError } from '../errors.ts';
import type { Config } from '../config/schema.ts';
import { upstreamBody, type ParsedRequest } from '../openai/request.ts';
import type { AnswerSoFar, SpliceStream } from '../openai/splice-stream.ts';
import type { UpstreamStream } from '../relay/protocol.ts';
import type { StreamRelay } from '../relay/stream-relay.ts';
import type { Upstream } from '../upstream/upstream.ts';
import type { MidStreamReason } from '../metrics/gateway-metrics.ts';
import { attachStreamAnswer, MAX_ERROR_BYTES } from './attach.ts';
import type { GatewayContext } from './context.ts';
import { forward, type Forwarded } from './forward.ts';
import type { RequestLogEntry } from './request-log.ts';

/** Engines that continue a prefilled assistant message (`continue_final_message`): vLLM and SGLang. */
const PREFILL_DIALECTS: ReadonlySet<string> = new Set(['vllm', 'sglang']);

/** Request fields under which a continuation would not be the rest of the same answer. */
const GUIDED = ['guided_json', 'guided_regex', 'guided_choice', 'guided_grammar', 'structured_outputs', 'suffix'];

/**
 * Whether a streamed request may be continued on another replica if its engine fails mid-answer, and how many times:
 * `failover.mid_stream` and `failover.max_mid_stream`, or the keys of `failover.models` for the model as the client
 * named it (else for the id it resolves to). Undefined: off, or an API without a splice (Responses, embeddings).
 */
export function midStreamHops(config: Config, parsed: ParsedRequest, resolved: string): number | undefined {
  if (parsed.kind !== 'chat' && parsed.kind !== 'completion') return undefined;
  const f = config.failover;
  const m = f.models[parsed.model] ?? f.models[resolved];
  const on = m?.mid_stream ?? f.mid_stream;
  const max = m?.max_mid_stream ?? f.max_mid_stream;
  return on && max > 0 ? max : undefined;
}

/** What a mid-stream failover needs of its generation. */
export interface MidStreamOptions {
  ctx: GatewayContext;
  /** `performance.now()` at the request's arrival: failovers are timed from it (the console's timeline). */
  startedPerf?: number | undefined;
  parsed: ParsedRequest;
  /** The model id upstreams know (an alias resolved). */
  modelId: string;
  /** Most failovers of this stream. */
  maxHops: number;
  relay: StreamRelay;
  splice: SpliceStream;
  log: RequestLogEntry;
  path: string;
  headers: Record<string, string>;
  /** The relay's view of one upstream (its dialect's normalizer, its name and redaction, continuous usage). */
  source: (upstream: Upstream) => UpstreamStream;
  continuousUsage: (upstream: Upstream) => boolean;
}

/**
 * Mid-stream failover of one stream (issue 15, docs/failover.md): when the upstream it is relayed from fails after
 * tokens reached the client (its connection lost, the idle timeout, an engine error frame), the same request goes to
 * another healthy replica of the model with the answer so far prefilled (`continue_final_message` for chat, appended
 * to the prompt for completions) and `max_tokens` reduced by what was sent; the relay splices its tokens into the same
 * client stream (`SpliceStream` keeps the stream exact). Only where the splice is exact; otherwise, and past
 * `max_mid_stream` hops, the stream ends as without it: an error frame, no `[DONE]`.
 */
export class MidStreamFailover {
  readonly #o: MidStreamOptions;
  #current: Forwarded;
  readonly #tried = new Set<Upstream>();
  #hops = 0;

  constructor(o: MidStreamOptions, first: Forwarded) {
    this.#o = o;
    this.#current = first;
    this.#tried.add(first.upstream);
  }

  /** Lets go of the replica in use (its in-flight count), at the end of the stream. */
  release(): void {
    this.#current.release();
  }

  /**
   * The relay's hook (`onUpstreamFailure`): true when the failure is taken over (another replica is being asked for
   * the rest of the answer); false to end the stream with the error.
   */
  onFailure(err: SluiceError): boolean {
    const reason = reasonOf(err);
    if (reason === undefined) return false;
    const o = this.#o;
    const answer = o.splice.answer;
    if (reason === 'error_frame' && answer.text === '' && err.status < 500) return false; // the request's own fault
    const from = this.#current.upstream;
    const refused = (why: string, label: 'hop_limit' | 'not_exact' | 'no_replica'): false => {
      o.log.failover_refused = why;
      o.ctx.metrics?.midStreamRefused(label);
      o.ctx.logger?.event(`${o.log.id}: ${from.name} failed mid-stream (${reason}); no failover: ${why}`, 'debug');
      return false;
    };
    if (this.#hops >= o.maxHops) return refused(`hop_limit: ${o.maxHops} mid-stream failover(s) already`, 'hop_limit');
    const inexact = answer.notExact ?? requestInexact(o.parsed, answer);
    if (inexact !== undefined) return refused(`not_exact: ${inexact}`, 'not_exact');
    // With nothing of the answer sent, the request is sent as it is, and any engine will do; else it must take a prefill.
    const prefill = answer.text !== '';
    const candidates = o.ctx.registry.route(o.parsed.model).filter((u) => !this.#tried.has(u) && (!prefill || PREFILL_DIALECTS.has(u.activeDialect)));
    if (candidates.length === 0) return refused('no_replica: no other replica of the model that continues a prefilled answer', 'no_replica');
    this.#hops++;
    // An engine whose connection broke or that went silent is skipped by routing for a while (src/upstream/upstream.ts).
    if (reason !== 'error_frame') from.markFailed(err.message);
    this.#current.release();
    const record: { from: string; to?: string; reason: MidStreamReason; after_tokens: number; at_ms?: number } = { from: from.name, reason, after_tokens: answer.tokens };
    // Since the request's arrival, for the console's timeline.
    if (o.startedPerf !== undefined) record.at_ms = Math.round(performance.now() - o.startedPerf);
    (o.log.failovers ??= []).push(record);
    void this.#continue(candidates, answer, record, err);
    return true;
  }

  async #continue(candidates: Upstream[], answer: AnswerSoFar, record: { from: string; to?: string; reason: MidStreamReason }, cause: SluiceError): Promise<void> {
    const o = this.#o;
    const { relay, ctx } = o;
    let forwarded: Forwarded;
    try {
      forwarded = await forward(candidates, {
        path: o.path,
        body: (u) => continuationBody(o.parsed, o.modelId, answer, o.continuousUsage(u)),
        headers: o.headers,
        signal: relay.signal,
        streamed: true,
        maxErrorBytes: MAX_ERROR_BYTES,
        onFailover: ctx.metrics === undefined ? undefined : (reason) => ctx.metrics?.failover(reason),
      });
    } catch (err) {
      relay.fail(toSluiceError(err));
      return;
    }
    this.#current = forwarded;
    const to = forwarded.upstream;
    this.#tried.add(to);
    record.to = to.name;
    o.log.upstream = to.name;
    ctx.metrics?.midStreamFailover(record.reason, record.from, to.name);
    ctx.logger?.event(`${o.log.id}: ${record.from} failed mid-stream after ${answer.tokens} tokens (${record.reason}: ${cause.message}); continuing on ${to.name}`, 'debug');
    if (relay.finished) {
      forwarded.response.body.destroy();
      forwarded.release();
      return;
    }
    try {
      await attachStreamAnswer(relay, forwarded, () => o.source(to));
    } catch (err) {
      relay.fail(toSluiceError(err));
    }
  }
}

/** Why an upstream failure may be failed over, or undefined when it is not one this covers. */
function reasonOf(err: SluiceError): MidStreamReason | undefined {
  switch (err.code) {
    case 'SLUICE_UPSTREAM_TRUNCATED':
      return 'connection_lost';
    case 'SLUICE_UPSTREAM_IDLE_TIMEOUT':
      return 'idle_timeout';
    case 'SLUICE_UPSTREAM_FIRST_BYTE_TIMEOUT':
      return 'first_byte_timeout';
    case 'SLUICE_UPSTREAM_ERROR':
      return 'error_frame';
    default:
      return undefined;
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Why the request itself makes a continuation inexact, or undefined. */
function requestInexact(parsed: ParsedRequest, answer: AnswerSoFar): string | undefined {
  const b = parsed.body;
  if (parsed.choices !== 1) return 'the request asks for several choices (n > 1)';
  if (answer.text === '') return undefined; // the request is sent again as it was
  if (b['echo'] === true) return 'the request asks for its prompt echoed';
  const rf = b['response_format'];
  if ((isObject(rf) && rf['type'] !== 'text' && rf['type'] !== undefined) || GUIDED.some((k) => b[k] !== undefined && b[k] !== null)) {
    return 'the answer is constrained (response_format, guided decoding or a suffix): the constraint would restart';
  }
  for (const k of ['max_tokens', 'max_completion_tokens']) {
    const max = b[k];
    if (typeof max === 'number' && max - answer.tokens < 1) return `${k} is used up`;
  }
  if (parsed.kind === 'completion') {
    const p = b['prompt'];
    if (typeof p !== 'string' && !(Array.isArray(p) && p.length === 1 && typeof p[0] === 'string')) return 'the prompt is not one text (token ids or several prompts)';
    return undefined;
  }
  const messages = b['messages'] as unknown[];
  const last = messages[messages.length - 1];
  if (b['continue_final_message'] === true && !(isObject(last) && typeof last['content'] === 'string')) return 'the client prefilled an answer that is not plain text';
  return undefined;
}

/**
 * The request that asks another replica for the rest of the answer: the answer so far as a prefilled assistant message
 * (`continue_final_message: true`, `add_generation_prompt: false`; appended to a prefill the client made itself), or
 * appended to a completions prompt, with `max_tokens` (and vLLM's `min_tokens`) reduced by the tokens sent. With
 * nothing sent yet, the request as it was.
 */
export function continuationBody(parsed: ParsedRequest, modelId: string, answer: AnswerSoFar, continuous: boolean): string {
  if (answer.text === '') return upstreamBody(withBody(parsed, { ...parsed.body }), modelId, continuous);
  const b: Record<string, unknown> = { ...parsed.body };
  const sent = answer.tokens;
  for (const k of ['max_tokens', 'max_completion_tokens']) if (typeof b[k] === 'number') b[k] = Math.max(1, (b[k] as number) - sent);
  if (typeof b['min_tokens'] === 'number') b['min_tokens'] = Math.max(0, b['min_tokens'] - sent);
  if (parsed.kind === 'completion') {
    const p = b['prompt'];
    b['prompt'] = typeof p === 'string' ? p + answer.text : [(p as string[])[0] + answer.text];
  } else {
    const messages = [...(b['messages'] as unknown[])];
    const last = messages[messages.length - 1];
    if (b['continue_final_message'] === true && isObject(last) && typeof last['content'] === 'string') {
      messages[messages.length - 1] = { ...last, content: last['content'] + answer.text };
    } else {
      messages.push({ role: 'assistant', content: answer.text });
    }
    b['messages'] = messages;
    b['continue_final_message'] = true;
    b['add_generation_prompt'] = false;
  }
  return upstreamBody(withBody(parsed, b), modelId, continuous);
}

/** The parsed request with another body (and no raw text, so that it is serialized from the body). */
function withBody(p: ParsedRequest, body: Record<string, unknown>): ParsedRequest {
  return { kind: p.kind, body, model: p.model, stream: p.stream, wantsUsage: p.wantsUsage, wantsContinuousUsage: p.wantsContinuousUsage, choices: p.choices };
}
