import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { ResponsesEventFiller } from '../src/openai/dialects/responses-events.ts';
import { gateway, post } from './helpers/gateway.ts';
import { pythonWithOpenAI, runPython } from './helpers/python-openai.ts';
import { loadResponsesFixture, replayUpstream, type Engine, type Fixture } from './helpers/replay.ts';

/**
 * `/v1/responses` streams from every engine reach the OpenAI SDKs as OpenAI's (issue 18): llama.cpp's stream (real
 * bytes from llama-server 80fb11a) has no `sequence_number`, no `output` or `model` in `response.created` and no
 * `output_index`/`content_index`, and both SDKs' `responses.stream()` fail on it as it is; through Sluice they read the
 * answer. Streams that are OpenAI-shaped already (vLLM's, the simulator's) pass byte for byte.
 */

type Json = Record<string, unknown>;

/** The `event:` names and parsed data of a Responses stream body. */
function events(body: string): Array<{ event: string; data: Json }> {
  return body
    .split('\n\n')
    .filter((b) => b.includes('data: '))
    .map((b) => {
      const event = /^event: (.*)$/m.exec(b)?.[1] ?? '';
      const data = JSON.parse(/^data: (.*)$/m.exec(b)?.[1] ?? 'null') as Json;
      return { event, data };
    });
}

async function sluiceInFront(t: import('node:test').TestContext, f: Fixture, dialect: Engine | 'auto' = 'auto') {
  const up = await replayUpstream(t, f);
  const g = await gateway(t, { upstreams: [{ url: up.url, dialect }] });
  return { g, up, model: f.request['model'] as string };
}

test('llama.cpp Responses stream through Sluice: numbered events, response.created with output [] and model', async (t) => {
  const f = loadResponsesFixture('llamacpp-80fb11a');
  const { g, model } = await sluiceInFront(t, f);
  const res = await post(`${g.url}/responses`, { model, input: 'Say hello.', stream: true });
  assert.equal(res.status, 200);
  const evs = events(await res.text());
  const upstream = events(f.body.toString('utf8'));
  assert.deepEqual(evs.map((e) => e.event), upstream.map((e) => e.event), 'the same events, in order, none added or dropped');
  assert.deepEqual(evs.map((e) => e.data['sequence_number']), evs.map((_, i) => i));
  const created = evs[0]?.data['response'] as Json;
  assert.deepEqual(created['output'], []);
  assert.equal(created['model'], 'tiny-llama');
  assert.equal(typeof created['created_at'], 'number');
  const deltas = evs.filter((e) => e.event === 'response.output_text.delta');
  assert.ok(deltas.every((e) => e.data['output_index'] === 0 && e.data['content_index'] === 0 && Array.isArray(e.data['logprobs'])));
  const completed = evs.at(-1)?.data['response'] as Json;
  assert.equal(completed['created_at'], 1795979539, "the engine's own values are kept");
  assert.equal(completed['model'], 'tiny-llama');
  assert.ok('timings' in (evs.at(-1)?.data ?? {}), "llama.cpp's vendor field is kept");
});

test("openai-node's responses.stream() reads llama.cpp's Responses stream through Sluice", async (t) => {
  const f = loadResponsesFixture('llamacpp-80fb11a');
  const { g, up, model } = await sluiceInFront(t, f);
  const client = new OpenAI({ baseURL: g.url, apiKey: 'unused', maxRetries: 0 });
  const stream = client.responses.stream({ model, input: 'Say hello.' });
  let text = '';
  stream.on('response.output_text.delta', (e) => (text += e.delta));
  const final = await stream.finalResponse();
  assert.equal(text, 'B+99');
  assert.equal(final.output_text, 'B+99');
  assert.equal(final.model, 'tiny-llama');
  assert.equal(final.usage?.output_tokens, 4);
  assert.equal(g.logs[0]?.tokens_out, 4);

  // The same bytes straight from the engine: what users saw before.
  const direct = new OpenAI({ baseURL: up.url, apiKey: 'unused', maxRetries: 0 });
  await assert.rejects(direct.responses.stream({ model, input: 'Say hello.' }).finalResponse());
});

for (const dialect of ['vllm', 'llamacpp', 'sglang', 'ollama'] as const) {
  test(`an OpenAI-shaped Responses stream passes byte for byte (upstream dialect ${dialect})`, async (t) => {
    const f = loadResponsesFixture('sim-openai');
    const { g, model } = await sluiceInFront(t, f, dialect);
    const res = await post(`${g.url}/responses`, { model, input: 'Say hello.', stream: true });
    assert.equal(await res.text(), f.body.toString('utf8'));
  });
}

test('the filler numbers items and parts, fills a terminal output from the finished items, and keeps present values', () => {
  const fill = new ResponsesEventFiller('asked-model');
  const ev = (type: string, o: Json): Json => JSON.parse(fill.event(type, JSON.stringify({ type, ...o }))) as Json;
  const created = ev('response.created', { response: { id: 'r', status: 'in_progress', model: 'engine-model' } });
  assert.equal(created['sequence_number'], 0);
  assert.equal((created['response'] as Json)['model'], 'engine-model', 'a model the engine names is kept');
  assert.deepEqual((created['response'] as Json)['output'], []);
  assert.equal(ev('response.output_item.added', { item: { id: 'rs', type: 'reasoning', summary: [] } })['output_index'], 0);
  const reasoning = ev('response.reasoning_text.delta', { item_id: 'rs', delta: 'hm' });
  assert.deepEqual([reasoning['output_index'], reasoning['content_index']], [0, 0]);
  ev('response.output_item.done', { item: { id: 'rs', type: 'reasoning', summary: [] } });
  assert.equal(ev('response.output_item.added', { item: { id: 'msg', type: 'message', content: [] } })['output_index'], 1);
  const parts = [ev('response.content_part.added', { item_id: 'msg', part: { type: 'output_text', text: '' } }), ev('response.content_part.added', { item_id: 'msg', part: { type: 'refusal', refusal: '' } })];
  assert.deepEqual(parts.map((p) => [p['output_index'], p['content_index']]), [[1, 0], [1, 1]]);
  assert.deepEqual((parts[0]?.['part'] as Json)['annotations'], []);
  const delta = ev('response.output_text.delta', { item_id: 'msg', content_index: 0, delta: 'Hi' });
  assert.deepEqual([delta['output_index'], delta['content_index'], delta['logprobs']], [1, 0, []], 'a content_index the engine sent is kept');
  ev('response.output_item.done', { item: { id: 'msg', type: 'message', content: [{ type: 'output_text', text: 'Hi' }] } });
  const done = ev('response.completed', { response: { id: 'r', status: 'completed' } });
  const r = done['response'] as Json;
  assert.equal(done['sequence_number'], 9);
  assert.equal(r['model'], 'asked-model');
  assert.deepEqual((r['output'] as Json[]).map((i) => i['id']), ['rs', 'msg']);
  assert.equal(r['created_at'], (created['response'] as Json)['created_at']);
  const numbered = JSON.stringify({ type: 'response.output_text.delta', sequence_number: 3, delta: 'x' });
  assert.equal(fill.event('response.output_text.delta', numbered), numbered, 'an event the engine numbered is passed on as it is');
});

const PY_STREAM = `
import json, sys
from openai import OpenAI
client = OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0)
text = ""
with client.responses.stream(model=sys.argv[2], input="Say hello.") as stream:
    for event in stream:
        if event.type == "response.output_text.delta":
            text += event.delta
    final = stream.get_final_response()
print(json.dumps({"text": text, "output_text": final.output_text, "model": final.model, "output_tokens": final.usage.output_tokens}))
`;

const python = pythonWithOpenAI();

test("openai-python's responses.stream() reads llama.cpp's Responses stream through Sluice, and fails on it direct", { skip: python === null ? 'openai-python is not installed (scripts/setup.sh puts it in .venv)' : false }, async (t) => {
  const f = loadResponsesFixture('llamacpp-80fb11a');
  const { g, up, model } = await sluiceInFront(t, f);
  const py = python as string;
  const through = await runPython(py, PY_STREAM, [g.url, model]);
  assert.equal(through.code, 0, through.stderr);
  assert.deepEqual(JSON.parse(through.stdout), { text: 'B+99', output_text: 'B+99', model: 'tiny-llama', output_tokens: 4 });
  // The same bytes straight from the engine: what users saw before (AttributeError on the missing `output`).
  const direct = await runPython(py, PY_STREAM, [up.url, model]);
  assert.notEqual(direct.code, 0);
  assert.match(direct.stderr, /AttributeError|Error/);
});
