import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { DEFAULT_TIMING, mergeSimOptions, type SimTiming } from './options.ts';
import { SimEngine, type SimEngineOptions, type SimSlot } from './engine.ts';
import { countPromptTokens, seedOf, simToken } from './text.ts';
import { chatContinuation, completionContinuation } from './continuation.ts';
import type { SimDialect, SimLogprob, SimToolCall, StreamContext, Usage } from './dialects/dialect.ts';
import { SIM_DIALECTS, type SimDialectName } from './dialects/sim-dialects.ts';

/**
 * The simulator: a real OpenAI-compatible HTTP server that streams generated text with configurable timing and
 * injected failures, byte-faithful to vLLM by default and to SGLang, llama.cpp, Ollama or TGI on request (`dialect`).
 * Besides the OpenAI endpoints it answers the engine's own fingerprint endpoints (`/version`, `/info`,
 * `/api/version`), so `dialect: auto` detection can be tested against it. It is Sluice's stand-in engine for tests, benchmarks, demos and
 * `sluice doctor`, and is labelled a simulator in every response (`x-sluice-simulator: 1`).
 */

export interface SimulatorOptions {
  host?: string;
  port?: number;
  models?: string[];
  timing?: Partial<SimTiming>;
  /** The engine to imitate (default vllm). */
  dialect?: SimDialect | SimDialectName;
  /** Largest request body accepted, bytes. */
  maxBodyBytes?: number;
  /** The engine's batch limit, prefix cache and KV capacity (src/sim/engine.ts); the defaults model none of them. */
  engine?: Partial<SimEngineOptions>;
}

export interface SimRequestInfo {
  path: string;
  body: unknown;
  headers: IncomingMessage['headers'];
}

export interface SimStats {
  started: number;
  completed: number;
  /** Streams whose client went away before the end. */
  aborted: number;
  inFlight: number;
}

export interface Simulator {
  /** Base URL ending in /v1, as the SDKs' baseURL. */
  readonly url: string;
  readonly port: number;
  readonly stats: SimStats;
  /** 'request' (SimRequestInfo) when a request arrives; 'aborted' ({path, tokensSent}) when its client leaves
   * mid-response; 'completed' ({path}). */
  readonly events: EventEmitter;
  /** The batch, queue and prefix cache whose figures `/metrics` shows. */
  readonly engine: SimEngine;
  close(): Promise<void>;
}

export const DEFAULT_SIM_MODELS = ['sluice-sim'];

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function jittered(ms: number, jitter: number): number {
  if (jitter <= 0) return ms;
  return Math.max(0, ms + (Math.random() * 2 - 1) * jitter);
}

function probeToken(): string {
  return ` @${(performance.timeOrigin + performance.now()).toFixed(3)}`;
}

/** Starts the simulator on host:port (port 0 picks a free one). */
export async function startSimulator(options: SimulatorOptions = {}): Promise<Simulator> {
  const models = options.models && options.models.length > 0 ? options.models : DEFAULT_SIM_MODELS;
  const base: SimTiming = { ...DEFAULT_TIMING, ...options.timing };
  const dialect: SimDialect = typeof options.dialect === 'string' ? SIM_DIALECTS[options.dialect] : (options.dialect ?? SIM_DIALECTS.vllm);
  const maxBody = options.maxBodyBytes ?? 4 * 1024 * 1024;
  const events = new EventEmitter();
  const stats: SimStats = { started: 0, completed: 0, aborted: 0, inFlight: 0 };
  const engine = new SimEngine(options.engine);
  // Engines that publish Prometheus metrics at their root; the others answer 404 there, as they do.
  const metricsDialect = dialect.name === 'vllm' || dialect.name === 'sglang' ? dialect.name : undefined;

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) {
        sendJson(res, 500, dialect.errorBody(String(err), 500, 'InternalServerError'));
      } else {
        res.destroy();
      }
    });
  });
  server.keepAliveTimeout = 65_000;

  function sendJson(res: ServerResponse, status: number, body: string): void {
    res.writeHead(status, { 'content-type': 'application/json', ...dialect.commonHeaders, 'x-sluice-simulator': '1' });
    res.end(body);
  }

  async function readBody(req: IncomingMessage): Promise<string | null> {
    const parts: Buffer[] = [];
    let size = 0;
    for await (const c of req) {
      size += (c as Buffer).length;
      if (size > maxBody) return null;
      parts.push(c as Buffer);
    }
    return Buffer.concat(parts).toString('utf8');
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (req.method === 'GET') {
      if (path === '/v1/models') return sendJson(res, 200, dialect.modelsBody(models, Math.floor(Date.now() / 1000)));
      if (path === '/sim/stats') return sendJson(res, 200, JSON.stringify(stats));
      if (path === '/metrics' && metricsDialect) {
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', ...dialect.commonHeaders, 'x-sluice-simulator': '1' });
        res.end(engine.prometheusText(metricsDialect, models[0] as string));
        return;
      }
      const answer = dialect.engineGet(path, models);
      if (answer) {
        res.writeHead(answer.status, { 'content-type': answer.contentType, ...dialect.commonHeaders, 'x-sluice-simulator': '1' });
        res.end(answer.body);
        return;
      }
      if (path === '/health') return sendJson(res, 200, '{}');
      return sendJson(res, 404, dialect.errorBody(`Not Found: ${path}`, 404, 'NotFoundError'));
    }
    if (req.method !== 'POST') return sendJson(res, 405, dialect.errorBody('Method Not Allowed', 405, 'BadRequestError'));

    const raw = await readBody(req);
    if (raw === null) return sendJson(res, 413, dialect.errorBody('request body too large', 413, 'BadRequestError'));
    let body: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(raw);
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
      body = parsed as Record<string, unknown>;
    } catch {
      return sendJson(res, 400, dialect.errorBody('Invalid JSON body', 400, 'BadRequestError'));
    }
    events.emit('request', { path, body, headers: req.headers } satisfies SimRequestInfo);

    const timing = mergeSimOptions(base, body['sim']);
    if (typeof timing === 'string') return sendJson(res, 400, dialect.errorBody(timing, 400, 'BadRequestError'));
    const model = body['model'];
    if (typeof model !== 'string' || !models.includes(model)) {
      return sendJson(
        res,
        404,
        dialect.errorBody(`The model \`${String(model)}\` does not exist.`, 404, 'NotFoundError'),
      );
    }
    const failing = timing.fail !== 'none' && Math.random() < timing.failRate;
    if (timing.headersDelayMs > 0) await sleep(timing.headersDelayMs);
    if (failing && timing.fail === 'status') {
      const type = timing.failStatus === 429 ? 'RateLimitError' : 'InternalServerError';
      if (timing.failStatus === 429) res.setHeader('retry-after', '1');
      return sendJson(res, timing.failStatus, dialect.errorBody(`simulated ${timing.failStatus}`, timing.failStatus, type));
    }

    const stream = body['stream'] === true;
    if (!stream && body['stream_options'] != null && dialect.rejectsStreamOptionsWithoutStream) {
      // vLLM: "Stream options can only be defined when `stream=True`." (protocol.py validator)
      return sendJson(
        res,
        400,
        dialect.errorBody('Stream options can only be defined when `stream=True`.', 400, 'BadRequestError'),
      );
    }
    const promptText = JSON.stringify(body['messages'] ?? body['prompt'] ?? body['input'] ?? body['text'] ?? '');
    const maxTokens = body['max_tokens'] ?? body['max_completion_tokens'] ?? body['max_output_tokens'];
    const limit = typeof maxTokens === 'number' && maxTokens > 0 ? maxTokens : Infinity;
    const kind = path === '/v1/chat/completions' ? 'chat' : path === '/v1/completions' ? 'completion' : path === '/v1/responses' ? 'responses' : null;
    // A request holding the beginning of its answer (a prefilled assistant message, a prompt ending with it) gets the
    // rest of that answer: the same seed, from the token after it (src/sim/continuation.ts).
    const cont = kind === 'chat' ? chatContinuation(body) : kind === 'completion' ? completionContinuation(body['prompt'], timing.tokens) : undefined;
    if (cont !== undefined && 'error' in cont) return sendJson(res, 400, dialect.errorBody(cont.error, 400, 'BadRequestError'));
    const seed = cont?.seed ?? seedOf(promptText);
    const offset = cont?.offset ?? 0;
    const answerTokens = Math.max(0, timing.tokens - offset);
    const toolCall = kind === 'chat' && timing.tools && cont === undefined ? simToolCall(body) : undefined;
    const reasoningCount = kind === 'chat' && cont === undefined ? Math.min(timing.reasoning, limit) : 0;
    const count = toolCall ? 0 : Math.min(answerTokens, limit - reasoningCount);
    const reason = toolCall ? 'tool_calls' : count < answerTokens ? 'length' : 'stop';
    const n = typeof body['n'] === 'number' && body['n'] > 1 ? Math.min(body['n'], 8, dialect.maxChoices) : 1;
    const promptTokens = countPromptTokens(promptText);
    const perChoice = reasoningCount + (toolCall ? TOOL_CALL_TOKENS : count);
    const usage: Usage = { prompt_tokens: promptTokens, completion_tokens: perChoice * n, total_tokens: promptTokens + perChoice * n };

    if (path === '/v1/embeddings') return sendEmbeddings(res, body, model, promptTokens);
    if (kind === null || (kind === 'responses' && !dialect.responses)) return sendJson(res, 404, dialect.errorBody(`Not Found: ${path}`, 404, 'NotFoundError'));
    if (kind === 'chat' && !Array.isArray(body['messages'])) {
      return sendJson(res, 400, dialect.errorBody('`messages` is required', 400, 'BadRequestError'));
    }

    const tokenText = (i: number): string => (timing.probe ? probeToken() : simToken(i + offset, seed));
    stats.started++;
    stats.inFlight++;
    let finished = false;
    let tokensSent = 0;
    const gone = new AbortController();
    let slot: SimSlot | undefined;
    const closed = (): void => {
      gone.abort();
      slot?.release();
      stats.inFlight--;
      if (finished) {
        stats.completed++;
        events.emit('completed', { path });
      } else {
        stats.aborted++;
        events.emit('aborted', { path, tokensSent });
      }
    };
    // The client may have left already (during `headers_delay_ms`): its 'close' has been and gone.
    if (res.closed) closed();
    else res.on('close', closed);

    /** A place in the batch, then the time to first token: the fixed part plus prefill of the uncached prompt. */
    const admitted = async (): Promise<number | undefined> => {
      slot = await engine.admit(promptText, promptTokens, gone.signal);
      if (slot === undefined) return undefined;
      slot.prefilled();
      return timing.ttftMs + ((promptTokens - slot.cachedTokens) * timing.prefillUsPerToken) / 1000;
    };

    if (!stream) {
      const ttft = await admitted();
      if (ttft === undefined) return;
      await sleep(jittered(ttft + timing.itlMs * Math.max(0, count - 1), timing.jitterMs));
      if (res.destroyed) return;
      let text = '';
      for (let i = 0; i < count; i++) text += tokenText(i);
      finished = true;
      tokensSent = count;
      return sendJson(res, 200, nonStreamBody(kind, model, text, reason, usage, n, toolCall));
    }

    const so = typeof body['stream_options'] === 'object' && body['stream_options'] !== null ? (body['stream_options'] as Record<string, unknown>) : {};
    const includeUsage = so['include_usage'] === true;
    const top = body['top_logprobs'];
    const ctx: StreamContext = {
      id: dialect.streamId(kind),
      created: Math.floor(Date.now() / 1000),
      model,
      n,
      usage,
      includeUsage,
      continuousUsage: includeUsage && so['continuous_usage_stats'] === true,
      tokensSoFar: 0,
      logprobs: kind === 'chat' && body['logprobs'] === true,
      topLogprobs: typeof top === 'number' ? Math.max(0, Math.min(5, Math.floor(top))) : 0,
    };
    res.writeHead(200, { ...dialect.streamHeaders, ...dialect.commonHeaders, 'x-sluice-simulator': '1' });
    res.flushHeaders();

    const write = async (s: string): Promise<boolean> => {
      if (res.destroyed) return false;
      if (!res.write(s)) {
        await new Promise<void>((r) => {
          const done = (): void => {
            res.off('drain', done);
            res.off('close', done);
            r();
          };
          res.on('drain', done);
          res.on('close', done);
        });
      }
      return !res.destroyed;
    };

    const ttft = await admitted();
    if (ttft === undefined) return;
    if (kind === 'responses') {
      finished = await streamResponses(res, write, ctx, count, tokenText, { ...timing, ttftMs: ttft }, failing, usage);
      if (finished) res.end();
      return;
    }
    // What each step writes, for every choice: reasoning tokens, then the answer's tokens or one tool call. A step's
    // text is made when it is written (probe mode stamps the time into it).
    const chat = kind === 'chat' ? dialect.chat(ctx) : undefined;
    const text = kind === 'completion' ? dialect.completion(ctx) : undefined;
    const writer = chat ?? text;
    if (!writer) return;
    const all = (one: (c: number) => string): string => {
      let out = '';
      for (let c = 0; c < n; c++) out += one(c);
      return out;
    };
    const steps: Array<() => string> = [];
    for (let i = 0; i < reasoningCount; i++) steps.push(() => all((c) => chat?.reasoning(c, simToken(i, seed + 7)) ?? ''));
    if (toolCall) steps.push(() => all((c) => chat?.toolCall(c, toolCall) ?? ''));
    // A limit cuts the answer on its last token, which engines send with the finish; an EOS token has no text.
    const cutLast = reason === 'length' && count > 0;
    for (let i = 0; i < (cutLast ? count - 1 : count); i++) {
      steps.push(() => {
        const t = tokenText(i);
        if (text) return all((c) => text.content(c, t));
        const lp = ctx.logprobs ? simLogprob(t, i, ctx.topLogprobs) : undefined;
        return all((c) => chat?.content(c, t, lp) ?? '');
      });
    }

    await sleep(jittered(ttft, timing.jitterMs));
    if (chat && !(await write(chat.start()))) return;
    for (let i = 0; i < steps.length; i++) {
      if (failing && i === timing.failAfter && (await injectFailure(res, timing, write, writer))) return;
      ctx.tokensSoFar = i + 1;
      if (slot) slot.generated = i + 1;
      if (!(await write((steps[i] as () => string)()))) return;
      tokensSent++;
      if (i < steps.length - 1 || cutLast) await sleep(jittered(timing.itlMs, timing.jitterMs));
    }
    if (failing && timing.failAfter >= steps.length && (await injectFailure(res, timing, write, writer))) return;
    const lastText = cutLast ? tokenText(count - 1) : '';
    let tail = '';
    for (let c = 0; c < n; c++) tail += chat ? chat.finish(c, reason, lastText) : (text?.finish(c, reason === 'length' ? 'length' : 'stop', lastText) ?? '');
    tail += writer.end();
    if (!(await write(tail))) return;
    finished = true;
    res.end();
  }

  /** Returns true when the failure ended the response. */
  async function injectFailure(res: ServerResponse, timing: SimTiming, write: (s: string) => Promise<boolean>, writer?: { error(message: string): string }): Promise<boolean> {
    switch (timing.fail) {
      case 'hang':
        // Keep the connection open and silent until the client gives up.
        await new Promise<void>((r) => res.once('close', () => r()));
        return true;
      case 'drop':
        res.socket?.destroy();
        return true;
      case 'error_frame':
        if (!writer) return false;
        await write(writer.error('simulated engine failure'));
        res.end();
        return true;
      default:
        return false;
    }
  }

  async function streamResponses(
    res: ServerResponse,
    write: (s: string) => Promise<boolean>,
    ctx: StreamContext,
    count: number,
    tokenText: (i: number) => string,
    timing: SimTiming,
    failing: boolean,
    usage: Usage,
  ): Promise<boolean> {
    let seq = 0;
    const respId = `resp_${ctx.id.slice(ctx.id.indexOf('-') + 1)}`;
    const msgId = `msg_${ctx.id.slice(ctx.id.indexOf('-') + 1)}`;
    const ev = (type: string, payload: Record<string, unknown>): string =>
      `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: seq++, ...payload })}\n\n`;
    const response = (status: string, output: unknown[], u: unknown): Record<string, unknown> => ({
      id: respId,
      object: 'response',
      created_at: ctx.created,
      status,
      model: ctx.model,
      output,
      usage: u,
    });
    if (!(await write(ev('response.created', { response: response('in_progress', [], null) })))) return false;
    if (!(await write(ev('response.in_progress', { response: response('in_progress', [], null) })))) return false;
    await sleep(jittered(timing.ttftMs, timing.jitterMs));
    const item = { id: msgId, type: 'message', status: 'in_progress', role: 'assistant', content: [] };
    let out = ev('response.output_item.added', { output_index: 0, item });
    out += ev('response.content_part.added', { item_id: msgId, output_index: 0, content_index: 0, part: { type: 'output_text', text: '', annotations: [] } });
    if (!(await write(out))) return false;
    let text = '';
    for (let i = 0; i < count; i++) {
      if (failing && i === timing.failAfter) {
        if (timing.fail === 'error_frame') {
          await write(ev('error', { code: 'server_error', message: 'simulated engine failure', param: null }));
          res.end();
          return false;
        }
        if (await injectFailure(res, timing, write)) return false;
      }
      const t = tokenText(i);
      text += t;
      if (!(await write(ev('response.output_text.delta', { item_id: msgId, output_index: 0, content_index: 0, delta: t, logprobs: [] })))) return false;
      if (i < count - 1) await sleep(jittered(timing.itlMs, timing.jitterMs));
    }
    const part = { type: 'output_text', text, annotations: [] };
    const doneItem = { id: msgId, type: 'message', status: 'completed', role: 'assistant', content: [part] };
    let tail = ev('response.output_text.done', { item_id: msgId, output_index: 0, content_index: 0, text, logprobs: [] });
    tail += ev('response.content_part.done', { item_id: msgId, output_index: 0, content_index: 0, part });
    tail += ev('response.output_item.done', { output_index: 0, item: doneItem });
    tail += ev('response.completed', {
      response: response('completed', [doneItem], {
        input_tokens: usage.prompt_tokens,
        output_tokens: usage.completion_tokens,
        total_tokens: usage.total_tokens,
      }),
    });
    return write(tail);
  }

  function sendEmbeddings(res: ServerResponse, body: Record<string, unknown>, model: string, promptTokens: number): void {
    const input = body['input'];
    const inputs = Array.isArray(input) ? input : [input];
    const data = inputs.map((v, index) => {
      const s = seedOf(JSON.stringify(v));
      const embedding = Array.from({ length: 8 }, (_, k) => Math.sin(s + k) / 2);
      return { object: 'embedding', index, embedding };
    });
    sendJson(res, 200, JSON.stringify({ object: 'list', data, model, usage: { prompt_tokens: promptTokens, total_tokens: promptTokens } }));
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${host}:${addr.port}/v1`,
    port: addr.port,
    stats,
    events,
    engine,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function nonStreamBody(kind: 'chat' | 'completion' | 'responses', model: string, text: string, reason: string, usage: Usage, n: number, toolCall: SimToolCall | undefined): string {
  const created = Math.floor(Date.now() / 1000);
  const id = randomBytes(8).toString('hex');
  if (kind === 'responses') {
    return JSON.stringify({
      id: `resp_${id}`,
      object: 'response',
      created_at: created,
      status: 'completed',
      model,
      output: [{ id: `msg_${id}`, type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text, annotations: [] }] }],
      usage: { input_tokens: usage.prompt_tokens, output_tokens: usage.completion_tokens, total_tokens: usage.total_tokens },
    });
  }
  const choices = Array.from({ length: n }, (_, index) =>
    kind === 'chat'
      ? {
          index,
          message: toolCall
            ? { role: 'assistant', content: null, tool_calls: [{ id: `call_${id}${index}`, type: 'function', function: { name: toolCall.name, arguments: JSON.stringify(toolCall.args) } }] }
            : { role: 'assistant', content: text },
          logprobs: null,
          finish_reason: reason,
        }
      : { index, text, logprobs: null, finish_reason: reason },
  );
  return JSON.stringify({
    id: `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${id}`,
    object: kind === 'chat' ? 'chat.completion' : 'text_completion',
    created,
    model,
    choices,
    usage,
  });
}

/** Completion tokens a simulated tool call counts for. */
const TOOL_CALL_TOKENS = 12;

/**
 * The simulated tool call: to the request's first function tool (`get_weather` when it has none), always with the
 * same arguments. The simulator does not read the tool's schema.
 */
function simToolCall(body: Record<string, unknown>): SimToolCall {
  const tools = body['tools'];
  const first: unknown = Array.isArray(tools) ? tools[0] : undefined;
  const fn = first !== null && typeof first === 'object' ? (first as Record<string, unknown>)['function'] : undefined;
  const name = fn !== null && typeof fn === 'object' ? (fn as Record<string, unknown>)['name'] : undefined;
  return { name: typeof name === 'string' && name.length > 0 ? name : 'get_weather', args: { city: 'Paris', unit: 'celsius' } };
}

/** A deterministic log probability for the i-th token, with `top` made-up alternatives. */
function simLogprob(token: string, i: number, top: number): SimLogprob {
  const logprob = -Math.round(((i % 7) + 1) * 1234) / 100_000;
  return { token, logprob, top: Array.from({ length: top }, (_, k) => ({ token: k === 0 ? token : ` alt${k}`, logprob: k === 0 ? logprob : logprob - k })) };
}
