import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { validateConfig } from '../src/config/load.ts';
import type { ConfigInput } from '../src/config/schema.ts';
import { Registry } from '../src/upstream/registry.ts';
import { Ticker } from '../src/relay/ticker.ts';
import { KeyChecker } from '../src/auth/key-checker.ts';
import { KeyRing } from '../src/auth/key-ring.ts';
import { Limiter } from '../src/limits/limiter.ts';
import type { GatewayContext } from '../src/generation/context.ts';
import { Generation, type UnaryResponder } from '../src/generation/generation.ts';
import type { UnaryAnswer } from '../src/generation/attach.ts';
import type { RequestLogEntry } from '../src/generation/request-log.ts';
import { parseRequest, type RequestKind } from '../src/openai/request.ts';
import type { StreamWriter } from '../src/relay/writer.ts';
import { SluiceError } from '../src/errors.ts';
import { errorJson } from '../src/openai/error-wire.ts';
import { httpServer, sim } from './helpers/gateway.ts';

/**
 * Unit tests of `Generation` (src/generation/generation.ts) without a gateway: a context assembled here as
 * src/gateway.ts does, a real registry on a real scripted upstream (or the simulator), and writers that record what
 * the generation asked of them.
 */

/** A writer that records what it was asked, in order; `fail` before open is the transport's refusal. */
class RecordingWriter implements StreamWriter {
  log: string[] = [];
  opened = false;
  closed = false;
  #waiters = new Set<() => void>();
  open(): void {
    if (!this.opened) this.#push('open');
    this.opened = true;
  }
  data(json: string): void {
    this.#push(`data ${json}`);
  }
  named(event: string, json: string): void {
    this.#push(`${event} ${json}`);
  }
  heartbeat(): void {
    this.#push('heartbeat');
  }
  done(): void {
    this.#push('done');
  }
  flush(): boolean {
    return true;
  }
  onDrain(): void {}
  end(): void {
    this.#push('end');
    this.closed = true;
  }
  fail(err: SluiceError, inBand: () => void): void {
    this.#push(`fail ${err.code} ${err.status} opened=${this.opened}`);
    if (this.opened) inBand();
    this.closed = true;
  }
  destroy(): void {
    this.#push('destroy');
    this.closed = true;
  }
  #push(entry: string): void {
    this.log.push(entry);
    for (const w of [...this.#waiters]) w();
  }
  /** Waits until an entry matches. */
  until(pred: (entry: string) => boolean, what: string, ms = 10_000): Promise<void> {
    if (this.log.some(pred)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!this.log.some(pred)) return;
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`timed out waiting for ${what}; writer got ${JSON.stringify(this.log)}`));
      }, ms);
      this.#waiters.add(check);
    });
  }
}

/** A UnaryResponder that records the answer or the error. */
class RecordingResponder implements UnaryResponder {
  answers: UnaryAnswer[] = [];
  errors: SluiceError[] = [];
  answer(a: UnaryAnswer): void {
    this.answers.push(a);
  }
  fail(err: SluiceError): void {
    this.errors.push(err);
  }
}

/** A generation context as src/gateway.ts assembles it, on the given upstream, with its log lines collected. */
async function context(t: TestContext, upstreamUrl: string, input: Omit<ConfigInput, 'upstreams'> = {}): Promise<{ ctx: GatewayContext; logs: RequestLogEntry[] }> {
  const config = validateConfig({ discovery_interval_ms: 0, ...input, upstreams: [{ url: upstreamUrl, name: 'up', dialect: 'vllm' }] });
  const registry = new Registry(config, {}, () => {});
  await registry.start(0);
  const ticker = new Ticker(1_000);
  t.after(async () => {
    ticker.stop();
    await registry.close();
  });
  const logs: RequestLogEntry[] = [];
  const ctx: GatewayContext = { config, registry, ticker, keys: new KeyRing(new KeyChecker([]), undefined, () => {}), limiter: new Limiter(), ledger: undefined, log: (e) => logs.push(e), version: 'test', generations: new Set(), lifecycle: { phase: 'serving' }, metrics: undefined };
  return { ctx, logs };
}

/** A generation and a promise of its end (its `onEnd`, which runs after the log line is written). */
function generation(ctx: GatewayContext, kind: RequestKind = 'chat', path = '/v1/chat/completions'): { gen: Generation; ended: Promise<void> } {
  let onEnd!: () => void;
  const ended = new Promise<void>((r) => (onEnd = r));
  const gen = new Generation(ctx, { id: 'req_test', method: 'POST', path, kind, startedPerf: performance.now() }, onEnd);
  return { gen, ended };
}

const chat = (extra: Record<string, unknown> = {}) => parseRequest('chat', JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'Hi' }], stream: true, ...extra }));

const chunk = (content: string): string => `{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"${content}"},"finish_reason":null}]}`;
const FINISH = '{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}';
const USAGE = '{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}';

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
  /** Resolves when the upstream's side of the request closes (the gateway aborted it, or it ended). */
  closed: Promise<void>;
  res: ServerResponse;
}

/**
 * A scripted upstream serving model `m`: `onPost` answers each POST; `seen` records them, with a promise of their
 * connection's close.
 */
async function upstream(t: TestContext, onPost: (req: IncomingMessage, res: ServerResponse, body: string) => void) {
  const seen: Seen[] = [];
  let wake: () => void = () => {};
  const up = await httpServer(t, (req, res) => {
    if (req.method === 'GET' && req.url === '/v1/models') return void res.end(JSON.stringify({ object: 'list', data: [{ id: 'm', object: 'model' }] }));
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString('utf8')));
    req.on('end', () => {
      const closed = new Promise<void>((r) => res.once('close', () => r()));
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body, closed, res });
      wake();
      onPost(req, res, body);
    });
  });
  const request = (n = 1): Promise<Seen> =>
    new Promise((resolve) => {
      const check = (): void => {
        const s = seen[n - 1];
        if (s) resolve(s);
      };
      wake = check;
      check();
    });
  return { url: up.url, seen, request };
}

/** `p`, or a clear failure after `ms`. */
async function within<T>(p: Promise<T>, what: string, ms = 5_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

const sse = (res: ServerResponse): void => void res.writeHead(200, { 'content-type': 'text/event-stream' });

test('an unknown model is refused through the writer before open, and logged as rejected', async (t) => {
  const up = await upstream(t, () => assert.fail('nothing is forwarded for an unknown model'));
  const { ctx, logs } = await context(t, up.url);
  const writer = new RecordingWriter();
  const { gen, ended } = generation(ctx);
  await gen.stream(chat({ model: 'nope' }), writer);
  await within(ended, 'the end');
  assert.deepEqual(writer.log, ['fail SLUICE_MODEL_NOT_FOUND 404 opened=false']);
  assert.equal(logs.length, 1);
  assert.equal(logs[0]?.outcome, 'rejected');
  assert.equal(logs[0]?.error_code, 'SLUICE_MODEL_NOT_FOUND');
  assert.equal(logs[0]?.status, 404);
  assert.equal(logs[0]?.model, 'nope');
  assert.equal(logs[0]?.upstream, undefined);
  assert.equal(logs[0]?.id, 'req_test');
  assert.equal(up.seen.length, 0);
  assert.equal(ctx.generations.size, 0);
});

test('a streamed generation relays the upstream events, strips the usage it asked for, and logs upstream, tokens and outcome', async (t) => {
  const up = await upstream(t, (_req, res) => {
    sse(res);
    res.end(`data: ${chunk('He')}\n\ndata: ${chunk('llo')}\n\ndata: ${FINISH}\n\ndata: ${USAGE}\n\ndata: [DONE]\n\n`);
  });
  const { ctx, logs } = await context(t, up.url);
  const writer = new RecordingWriter();
  const { gen, ended } = generation(ctx);
  await gen.stream(chat(), writer);
  await within(ended, 'the end');
  assert.deepEqual(writer.log, ['open', `data ${chunk('He')}`, `data ${chunk('llo')}`, `data ${FINISH}`, 'done', 'end']);
  const sent = await up.request();
  assert.equal(sent.url, '/v1/chat/completions');
  assert.equal(sent.headers['x-request-id'], 'req_test');
  assert.equal(sent.headers['accept'], 'text/event-stream');
  assert.deepEqual((JSON.parse(sent.body) as { stream_options?: unknown }).stream_options, { include_usage: true, continuous_usage_stats: true }, 'usage asked for, on every chunk from vLLM, to meter every token');
  assert.equal(logs.length, 1);
  const log = logs[0] as RequestLogEntry;
  assert.equal(log.outcome, 'completed');
  assert.equal(log.upstream, 'up');
  assert.equal(log.model, 'm');
  assert.equal(log.stream, true);
  assert.equal(log.status, 200);
  assert.equal(log.tokens_in, 5);
  assert.equal(log.tokens_out, 2);
  assert.equal(log.error_code, undefined);
  assert.equal(typeof log.ttft_ms, 'number');
  assert.match(log.ts, /^\d{4}-\d\d-\d\dT/);
  assert.equal(ctx.generations.size, 0);
});

test('a streamed generation on the simulator completes with its usage logged', async (t) => {
  const s = await sim(t, { models: ['m'], timing: { ttftMs: 0, itlMs: 0, tokens: 3 } });
  const { ctx, logs } = await context(t, s.url);
  const writer = new RecordingWriter();
  const { gen, ended } = generation(ctx);
  await gen.stream(chat(), writer);
  await within(ended, 'the end');
  assert.deepEqual(writer.log.slice(-2), ['done', 'end']);
  assert.equal(logs[0]?.outcome, 'completed');
  assert.equal(logs[0]?.tokens_out, 3);
  assert.equal(typeof logs[0]?.tokens_in, 'number');
});

test('cancel() before the upstream answers aborts the upstream request and logs client_aborted', async (t) => {
  const up = await upstream(t, () => {}); // never answers
  const { ctx, logs } = await context(t, up.url);
  const writer = new RecordingWriter();
  const { gen, ended } = generation(ctx);
  const running = gen.stream(chat(), writer);
  const sent = await within(up.request(), 'the upstream request');
  assert.equal(ctx.generations.has(gen), true, 'in flight');
  gen.cancel();
  await within(sent.closed, 'the upstream request to be aborted');
  await within(ended, 'the end');
  await running;
  assert.deepEqual(writer.log, ['destroy']);
  assert.equal(logs.length, 1);
  assert.equal(logs[0]?.outcome, 'client_aborted');
  assert.equal(logs[0]?.error_code, 'SLUICE_CLIENT_ABORTED', 'docs/errors.md: log-only codes show in the log line');
  assert.equal(logs[0]?.status, 499, 'no byte reached the client');
  assert.equal(ctx.generations.size, 0);
  gen.cancel(); // after the end: nothing more
  assert.equal(logs.length, 1);
});

test('cancel() before admission has finished sends nothing upstream', async (t) => {
  const up = await upstream(t, () => assert.fail('nothing is forwarded for a cancelled generation'));
  const { ctx, logs } = await context(t, up.url);
  const writer = new RecordingWriter();
  const { gen, ended } = generation(ctx);
  const running = gen.stream(chat(), writer);
  gen.cancel();
  await running;
  await within(ended, 'the end');
  assert.deepEqual(writer.log, ['destroy']);
  assert.equal(logs[0]?.outcome, 'client_aborted');
  assert.equal(logs[0]?.error_code, 'SLUICE_CLIENT_ABORTED');
  assert.equal(logs[0]?.status, 499);
  assert.equal(up.seen.length, 0);
});

test('cancel() during the stream aborts the upstream request and logs client_aborted', async (t) => {
  const up = await upstream(t, (_req, res) => {
    sse(res);
    res.write(`data: ${chunk('He')}\n\n`); // then nothing: the generation goes on upstream
  });
  const { ctx, logs } = await context(t, up.url);
  const writer = new RecordingWriter();
  const { gen, ended } = generation(ctx);
  await gen.stream(chat(), writer);
  await writer.until((e) => e.startsWith('data '), 'the first event');
  const sent = await up.request();
  gen.cancel();
  await within(sent.closed, 'the upstream request to be aborted');
  await within(ended, 'the end');
  assert.deepEqual(writer.log, ['open', `data ${chunk('He')}`, 'destroy']);
  assert.equal(sent.res.writableFinished, false, 'cut before the upstream finished');
  assert.equal(logs[0]?.outcome, 'client_aborted');
  assert.equal(logs[0]?.error_code, 'SLUICE_CLIENT_ABORTED');
  assert.equal(logs[0]?.upstream, 'up');
  assert.equal(logs[0]?.status, 200);
  assert.equal(typeof logs[0]?.ttft_ms, 'number');
});

test('a unary generation hands the upstream JSON to the responder and logs its usage', async (t) => {
  const answer = '{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":4,"completion_tokens":1,"total_tokens":5}}';
  const up = await upstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' });
    res.end(answer);
  });
  const { ctx, logs } = await context(t, up.url);
  const reply = new RecordingResponder();
  const { gen, ended } = generation(ctx);
  const parsed = chat({ stream: false, stream_options: { include_usage: true } });
  assert.equal(Generation.streams(parsed), false);
  await gen.unary(parsed, reply);
  await within(ended, 'the end');
  assert.deepEqual(reply.errors, []);
  assert.deepEqual(reply.answers, [{ status: 200, contentType: 'application/json; charset=utf-8', body: answer }]);
  const sent = await up.request();
  assert.equal(sent.headers['accept'], 'application/json');
  assert.equal('stream_options' in (JSON.parse(sent.body) as object), false, 'no stream_options on a non-streamed request');
  assert.equal(logs[0]?.outcome, 'completed');
  assert.equal(logs[0]?.stream, false);
  assert.equal(logs[0]?.status, 200);
  assert.equal(logs[0]?.upstream, 'up');
  assert.equal(logs[0]?.tokens_in, 4);
  assert.equal(logs[0]?.tokens_out, 1);
  gen.cancel(); // the answer was handed over: a close from here on is its end
  assert.equal(logs.length, 1);
});

test('a unary generation whose upstream answers 400 fails with the mapped error', async (t) => {
  const up = await upstream(t, (_req, res) => {
    res.writeHead(400, { 'content-type': 'application/json' });
    res.end('{"object":"error","message":"temperature must be at most 2","type":"BadRequestError","param":"temperature","code":400}');
  });
  const { ctx, logs } = await context(t, up.url);
  const reply = new RecordingResponder();
  const { gen, ended } = generation(ctx);
  await gen.unary(chat({ stream: false }), reply);
  await within(ended, 'the end');
  assert.deepEqual(reply.answers, []);
  assert.equal(reply.errors.length, 1);
  const err = reply.errors[0] as SluiceError;
  assert.equal(err.code, 'SLUICE_UPSTREAM_ERROR');
  assert.equal(err.status, 400);
  assert.equal(errorJson(err), '{"error":{"message":"temperature must be at most 2","type":"invalid_request_error","param":"temperature","code":"400"}}');
  assert.equal(up.seen.length, 1, 'a 4xx is not retried');
  assert.equal(logs[0]?.outcome, 'upstream_error');
  assert.equal(logs[0]?.status, 400);
  assert.equal(logs[0]?.error_code, 'SLUICE_UPSTREAM_ERROR');
});

test('fail(SLUICE_SHUTTING_DOWN) ends a running stream with an error event and aborts the upstream', async (t) => {
  const up = await upstream(t, (_req, res) => {
    sse(res);
    res.write(`data: ${chunk('He')}\n\n`);
  });
  const { ctx, logs } = await context(t, up.url);
  const writer = new RecordingWriter();
  const { gen, ended } = generation(ctx);
  await gen.stream(chat(), writer);
  await writer.until((e) => e.startsWith('data '), 'the first event');
  const sent = await up.request();
  const err = new SluiceError('SLUICE_SHUTTING_DOWN', 'the gateway is shutting down');
  gen.fail(err, 'shutdown');
  await within(ended, 'the end');
  await within(sent.closed, 'the upstream request to be aborted');
  assert.deepEqual(writer.log, ['open', `data ${chunk('He')}`, 'fail SLUICE_SHUTTING_DOWN 503 opened=true', `data ${errorJson(err)}`]);
  assert.equal(logs[0]?.outcome, 'shutdown');
  assert.equal(logs[0]?.error_code, 'SLUICE_SHUTTING_DOWN');
  assert.equal(logs[0]?.status, 200, 'the stream had answered 200 already');
});
