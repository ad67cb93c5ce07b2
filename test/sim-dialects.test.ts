import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import OpenAI from 'openai';
import type { ChatCompletionStreamParams } from 'openai/resources/chat/completions';
import { gateway, httpServer, post, sim } from './helpers/gateway.ts';
import { ENGINES, fixtureNames, loadFixture, type Engine } from './helpers/replay.ts';
import { assemble, assertOpenAIStream } from './helpers/openai-stream.ts';
import { validateConfig } from '../src/config/load.ts';
import { Registry } from '../src/upstream/registry.ts';
import { seedOf, simToken } from '../src/sim/text.ts';

/**
 * The simulator speaks each engine's dialect as the recordings in test/fixtures/dialects/ show it, answers each
 * engine's fingerprint endpoints so `auto` detection picks the right dialect, and every dialect comes out of Sluice as
 * one clean OpenAI stream, multibyte text included.
 */

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Values that name structure, kept; everything else is reduced to its kind, so shapes can be compared. */
const STRUCTURAL = new Set(['object', 'role', 'type', 'error_type']);

function skeleton(v: unknown, key = '', inError = false): unknown {
  if (typeof v === 'string') return STRUCTURAL.has(key) && !(inError && key === 'type') ? v : key === 'finish_reason' ? (v === '' ? '' : 'F') : v === '' ? '' : 'S';
  if (typeof v === 'number') return 0;
  // vLLM ≤0.11.0 put the full prompt_token_ids list on the first completions chunk (PR #27561); the simulator is 0.11.1+.
  if (Array.isArray(v)) return key === 'prompt_token_ids' ? null : v.length === 0 ? [] : [skeleton(v[0], key, inError)];
  if (isObject(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, skeleton(x, k, inError || k === 'error')]));
  return v;
}

/** Each distinct frame shape in an SSE body (a spaced error frame is told apart from a compact one). */
function shapes(body: string): Set<string> {
  const out = new Set<string>();
  for (const f of body.split('\n\n')) {
    if (!f) continue;
    assert.ok(f.startsWith('data: '), f);
    const payload = f.slice(6);
    if (payload === '[DONE]') {
      out.add('[DONE]');
      continue;
    }
    const spaced = payload.startsWith('{"error": ') ? 'spaced ' : '';
    out.add(spaced + JSON.stringify(skeleton(JSON.parse(payload))));
  }
  return out;
}

/** The simulator request equivalent to a fixture's: same body, the simulator's model, knobs for what it shows. */
function simRequest(name: string, request: Json): Json {
  const knobs: Record<string, Json> = {
    'chat-text': {},
    'chat-tools': { tools: true },
    'chat-reasoning': { reasoning: 2 },
    'completions-text': {},
    'chat-error-midstream': { fail: 'error_frame', fail_after: 2 },
  };
  // 6 tokens: a recorded max_tokens of 4 cuts the answer (`length`), a larger one lets it end (`stop`).
  return { ...request, model: 'sluice-sim', sim: { tokens: 6, ...knobs[name] } };
}

for (const engine of ENGINES) {
  test(`sim --dialect ${engine}: every frame shape of the recorded ${engine} streams, with its headers`, async (t) => {
    const s = await sim(t, { dialect: engine, timing: { ttftMs: 0, itlMs: 0 } });
    for (const name of fixtureNames(engine)) {
      if (name.includes('context-length') || name.includes('validation')) continue; // prompt-dependent errors
      const f = loadFixture(engine, name);
      const res = await post(`${s.url}${f.endpoint.slice(3)}`, simRequest(name, f.request));
      assert.equal(res.status, 200);
      const header = (k: string): string | undefined => Object.entries(f.headers).find(([h]) => h.toLowerCase() === k)?.[1];
      assert.equal(res.headers.get('content-type'), header('content-type'), `${name}: content-type`);
      assert.equal(res.headers.get('server') ?? undefined, header('server'), `${name}: server header`);
      const simShapes = shapes(await res.text());
      const recorded = shapes(f.body.toString('utf8'));
      assert.deepEqual([...recorded].filter((x) => !simShapes.has(x)), [], `${engine} ${name}: recorded shapes the simulator does not write`);
      assert.deepEqual([...simShapes].filter((x) => !recorded.has(x)), [], `${engine} ${name}: shapes the recording does not have`);
    }
  });
}

test('auto detection picks each engine from what it exposes, logs the choice, and never probes a server it does not know', async (t) => {
  const expected: Record<Engine, RegExp> = {
    vllm: /owned_by "vllm"/,
    sglang: /owned_by "sglang"/,
    llamacpp: /Server: llama\.cpp/,
    ollama: /\/api\/version/,
    tgi: /\/info has model_id and docker_label/,
  };
  for (const engine of ENGINES) {
    const s = await sim(t, { dialect: engine });
    const lines: string[] = [];
    const registry = new Registry(validateConfig({ upstreams: [{ url: s.url, name: engine }] }), {}, (l) => lines.push(l));
    t.after(() => registry.close());
    await registry.start(0);
    assert.equal(registry.upstreams[0]?.activeDialect, engine);
    assert.equal(lines.length, 1);
    assert.match(lines[0] ?? '', new RegExp(`^upstream ${engine} speaks ${engine} \\(dialect auto: `));
    assert.match(lines[0] ?? '', expected[engine]);
  }

  // A server whose model cards lack owned_by is relayed as OpenAI, and only /v1/models is asked.
  const paths: string[] = [];
  const up = await httpServer(t, (req, res) => {
    paths.push(req.url ?? '');
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ data: [{ id: 'm' }] }));
  });
  const lines: string[] = [];
  const registry = new Registry(validateConfig({ upstreams: [{ url: up.url }] }), {}, (l) => lines.push(l));
  t.after(() => registry.close());
  await registry.start(0);
  assert.equal(registry.upstreams[0]?.activeDialect, 'openai');
  assert.deepEqual(paths, ['/v1/models']);
  assert.match(lines[0] ?? '', /speaks openai/);

  // A configured dialect is used as it is: no detection.
  const explicit = new Registry(validateConfig({ upstreams: [{ url: up.url, dialect: 'tgi' }] }), {}, (l) => lines.push(l));
  t.after(() => explicit.close());
  await explicit.start(0);
  assert.equal(explicit.upstreams[0]?.activeDialect, 'tgi');
  assert.equal(lines.length, 1);
});

const messages = [{ role: 'user' as const, content: 'Tell me about streaming' }];
function expectedText(promptJson: string, tokens: number): string {
  let s = '';
  for (let i = 0; i < tokens; i++) s += simToken(i, seedOf(promptJson));
  return s;
}

for (const engine of ENGINES) {
  test(`${engine} simulator behind Sluice (auto): text with multibyte characters, logprobs, n, tool calls, errors, completions`, async (t) => {
    const s = await sim(t, { dialect: engine, timing: { ttftMs: 0, itlMs: 0, tokens: 60 } });
    const g = await gateway(t, { upstreams: [{ url: s.url }] });
    const client = new OpenAI({ baseURL: g.url, apiKey: 'unused', maxRetries: 0 });
    const want = expectedText(JSON.stringify(messages), 60);
    assert.match(want, /☕.*日本語.*🚀/u, 'the answer has 3- and 4-byte characters');

    // Text and usage, raw bytes checked too.
    const raw = await (await post(`${g.url}/chat/completions`, { model: 'sluice-sim', messages, stream: true, stream_options: { include_usage: true }, logprobs: true, top_logprobs: 2 })).text();
    const { chunks } = assertOpenAIStream(raw, 'chat');
    assert.equal(assemble(chunks).content[0], want);
    assert.equal((chunks.at(-1)?.['usage'] as Json | undefined)?.['completion_tokens'], 60);
    const withLogprobs = chunks.filter((c) => isObject((c['choices'] as Json[])[0]?.['logprobs']));
    assert.equal(withLogprobs.length, 60, 'each token carries its logprobs');

    // n=2 where the engine supports it; engines that stream one choice still end cleanly.
    const n2 = await (await post(`${g.url}/chat/completions`, { model: 'sluice-sim', messages, stream: true, n: 2 })).text();
    const two = assemble(assertOpenAIStream(n2, 'chat').chunks);
    const choices = engine === 'ollama' || engine === 'tgi' ? 1 : 2;
    assert.equal(two.content.length, choices);
    for (const c of two.content) assert.equal(c, want);

    // Tool call, through the SDK's own stream helper.
    const params: ChatCompletionStreamParams & { sim: Json } = {
      model: 'sluice-sim',
      messages,
      tools: [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: {} } } }],
      sim: { tools: true }, // passed through by Sluice to the simulator
    };
    const final = await client.chat.completions.stream(params).finalChatCompletion();
    const call = final.choices[0]?.message.tool_calls?.[0];
    assert.ok(call?.type === 'function');
    assert.equal(call.function.name, 'lookup');
    assert.deepEqual(JSON.parse(call.function.arguments), { city: 'Paris', unit: 'celsius' });
    assert.equal(final.choices[0]?.finish_reason, 'tool_calls');

    // Reasoning (TGI has no reasoning field: its thinking is text).
    const reasoning = await (await post(`${g.url}/chat/completions`, { model: 'sluice-sim', messages, stream: true, max_tokens: 8, sim: { reasoning: 3 } })).text();
    const r = assemble(assertOpenAIStream(reasoning, 'chat').chunks);
    assert.equal(r.finish[0], 'length');
    if (engine !== 'tgi') assert.equal(r.reasoning[0]?.split(' ').length, 3);

    // An engine failure mid-stream is an SDK error.
    const failing = await client.chat.completions.create({ model: 'sluice-sim', messages, stream: true, sim: { fail: 'error_frame', fail_after: 3 } } as OpenAI.ChatCompletionCreateParamsStreaming);
    await assert.rejects(async () => {
      for await (const _ of failing) {
        // consume
      }
    }, OpenAI.APIError);

    // The Responses API where the engine has one (TGI has none: its 404 is the SDK's NotFoundError).
    if (engine === 'tgi') {
      await assert.rejects(client.responses.create({ model: 'sluice-sim', input: 'Hello', stream: true }), OpenAI.NotFoundError);
    } else {
      const response = await client.responses.stream({ model: 'sluice-sim', input: 'Hello' }).finalResponse();
      assert.equal(response.status, 'completed');
      assert.equal(response.output_text, expectedText(JSON.stringify('Hello'), 60));
    }

    // Completions.
    const completion = await (await post(`${g.url}/completions`, { model: 'sluice-sim', prompt: 'Once upon', stream: true, max_tokens: 5 })).text();
    const text = assemble(assertOpenAIStream(completion, 'completion').chunks);
    assert.equal(text.content[0], expectedText(JSON.stringify('Once upon'), 5));
    assert.equal(text.finish[0], 'length');
  });
}

test('sluice sim --dialect: starts the named engine, rejects an unknown one', async () => {
  const bin = new URL('../bin/sluice.mjs', import.meta.url).pathname;
  const bad = spawn(process.execPath, [bin, 'sim', '--dialect', 'nope'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  bad.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((r) => bad.on('close', r));
  assert.equal(code, 2);
  assert.match(stderr, /--dialect: 'nope' is not one of vllm, sglang, llamacpp, ollama, tgi/);

  const good = spawn(process.execPath, [bin, 'sim', '--dialect', 'tgi', '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      good.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /listening on (http:\/\/\S+\/v1), speaking tgi/.exec(out);
        if (m?.[1]) resolve(m[1]);
      });
      good.on('close', () => reject(new Error(`exited: ${out}`)));
    });
    const info = (await (await fetch(url.replace(/\/v1$/, '/info'))).json()) as Json;
    assert.equal(info['docker_label'], 'sha-a094729');
  } finally {
    good.kill('SIGTERM');
  }
});
