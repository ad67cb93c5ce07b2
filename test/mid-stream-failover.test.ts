import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import type { Simulator, SimulatorOptions } from '../src/sim/server.ts';
import type { SimTiming } from '../src/sim/options.ts';
import { chatBody, gateway, httpServer, once, post, sim } from './helpers/gateway.ts';
import { assemble, assertOpenAIStream } from './helpers/openai-stream.ts';
import { muxText, openSocket, wsUrl } from './helpers/ws.ts';

// Mid-stream failover (issue 15, docs/failover.md): an engine that fails after tokens reached the client is replaced
// by another replica that continues the answer, spliced into the same client stream. Real simulators on loopback,
// a real gateway; each gateway is fresh, so its first request goes to the first upstream (routing rotates from it).

const TOKENS = 24;
const FAST: Partial<SimTiming> = { ttftMs: 5, itlMs: 5, tokens: TOKENS };

type Json = Record<string, unknown>;

/** Replicas A (failing as `fail` says), B, and more, all serving sluice-sim with the same text. */
async function replicas(t: TestContext, ...timings: Array<Partial<SimTiming> & Pick<SimulatorOptions, 'dialect'>>): Promise<Simulator[]> {
  return Promise.all(timings.map(({ dialect, ...timing }) => sim(t, { timing: { ...FAST, ...timing }, ...(dialect ? { dialect } : {}) })));
}

const upstreamsOf = (sims: Simulator[]) => sims.map((s, i) => ({ url: s.url, name: String.fromCharCode(97 + i) }));

/** Streams a request through `url` and returns the raw body, its chunks, text and error. */
async function stream(url: string, body: Json, path = '/chat/completions') {
  const res = await post(`${url}${path}`, body);
  assert.equal(res.status, 200);
  const raw = await res.text();
  const kind = path === '/completions' ? 'completion' : 'chat';
  // The simulator's tool call arguments are Python's spaced json.dumps, which the compact-JSON check would refuse.
  const { chunks, error } = raw.includes('"tool_calls"') ? looseStream(raw) : assertOpenAIStream(raw, kind);
  const a = assemble(chunks);
  return { raw, chunks, error, text: a.content[0] ?? '', finish: a.finish[0], done: raw.endsWith('data: [DONE]\n\n') };
}

/** The chunks and error frame of a stream, without assertOpenAIStream's checks of the JSON's spacing. */
function looseStream(raw: string): { chunks: Json[]; error: Json | undefined } {
  const objects = raw.split('\n\n').filter((f) => f.startsWith('data: {')).map((f) => JSON.parse(f.slice(6)) as Json);
  const last = objects.at(-1);
  const error = last !== undefined && 'error' in last ? (last['error'] as Json) : undefined;
  return { chunks: objects.filter((o) => !('error' in o)), error };
}

/** The uninterrupted answer, asked of a healthy simulator directly. */
async function uninterrupted(s: Simulator, body: Json, path = '/chat/completions') {
  return stream(s.url, { ...body, sim: { fail: 'none' } }, path);
}

test('chat: an engine that drops its connection mid-answer is replaced; the client gets the whole answer, exactly once', async (t) => {
  const [a, b] = await replicas(t, { fail: 'drop', failAfter: 9 }, {});
  const g = await gateway(t, { upstreams: upstreamsOf([a!, b!]), failover: { mid_stream: true } });
  const body = chatBody({ stream_options: { include_usage: true } });
  const bSeen = once<{ body: Json }>(b!.events, 'request');
  const got = await stream(g.url, body);
  const want = await uninterrupted(b!, body);
  assert.ok(got.done, 'ends with [DONE]');
  assert.equal(got.error, undefined);
  assert.equal(got.text, want.text, 'word for word the uninterrupted text');
  assert.equal(got.finish, 'stop');
  // One id, one model, one created across the splice; one role chunk (assertOpenAIStream checks it is not repeated).
  assert.equal(new Set(got.chunks.map((c) => c['id'])).size, 1);
  assert.equal(new Set(got.chunks.map((c) => c['model'])).size, 1);
  assert.equal(new Set(got.chunks.map((c) => c['created'])).size, 1);
  // Usage adds up: the prompt once, the completion summed over both engines = the uninterrupted one's.
  const usage = got.chunks.find((c) => c['usage'])?.['usage'];
  assert.deepEqual(usage, want.chunks.find((c) => c['usage'])?.['usage']);
  // B was asked for the rest: the answer so far prefilled, max_tokens untouched (none was set).
  const sent = (await bSeen).body;
  assert.equal(sent['continue_final_message'], true);
  assert.equal(sent['add_generation_prompt'], false);
  const msgs = sent['messages'] as Json[];
  assert.deepEqual(msgs.at(-1), { role: 'assistant', content: want.text.split(/(?= )/).slice(0, 9).join('') });
  const log = g.logs.at(-1)!;
  assert.equal(log.outcome, 'completed');
  assert.equal(log.upstream, 'b');
  assert.ok(typeof log.failovers?.[0]?.at_ms === 'number' && log.failovers[0].at_ms <= log.duration_ms, 'timed from the arrival');
  assert.deepEqual(log.failovers?.map(({ at_ms: _, ...f }) => f), [{ from: 'a', to: 'b', reason: 'connection_lost', after_tokens: 9 }]);
  assert.equal(log.tokens_out, TOKENS);
  const metrics = await (await fetch(g.url.replace(/\/v1$/, '/metrics'))).text();
  assert.match(metrics, /sluice_mid_stream_failovers_total\{reason="connection_lost",from="a",to="b"\} 1/);
});

test('usage on every chunk (continuous_usage_stats asked by the client) keeps counting across the splice', async (t) => {
  const [a, b] = await replicas(t, { fail: 'drop', failAfter: 6 }, {});
  const g = await gateway(t, { upstreams: upstreamsOf([a!, b!]), failover: { mid_stream: true } });
  const body = chatBody({ stream_options: { include_usage: true, continuous_usage_stats: true } });
  const res = await post(`${g.url}/chat/completions`, body);
  const raw = await res.text();
  const chunks = raw.split('\n\n').filter((f) => f.startsWith('data: {')).map((f) => JSON.parse(f.slice(6)) as Json);
  const counts = chunks.map((c) => (c['usage'] as Json | undefined)?.['completion_tokens'] as number);
  const prompts = new Set(chunks.map((c) => (c['usage'] as Json | undefined)?.['prompt_tokens']));
  assert.ok(raw.endsWith('data: [DONE]\n\n'));
  assert.equal(prompts.size, 1, `one prompt count throughout: ${[...prompts].join(', ')}`);
  for (let i = 1; i < counts.length; i++) assert.ok(counts[i]! >= counts[i - 1]!, `completion tokens never go back: ${counts.join(',')}`);
  assert.equal(counts.at(-1), TOKENS);
  const want = await uninterrupted(b!, chatBody());
  assert.equal(assemble(chunks).content[0], want.text);
});

test('max_tokens is reduced by what was sent, and the answer ends where the uninterrupted one does', async (t) => {
  const [a, b] = await replicas(t, { fail: 'drop', failAfter: 5 }, {});
  const g = await gateway(t, { upstreams: upstreamsOf([a!, b!]), failover: { mid_stream: true } });
  const body = chatBody({ max_tokens: 12 });
  const bSeen = once<{ body: Json }>(b!.events, 'request');
  const got = await stream(g.url, body);
  const want = await uninterrupted(b!, body);
  assert.equal((await bSeen).body['max_tokens'], 7);
  assert.equal(got.text, want.text);
  assert.equal(got.finish, 'length');
  assert.ok(got.done);
});

test('an engine error frame and an engine that hangs with its connection open are failed over; the hung socket is closed', async (t) => {
  for (const fail of ['error_frame', 'hang'] as const) {
    const [a, b] = await replicas(t, { fail, failAfter: 7 }, {});
    const g = await gateway(t, { upstreams: upstreamsOf([a!, b!]), failover: { mid_stream: true }, timeouts: { idle_ms: 300 } });
    const aborted = fail === 'hang' ? once<{ tokensSent: number }>(a!.events, 'aborted') : undefined;
    const got = await stream(g.url, chatBody());
    const want = await uninterrupted(b!, chatBody());
    assert.ok(got.done, fail);
    assert.equal(got.text, want.text, fail);
    assert.equal(g.logs.at(-1)!.failovers?.[0]?.reason, fail === 'hang' ? 'idle_timeout' : 'error_frame');
    if (aborted) assert.equal((await aborted).tokensSent, 7, 'the hung engine saw its connection closed');
    assert.equal(a!.stats.inFlight, 0);
  }
});

test('completions: the answer so far is appended to the prompt', async (t) => {
  const [a, b] = await replicas(t, { fail: 'drop', failAfter: 8 }, {});
  const g = await gateway(t, { upstreams: upstreamsOf([a!, b!]), failover: { mid_stream: true } });
  const body = { model: 'sluice-sim', prompt: 'Once upon a time', stream: true, stream_options: { include_usage: true } };
  const bSeen = once<{ body: Json }>(b!.events, 'request');
  const got = await stream(g.url, body, '/completions');
  const want = await uninterrupted(b!, body, '/completions');
  assert.ok(got.done);
  assert.equal(got.text, want.text);
  assert.equal((await bSeen).body['prompt'], `Once upon a time${want.text.split(/(?= )/).slice(0, 8).join('')}`);
  assert.deepEqual(got.chunks.find((c) => c['usage'])?.['usage'], want.chunks.find((c) => c['usage'])?.['usage']);
  assert.equal(new Set(got.chunks.map((c) => c['id'])).size, 1);
});

test('SGLang replicas: the splice is exact through the dialect normalizer', async (t) => {
  const [a, b] = await replicas(t, { fail: 'drop', failAfter: 4, dialect: 'sglang' }, { dialect: 'sglang' });
  const g = await gateway(t, { upstreams: upstreamsOf([a!, b!]).map((u) => ({ ...u, dialect: 'sglang' as const })), failover: { mid_stream: true } });
  const body = chatBody({ stream_options: { include_usage: true } });
  const got = await stream(g.url, body);
  const direct = await stream(g.url, { ...body, sim: { fail: 'none' } });
  assert.ok(got.done);
  assert.equal(got.text, direct.text);
  assert.equal(new Set(got.chunks.map((c) => c['id'])).size, 1);
  // This SGLang reports no usage before its last chunk: the completion still adds up; the prompt's count is the
  // continuation's less the answer so far (an estimate, docs/failover.md).
  const usage = got.chunks.find((c) => c['usage'])?.['usage'] as Json;
  assert.equal(usage['completion_tokens'], TOKENS);
  assert.equal(usage['total_tokens'], (usage['prompt_tokens'] as number) + TOKENS);
  assert.equal(g.logs.at(-2)!.tokens_out, TOKENS);
});

test('the openai client streams a failed-over answer as one', async (t) => {
  const [a, b] = await replicas(t, { fail: 'drop', failAfter: 10 }, {});
  const g = await gateway(t, { upstreams: upstreamsOf([a!, b!]), failover: { mid_stream: true } });
  const client = new OpenAI({ baseURL: g.url, apiKey: 'unused', maxRetries: 0 });
  const s = await client.chat.completions.create({ model: 'sluice-sim', messages: [{ role: 'user', content: 'Hello' }], stream: true, stream_options: { include_usage: true } });
  let text = '';
  const ids = new Set<string>();
  let usage: unknown;
  for await (const chunk of s) {
    ids.add(chunk.id);
    text += chunk.choices[0]?.delta.content ?? '';
    if (chunk.usage) usage = chunk.usage;
  }
  const want = await uninterrupted(b!, chatBody({ stream_options: { include_usage: true } }));
  assert.equal(text, want.text);
  assert.equal(ids.size, 1);
  assert.deepEqual(usage, want.chunks.find((c) => c['usage'])?.['usage']);
});

test('hop limit: a replacement that fails too is replaced again only up to failover.max_mid_stream', async (t) => {
  for (const max of [1, 2]) {
    // Routing: A first; at each failover the next in rotation among those not tried yet (B, then C).
    const [a, b, c] = await replicas(t, { fail: 'drop', failAfter: 5 }, { fail: 'drop', failAfter: 4 }, {});
    const g = await gateway(t, { upstreams: upstreamsOf([a!, b!, c!]), failover: { mid_stream: true, max_mid_stream: max } });
    const got = await stream(g.url, chatBody());
    const want = await uninterrupted(c!, chatBody());
    const log = g.logs.at(-1)!;
    if (max === 1) {
      assert.ok(!got.done, 'no [DONE] past the hop limit');
      assert.equal(got.error?.['code'], 'sluice_upstream_truncated');
      assert.equal(got.text, want.text.split(/(?= )/).slice(0, 9).join(''), 'what A and B sent, spliced, and nothing else');
      assert.equal(log.outcome, 'truncated');
      assert.match(log.failover_refused ?? '', /^hop_limit/);
      assert.deepEqual(log.failovers?.map((f) => `${f.from}>${f.to}`), ['a>b']);
    } else {
      assert.ok(got.done, JSON.stringify({ log, error: got.error }));
      assert.equal(got.text, want.text);
      assert.deepEqual(log.failovers?.map(({ at_ms: _, ...f }) => f), [
        { from: 'a', to: 'b', reason: 'connection_lost', after_tokens: 5 },
        { from: 'b', to: 'c', reason: 'connection_lost', after_tokens: 9 },
      ]);
      assert.equal(log.tokens_out, TOKENS);
    }
  }
});

test('where the splice would not be exact, the stream ends as without failover: an error frame, no [DONE]', async (t) => {
  const cases: Array<{ name: string; body: Json; a: Partial<SimTiming>; why: RegExp }> = [
    { name: 'n = 2', body: chatBody({ n: 2 }), a: { fail: 'drop', failAfter: 5 }, why: /^not_exact: the request (asks for|streams) several choices/ },
    { name: 'reasoning', body: chatBody({ sim: { reasoning: 6 } }), a: { fail: 'drop', failAfter: 3 }, why: /^not_exact: the answer has reasoning text/ },
    { name: 'constrained output', body: chatBody({ response_format: { type: 'json_object' } }), a: { fail: 'drop', failAfter: 3 }, why: /^not_exact: the answer is constrained/ },
  ];
  for (const c of cases) {
    const [a, b] = await replicas(t, c.a, {});
    const g = await gateway(t, { upstreams: upstreamsOf([a!, b!]), failover: { mid_stream: true } });
    const got = await stream(g.url, c.body);
    assert.ok(!got.done, `${c.name}: no [DONE]`);
    assert.equal(got.error?.['code'], 'sluice_upstream_truncated', c.name);
    assert.match(g.logs.at(-1)!.failover_refused ?? '', c.why, c.name);
    assert.equal(g.logs.at(-1)!.failovers, undefined, c.name);
    assert.equal(b!.stats.started, 0, `${c.name}: nothing was sent to B`);
  }
});

test('a replica whose engine takes no prefill (llama.cpp) is not used for a continuation', async (t) => {
  const [a, b] = await replicas(t, { fail: 'drop', failAfter: 5 }, { dialect: 'llamacpp' });
  const g = await gateway(t, { upstreams: [...upstreamsOf([a!]), { url: b!.url, name: 'b', dialect: 'llamacpp' }], failover: { mid_stream: true } });
  const got = await stream(g.url, chatBody());
  assert.ok(!got.done);
  assert.ok(got.error);
  assert.match(g.logs.at(-1)!.failover_refused ?? '', /^no_replica/);
  const metrics = await (await fetch(g.url.replace(/\/v1$/, '/metrics'))).text();
  assert.match(metrics, /sluice_mid_stream_failovers_refused_total\{reason="no_replica"\} 1/);
});

test('off (the default), or off for the model, a failed engine ends the stream with an error frame; on for one model only', async (t) => {
  const configs = [
    { failover: {}, on: false },
    { failover: { mid_stream: true, models: { 'sluice-sim': { mid_stream: false } } }, on: false },
    { failover: { models: { 'sluice-sim': { mid_stream: true } } }, on: true },
  ];
  for (const c of configs) {
    const [a, b] = await replicas(t, { fail: 'drop', failAfter: 5 }, {});
    const g = await gateway(t, { upstreams: upstreamsOf([a!, b!]), failover: c.failover });
    const got = await stream(g.url, chatBody());
    assert.equal(got.done, c.on, JSON.stringify(c.failover));
    assert.equal(got.error === undefined, c.on);
    assert.equal(b!.stats.started, c.on ? 1 : 0);
  }
});

test('a client that leaves during the failover leaves nothing running upstream', async (t) => {
  // B takes long to answer: the client leaves while the gateway waits for its first token, then while it waits for
  // its headers.
  for (const slow of [{ ttftMs: 3_000 }, { headersDelayMs: 3_000 }]) {
    const [a, b] = await replicas(t, { fail: 'drop', failAfter: 5 }, slow);
    const g = await gateway(t, { upstreams: upstreamsOf([a!, b!]), failover: { mid_stream: true } });
    const client = new AbortController();
    const res = await post(`${g.url}/chat/completions`, chatBody(), {}, client.signal);
    const reading = res.text().catch(() => 'aborted');
    await once(b!.events, 'request');
    const bAborted = 'ttftMs' in slow ? once(b!.events, 'aborted') : undefined;
    await new Promise((r) => setTimeout(r, 50));
    client.abort();
    assert.equal(await reading, 'aborted');
    await bAborted;
    for (let i = 0; i < 100 && g.inFlight > 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(g.inFlight, 0);
    assert.equal(g.logs.at(-1)!.outcome, 'client_aborted');
    assert.equal(a!.stats.inFlight, 0);
    assert.equal(b!.stats.inFlight, 0, 'B has nothing in flight');
    const metrics = await (await fetch(g.url.replace(/\/v1$/, '/metrics'))).text();
    assert.match(metrics, /sluice_upstream_in_flight\{upstream="b"\} 0/);
  }
});

/** A scripted replacement replica that answers the continuation with `frames` and records what it was sent. */
async function scripted(t: TestContext, frames: string[]) {
  const bodies: Json[] = [];
  const up = await httpServer(t, (req, res) => {
    if (req.method === 'GET') return void res.end(JSON.stringify({ object: 'list', data: [{ id: 'sluice-sim', object: 'model' }] }));
    let raw = '';
    req.on('data', (d: Buffer) => (raw += d.toString()));
    req.on('end', () => {
      bodies.push(JSON.parse(raw) as Json);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      for (const f of frames) res.write(f);
      res.end();
    });
  });
  return { url: up.url, bodies };
}

const frame = (o: Json): string => `data: ${JSON.stringify(o)}\n\n`;

test('a replacement answering with another id, model and created is rewritten into the first answer\'s', async (t) => {
  const chunk = (delta: Json, finish: string | null): Json => ({ id: 'chatcmpl-OTHER', object: 'chat.completion.chunk', created: 1, model: 'other-model', choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] });
  const b = await scripted(t, [frame(chunk({ role: 'assistant', content: '' }, null)), frame(chunk({ content: ' and the rest' }, null)), frame(chunk({ content: '' }, 'stop')), 'data: [DONE]\n\n']);
  const [a] = await replicas(t, { fail: 'drop', failAfter: 6 });
  const g = await gateway(t, { upstreams: [...upstreamsOf([a!]), { url: b.url, name: 'b', dialect: 'vllm', models: ['sluice-sim'] }], failover: { mid_stream: true } });
  const got = await stream(g.url, chatBody());
  const want = await uninterrupted(a!, chatBody());
  assert.ok(got.done);
  assert.equal(got.text, `${want.text.split(/(?= )/).slice(0, 6).join('')} and the rest`);
  const first = got.chunks[0]!;
  for (const c of got.chunks) {
    assert.equal(c['id'], first['id']);
    assert.equal(c['model'], 'sluice-sim');
    assert.equal(c['created'], first['created']);
  }
  assert.equal(b.bodies[0]!['continue_final_message'], true);
});

test('a replacement answering garbage ends the stream with an error frame; none of the garbage reaches the client', async (t) => {
  const b = await scripted(t, ['data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":" ok"},"finish_reason":null}]}\n\n', 'data: <html>502 Bad Gateway</html>\n\n']);
  const [a] = await replicas(t, { fail: 'drop', failAfter: 4 });
  const g = await gateway(t, { upstreams: [...upstreamsOf([a!]), { url: b.url, name: 'b', dialect: 'vllm', models: ['sluice-sim'] }], failover: { mid_stream: true } });
  const got = await stream(g.url, chatBody());
  assert.ok(!got.done);
  assert.equal(got.error?.['code'], 'sluice_upstream_bad_response');
  assert.ok(!got.raw.includes('<html>'));
  assert.equal(g.logs.at(-1)!.outcome, 'upstream_error');
  assert.deepEqual(g.logs.at(-1)!.failovers?.map((f) => f.to), ['b']);
});

test('a replacement refusing the continuation (HTTP 400) ends the stream with that error, no [DONE]', async (t) => {
  const up = await httpServer(t, (req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'continue_final_message is not supported', type: 'BadRequestError', param: null, code: 400 } }));
    });
  });
  const [a] = await replicas(t, { fail: 'drop', failAfter: 4 });
  const g = await gateway(t, { upstreams: [...upstreamsOf([a!]), { url: up.url, name: 'b', dialect: 'vllm', models: ['sluice-sim'] }], failover: { mid_stream: true } });
  const got = await stream(g.url, chatBody());
  assert.ok(!got.done);
  assert.match(String(got.error?.['message']), /continue_final_message is not supported/);
});

test('a tool call under way is not continued elsewhere', async (t) => {
  // A scripted engine that streams the start of a tool call, then loses its connection.
  const chunk = (delta: Json): string => frame({ id: 'chatcmpl-A', object: 'chat.completion.chunk', created: 1, model: 'sluice-sim', choices: [{ index: 0, delta, logprobs: null, finish_reason: null }] });
  const a = await httpServer(t, (req, res) => {
    if (req.method === 'GET') return void res.end(JSON.stringify({ object: 'list', data: [{ id: 'sluice-sim', object: 'model' }] }));
    req.resume();
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write(chunk({ role: 'assistant', content: '' }) + chunk({ content: 'Let me check.' }));
    res.write(chunk({ tool_calls: [{ id: 'call_1', type: 'function', index: 0, function: { name: 'get_weather', arguments: '' } }] }));
    setTimeout(() => res.socket?.destroy(), 50);
  });
  const [b] = await replicas(t, {});
  const g = await gateway(t, { upstreams: [{ url: a.url, name: 'a', dialect: 'vllm', models: ['sluice-sim'] }, ...upstreamsOf([b!]).map((u) => ({ ...u, name: 'b' }))], failover: { mid_stream: true } });
  const got = await stream(g.url, chatBody());
  assert.ok(!got.done);
  assert.equal(got.error?.['code'], 'sluice_upstream_truncated');
  assert.match(g.logs.at(-1)!.failover_refused ?? '', /^not_exact: a tool call is under way/);
  assert.equal(b!.stats.started, 0);
});

test('a failure before any token reached the client resends the request as it was, to any replica', async (t) => {
  // A sends its role chunk, then drops: nothing of the answer was sent, so B (llama.cpp, no prefill) may take it.
  const [a, b] = await replicas(t, { fail: 'drop', failAfter: 0, ttftMs: 5 }, { dialect: 'llamacpp' });
  const g = await gateway(t, { upstreams: [...upstreamsOf([a!]), { url: b!.url, name: 'b', dialect: 'llamacpp' }], failover: { mid_stream: true } });
  const bSeen = once<{ body: Json }>(b!.events, 'request');
  const got = await stream(g.url, chatBody());
  assert.ok(got.done);
  assert.equal(got.text, (await uninterrupted(a!, chatBody())).text);
  assert.equal((await bSeen).body['continue_final_message'], undefined);
});

test('/v1/ws: a generation over the multiplexed WebSocket fails over the same way', async (t) => {
  const [a, b] = await replicas(t, { fail: 'drop', failAfter: 7 }, {});
  const g = await gateway(t, { upstreams: upstreamsOf([a!, b!]), failover: { mid_stream: true } });
  const ws = await openSocket(t, wsUrl(g.url, '/ws'));
  ws.send({ type: 'create', id: 'x', body: { model: 'sluice-sim', messages: [{ role: 'user', content: 'Hello' }] } });
  await ws.waitFor((m) => m['id'] === 'x' && (m['type'] === 'done' || m['type'] === 'error'));
  assert.deepEqual(ws.of('x').map((r) => r.msg['type']).at(-1), 'done');
  assert.equal(muxText(ws.of('x')), (await uninterrupted(b!, chatBody())).text);
  assert.equal(new Set(ws.of('x').filter((r) => r.msg['type'] === 'chunk').map((r) => (r.msg['data'] as Json)['id'])).size, 1);
  assert.deepEqual(g.logs.at(-1)!.failovers?.map((f) => f.reason), ['connection_lost']);
});

test('a replacement that answers but never sends a token is replaced in turn after timeouts.first_byte_ms', async (t) => {
  const [a, b, c] = await replicas(t, { fail: 'drop', failAfter: 6 }, { ttftMs: 3_000 }, {});
  const g = await gateway(t, { upstreams: upstreamsOf([a!, b!, c!]), failover: { mid_stream: true, max_mid_stream: 2 }, timeouts: { first_byte_ms: 400 } });
  const bAborted = once(b!.events, 'aborted');
  const got = await stream(g.url, chatBody());
  assert.ok(got.done);
  assert.equal(got.text, (await uninterrupted(c!, chatBody())).text);
  assert.deepEqual(g.logs.at(-1)!.failovers?.map((f) => `${f.from}>${f.to}:${f.reason}`), ['a>b:connection_lost', 'b>c:first_byte_timeout']);
  await bAborted; // B's request was aborted, not left generating
});
