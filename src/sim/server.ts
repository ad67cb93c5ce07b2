import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { DEFAULT_TIMING, mergeSimOptions, type SimTiming } from './options.ts';
import { countPromptTokens, seedOf, simToken } from './text.ts';
import type { SimDialect, StreamContext, Usage } from './dialects/dialect.ts';
import { vllm } from './dialects/vllm.ts';

/**
 * The simulator: a real OpenAI-compatible HTTP server that streams generated text with configurable timing and
 * injected failures, byte-faithful to vLLM by default. It is Sluice's stand-in engine for tests, benchmarks, demos and
 * `sluice doctor`, and is labelled a simulator in every response (`x-sluice-simulator: 1`).
 */

export interface SimulatorOptions {
  host?: string;
  port?: number;
  models?: string[];
  timing?: Partial<SimTiming>;
  dialect?: SimDialect;
  /** Largest request body accepted, bytes. */
  maxBodyBytes?: number;
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
  const dialect = options.dialect ?? vllm;
  const maxBody = options.maxBodyBytes ?? 4 * 1024 * 1024;
  const events = new EventEmitter();
  const stats: SimStats = { started: 0, completed: 0, aborted: 0, inFlight: 0 };

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
      if (path === '/v1/models') {
        const created = Math.floor(Date.now() / 1000);
        const data = models.map((id) => ({ id, object: 'model', created, owned_by: dialect.ownedBy }));
        return sendJson(res, 200, JSON.stringify({ object: 'list', data }));
      }
      if (path === '/health') return sendJson(res, 200, '{}');
      if (path === '/version') return sendJson(res, 200, JSON.stringify({ version: 'sluice-sim' }));
      if (path === '/sim/stats') return sendJson(res, 200, JSON.stringify(stats));
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
    if (!stream && body['stream_options'] != null) {
      // vLLM: "Stream options can only be defined when `stream=True`." (protocol.py validator)
      return sendJson(
        res,
        400,
        dialect.errorBody('Stream options can only be defined when `stream=True`.', 400, 'BadRequestError'),
      );
    }
    const promptText = JSON.stringify(body['messages'] ?? body['prompt'] ?? body['input'] ?? body['text'] ?? '');
    const seed = seedOf(promptText);
    const maxTokens = body['max_tokens'] ?? body['max_completion_tokens'] ?? body['max_output_tokens'];
    const limit = typeof maxTokens === 'number' && maxTokens > 0 ? maxTokens : Infinity;
    const count = Math.min(timing.tokens, limit);
    const reason = count < timing.tokens ? 'length' : 'stop';
    const n = typeof body['n'] === 'number' && body['n'] > 1 ? Math.min(body['n'], 8) : 1;
    const promptTokens = countPromptTokens(promptText);
    const usage: Usage = { prompt_tokens: promptTokens, completion_tokens: count * n, total_tokens: promptTokens + count * n };

    if (path === '/v1/embeddings') return sendEmbeddings(res, body, model, promptTokens);
    const kind = path === '/v1/chat/completions' ? 'chat' : path === '/v1/completions' ? 'completion' : path === '/v1/responses' ? 'responses' : null;
    if (kind === null) return sendJson(res, 404, dialect.errorBody(`Not Found: ${path}`, 404, 'NotFoundError'));
    if (kind === 'chat' && !Array.isArray(body['messages'])) {
      return sendJson(res, 400, dialect.errorBody('`messages` is required', 400, 'BadRequestError'));
    }

    const tokenText = (i: number): string => (timing.probe ? probeToken() : simToken(i, seed));
    stats.started++;
    stats.inFlight++;
    let finished = false;
    let tokensSent = 0;
    res.on('close', () => {
      stats.inFlight--;
      if (finished) {
        stats.completed++;
        events.emit('completed', { path });
      } else {
        stats.aborted++;
        events.emit('aborted', { path, tokensSent });
      }
    });

    if (!stream) {
      await sleep(jittered(timing.ttftMs + timing.itlMs * Math.max(0, count - 1), timing.jitterMs));
      if (res.destroyed) return;
      let text = '';
      for (let i = 0; i < count; i++) text += tokenText(i);
      finished = true;
      tokensSent = count;
      return sendJson(res, 200, nonStreamBody(kind, model, text, reason, usage, n));
    }

    const ctx: StreamContext = {
      id: `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomBytes(8).toString('hex')}`,
      created: Math.floor(Date.now() / 1000),
      model,
      n,
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

    if (kind === 'responses') {
      finished = await streamResponses(res, write, ctx, count, tokenText, timing, failing, usage);
      if (finished) res.end();
      return;
    }
    const includeUsage =
      typeof body['stream_options'] === 'object' &&
      body['stream_options'] !== null &&
      (body['stream_options'] as Record<string, unknown>)['include_usage'] === true;

    await sleep(jittered(timing.ttftMs, timing.jitterMs));
    if (kind === 'chat') {
      let roles = '';
      for (let c = 0; c < n; c++) roles += dialect.chatRole(ctx, c);
      if (!(await write(roles))) return;
    }
    for (let i = 0; i < count; i++) {
      if (failing && i === timing.failAfter && (await injectFailure(res, timing, write))) return;
      const t = tokenText(i);
      let out = '';
      for (let c = 0; c < n; c++) out += kind === 'chat' ? dialect.chatDelta(ctx, c, t) : dialect.completionDelta(ctx, c, t);
      if (!(await write(out))) return;
      tokensSent++;
      if (i < count - 1) await sleep(jittered(timing.itlMs, timing.jitterMs));
    }
    if (failing && timing.failAfter >= count && (await injectFailure(res, timing, write))) return;
    let tail = '';
    for (let c = 0; c < n; c++) tail += kind === 'chat' ? dialect.chatFinish(ctx, c, reason) : dialect.completionFinish(ctx, c, reason);
    tail += (kind === 'chat' ? dialect.chatUsage(ctx, usage, includeUsage) : dialect.completionUsage(ctx, usage, includeUsage)) ?? '';
    tail += dialect.done;
    if (!(await write(tail))) return;
    finished = true;
    res.end();
  }

  /** Returns true when the failure ended the response. */
  async function injectFailure(res: ServerResponse, timing: SimTiming, write: (s: string) => Promise<boolean>): Promise<boolean> {
    switch (timing.fail) {
      case 'hang':
        // Keep the connection open and silent until the client gives up.
        await new Promise<void>((r) => res.once('close', () => r()));
        return true;
      case 'drop':
        res.socket?.destroy();
        return true;
      case 'error_frame':
        await write(dialect.errorFrames('simulated engine failure', 500));
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
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function nonStreamBody(kind: 'chat' | 'completion' | 'responses', model: string, text: string, reason: string, usage: Usage, n: number): string {
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
      ? { index, message: { role: 'assistant', content: text }, logprobs: null, finish_reason: reason }
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
