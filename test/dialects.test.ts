import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { gateway, post } from './helpers/gateway.ts';
import { ENGINES, fixtureNames, loadFixture, replayUpstream, type Engine, type Fixture } from './helpers/replay.ts';
import { assemble, assertOpenAIStream } from './helpers/openai-stream.ts';

/**
 * Every recorded engine transcript (test/fixtures/dialects/<engine>/<name>.txt, byte-exact as each engine writes it)
 * is replayed by a real HTTP upstream and relayed by Sluice; the bytes Sluice sends are compared with
 * <name>.sluice.txt. Run with SLUICE_UPDATE_FIXTURES=1 to rewrite those after a deliberate change (then read the diff).
 */

const UPDATE = process.env['SLUICE_UPDATE_FIXTURES'] === '1';

/** Ids Sluice mints (Ollama's collide, TGI's are empty) differ per run; the golden files hold a placeholder. */
function stable(engine: Engine, text: string): string {
  if (engine !== 'ollama' && engine !== 'tgi') return text;
  return text.replace(/"id":"(chatcmpl|cmpl)-[0-9a-f]{32}"/g, '"id":"$1-MINTED"').replace(/"id":"call_[0-9a-f]{24}"/g, '"id":"call_MINTED"');
}

const goldenPath = (f: Fixture): URL => new URL(`fixtures/dialects/${f.engine}/${f.name}.sluice.txt`, import.meta.url);
const path = (f: Fixture): string => f.endpoint.slice(3);
const kindOf = (f: Fixture): 'chat' | 'completion' => (f.endpoint === '/v1/chat/completions' ? 'chat' : 'completion');

for (const engine of ENGINES) {
  for (const name of fixtureNames(engine)) {
    test(`${engine} ${name}: replayed through Sluice, clients get clean OpenAI bytes (explicit and auto dialect, any read size)`, async (t) => {
      const f = loadFixture(engine, name);
      const up = await replayUpstream(t, f);
      const g = await gateway(t, { upstreams: [{ url: up.url, dialect: engine }] });
      const res = await post(`${g.url}${path(f)}`, f.request);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), 'text/event-stream; charset=utf-8');
      const text = await res.text();
      assertOpenAIStream(text, kindOf(f));
      const golden = goldenPath(f);
      if (UPDATE) writeFileSync(golden, stable(engine, text));
      assert.ok(existsSync(golden), `${golden.pathname} is missing; SLUICE_UPDATE_FIXTURES=1 writes it`);
      assert.equal(stable(engine, text), readFileSync(golden, 'utf8'));

      // The same through `auto` detection and an upstream that writes 3 bytes at a time.
      const sliced = await replayUpstream(t, f, { sliceBytes: 3 });
      const g2 = await gateway(t, { upstreams: [{ url: sliced.url }] });
      const again = await (await post(`${g2.url}${path(f)}`, f.request)).text();
      assert.equal(stable(engine, again), stable(engine, text));
      assert.ok(sliced.requests[0] !== undefined);
      // vLLM and SGLang are also asked for usage on every chunk, so a cut stream is metered exactly (docs/metering.md).
      const continuous = engine === 'vllm' || engine === 'sglang' ? { continuous_usage_stats: true } : {};
      assert.deepEqual(sliced.requests[0]['stream_options'], { include_usage: true, ...continuous }, 'usage is always asked upstream');
    });
  }
}

test('vLLM gets no normalizer: its bytes pass through unchanged, extras included', async (t) => {
  for (const name of ['chat-text', 'chat-tools', 'chat-reasoning', 'completions-text']) {
    const f = loadFixture('vllm', name);
    const up = await replayUpstream(t, f);
    const g = await gateway(t, { upstreams: [{ url: up.url, dialect: 'vllm' }] });
    assert.equal(await (await post(`${g.url}${path(f)}`, f.request)).text(), f.body.toString('utf8'), name);
  }
});

test('usage the client did not ask for is metered and stripped, whether the engine puts it on its own chunk, on the last token (TGI) or always (llama.cpp completions)', async (t) => {
  for (const engine of ENGINES) {
    for (const name of ['chat-text', 'completions-text']) {
      const f = loadFixture(engine, name);
      const usage = [...f.body.toString('utf8').matchAll(/"usage":\{[^}]*"completion_tokens":(\d+)/g)].at(-1)?.[1]; // the last: Ollama repeats zeros before
      const up = await replayUpstream(t, f);
      const g = await gateway(t, { upstreams: [{ url: up.url, dialect: engine }] });
      const { stream_options: _, ...request } = f.request;
      const text = await (await post(`${g.url}${path(f)}`, request)).text();
      assertOpenAIStream(text, kindOf(f));
      assert.ok(!text.includes('"usage":{'), `${engine} ${name}: no usage to a client that did not ask`);
      await new Promise((r) => setImmediate(r));
      assert.equal(g.logs.at(-1)?.tokens_out, Number(usage), `${engine} ${name}: metered`);
    }
  }
});

test('engines that end without [DONE] get one; a [DONE] with no finish (TGI 2.4.0 dropping an error) is a truncated stream', async (t) => {
  for (const engine of ['llamacpp', 'ollama'] as const) {
    const f = loadFixture(engine, 'chat-text');
    const body = Buffer.from(f.body.toString('utf8').replace('data: [DONE]\n\n', ''));
    const up = await replayUpstream(t, { ...f, body });
    const g = await gateway(t, { upstreams: [{ url: up.url, dialect: engine }] });
    const text = await (await post(`${g.url}/chat/completions`, f.request)).text();
    assertOpenAIStream(text, 'chat');
    assert.ok(text.endsWith('data: [DONE]\n\n'), engine);
  }
  const tgi = loadFixture('tgi', 'chat-text');
  const up = await replayUpstream(t, { ...tgi, body: Buffer.from('data: [DONE]\n\n') });
  const g = await gateway(t, { upstreams: [{ url: up.url, dialect: 'tgi' }] });
  const text = await (await post(`${g.url}/chat/completions`, tgi.request)).text();
  const { error } = assertOpenAIStream(text, 'chat');
  assert.equal(error?.['code'], 'sluice_upstream_truncated');
});

test('errors: in-band engine errors become OpenAI error frames with a fitting type and code', async (t) => {
  const cases: Array<[Engine, string, string, string | null]> = [
    ['vllm', 'chat-error-midstream', 'server_error', null],
    ['sglang', 'chat-error-context-length', 'invalid_request_error', 'context_length_exceeded'],
    ['sglang', 'chat-error-midstream', 'invalid_request_error', '400'],
    ['llamacpp', 'chat-error-midstream', 'server_error', '500'],
    ['ollama', 'chat-error-midstream', 'server_error', 'upstream_error'],
    ['tgi', 'chat-error-midstream', 'server_error', 'generation'],
    ['tgi', 'chat-error-validation', 'invalid_request_error', 'context_length_exceeded'],
  ];
  for (const [engine, name, type, code] of cases) {
    const f = loadFixture(engine, name);
    const up = await replayUpstream(t, f);
    const g = await gateway(t, { upstreams: [{ url: up.url, dialect: engine }] });
    const { error } = assertOpenAIStream(await (await post(`${g.url}/chat/completions`, f.request)).text(), 'chat');
    assert.equal(error?.['type'], type, `${engine} ${name}`);
    assert.equal(error?.['code'], code, `${engine} ${name}`);
    await new Promise((r) => setImmediate(r));
    assert.equal(g.logs.at(-1)?.outcome, 'upstream_error');
  }
});

test('errors before headers: each engine body and status becomes OpenAI error JSON with a status clients map', async (t) => {
  const cases: Array<[number, string, string, number, string]> = [
    [400, '{"object":"error","message":"bad temperature","type":"BadRequestError","param":null,"code":400}', 'sglang', 400, 'invalid_request_error'],
    [400, '{"error":{"code":400,"message":"the request exceeds the available context size, try increasing it","type":"exceed_context_size_error","n_prompt_tokens":9000,"n_ctx":8192}}', 'llamacpp', 400, 'invalid_request_error'],
    [404, '{"error":{"message":"model \\"x\\" not found, try pulling it first","type":"not_found_error","param":null,"code":null}}\n', 'ollama', 404, 'not_found_error'],
    [422, '{"error":"Input validation error: `temperature` must be strictly positive","error_type":"validation"}', 'tgi', 400, 'invalid_request_error'],
  ];
  for (const [status, body, engine, want, type] of cases) {
    const f = { ...loadFixture(engine as Engine, 'chat-text'), status, headers: { 'content-type': 'application/json' }, body: Buffer.from(body) };
    const up = await replayUpstream(t, f);
    const g = await gateway(t, { upstreams: [{ url: up.url, dialect: engine as Engine }] });
    const res = await post(`${g.url}/chat/completions`, f.request);
    assert.equal(res.status, want, engine);
    const e = ((await res.json()) as { error: Record<string, unknown> }).error;
    assert.equal(e['type'], type, engine);
    assert.ok(typeof e['message'] === 'string' && e['message'].length > 0);
    if (engine === 'llamacpp') assert.equal(e['code'], 'context_length_exceeded');
  }
});

test('reasoning_field maps reasoning_content ↔ reasoning for every engine; strip_vendor_fields drops engine extras', async (t) => {
  for (const engine of ['sglang', 'llamacpp', 'ollama', 'vllm'] as const) {
    const f = loadFixture(engine, 'chat-reasoning');
    const up = await replayUpstream(t, f);
    for (const field of ['reasoning_content', 'reasoning', 'both'] as const) {
      const g = await gateway(t, { upstreams: [{ url: up.url, dialect: engine }], reasoning_field: field });
      const text = await (await post(`${g.url}/chat/completions`, f.request)).text();
      const { chunks } = assertOpenAIStream(text, 'chat');
      const deltas = chunks.flatMap((c) => (c['choices'] as Array<{ delta: Record<string, unknown> }>).map((ch) => ch.delta));
      const withReasoning = deltas.filter((d) => 'reasoning' in d || 'reasoning_content' in d);
      assert.equal(withReasoning.length, 2, `${engine} ${field}`);
      for (const d of withReasoning) {
        assert.equal('reasoning_content' in d, field !== 'reasoning', `${engine} ${field}`);
        assert.equal('reasoning' in d, field !== 'reasoning_content', `${engine} ${field}`);
      }
      assert.equal(assemble(chunks).reasoning[0], 'The user wants a greeting.');
    }
  }
  const extras: Array<[Engine, string, RegExp]> = [
    ['vllm', 'chat-text', /stop_reason|token_ids/],
    ['vllm', 'completions-text', /prompt_token_ids|stop_reason/],
    ['sglang', 'chat-tools', /matched_stop/],
    ['llamacpp', 'chat-text', /timings/],
  ];
  for (const [engine, name, extra] of extras) {
    const f = loadFixture(engine, name);
    const up = await replayUpstream(t, f);
    const keep = await gateway(t, { upstreams: [{ url: up.url, dialect: engine }] });
    assert.match(await (await post(`${keep.url}${path(f)}`, f.request)).text(), extra, `${engine}: vendor fields kept by default`);
    const strip = await gateway(t, { upstreams: [{ url: up.url, dialect: engine }], strip_vendor_fields: true });
    const text = await (await post(`${strip.url}${path(f)}`, f.request)).text();
    assertOpenAIStream(text, kindOf(f));
    assert.doesNotMatch(text, extra, `${engine}: stripped`);
  }
});
