import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { gateway, once, sim } from './helpers/gateway.ts';

// The Responses API's background mode over the resumable-stream machinery (issue 15), driven by the openai Node
// client's own calls: responses.create({ background: true, stream: true }), responses.retrieve(id, { stream: true,
// starting_after }), responses.retrieve(id), responses.cancel(id).

const SIM = (tokens: number, itl: number) => ({ sim: { ttft_ms: 0, itl_ms: itl, tokens, jitter_ms: 0 } });
const KEY = 'sk-responses-owner';
const OTHER = 'sk-responses-other';

type Event = OpenAI.Responses.ResponseStreamEvent;

/** The text of a Responses stream's deltas. */
const deltas = (evs: Event[]): string => evs.map((e) => (e.type === 'response.output_text.delta' ? e.delta : '')).join('');

test('background + stream: the client leaves after K events and resumes with retrieve(id, { stream: true, starting_after })', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url, dialect: 'vllm' }], api_keys: [KEY, OTHER] });
  const client = new OpenAI({ baseURL: g.url, apiKey: KEY, maxRetries: 0 });
  const params = { model: 'sluice-sim', input: 'Hello', ...SIM(30, 20) } as unknown as OpenAI.Responses.ResponseCreateParamsStreaming;

  // The uninterrupted answer, for comparison.
  const plain = await client.responses.create({ ...params, stream: true });
  const whole: Event[] = [];
  for await (const e of plain) whole.push(e);
  const wholeText = deltas(whole);
  assert.ok(wholeText.length > 0);

  const stream = await client.responses.create({ ...params, stream: true, background: true, store: true });
  const got: Event[] = [];
  for await (const e of stream) {
    got.push(e);
    if (got.length === 6) break; // leaves: the SDK aborts its request
  }
  const created = got[0];
  assert.equal(created?.type, 'response.created');
  const id = created.type === 'response.created' ? created.response.id : '';
  assert.match(id, /^resp_[A-Za-z0-9_-]{24}$/, 'the gateway\'s own unguessable id');
  assert.deepEqual(got.map((e) => e.sequence_number), [0, 1, 2, 3, 4, 5]);
  const last = got.at(-1)?.sequence_number ?? -1;

  // Another key does not find it.
  const other = new OpenAI({ baseURL: g.url, apiKey: OTHER, maxRetries: 0 });
  await assert.rejects(other.responses.retrieve(id), (e: unknown) => e instanceof OpenAI.NotFoundError);

  const rest = await client.responses.retrieve(id, { stream: true, starting_after: last });
  for await (const e of rest) got.push(e);
  assert.deepEqual(got.map((e) => e.sequence_number), got.map((_, i) => i), 'every event exactly once, in order');
  assert.equal(deltas(got), wholeText);
  assert.equal(got.at(-1)?.type, 'response.completed');

  const final = await client.responses.retrieve(id);
  assert.equal(final.id, id);
  assert.equal(final.status, 'completed');
  assert.equal(final.output_text, wholeText);
  assert.equal(s.stats.aborted, 0, 'the engine was never aborted: background responses run to their end');
});

test('background without stream: queued at once, retrieved when done, from any cursor', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url, dialect: 'vllm' }] });
  const client = new OpenAI({ baseURL: g.url, apiKey: 'unused', maxRetries: 0 });
  const completed = once(s.events, 'completed');
  const r = await client.responses.create({ model: 'sluice-sim', input: 'Hello', background: true, ...SIM(10, 10) } as unknown as OpenAI.Responses.ResponseCreateParamsNonStreaming);
  assert.equal(r.status, 'queued');
  assert.match(r.id, /^resp_/);
  await completed;
  const final = await client.responses.retrieve(r.id);
  assert.equal(final.status, 'completed');
  const all: Event[] = [];
  for await (const e of await client.responses.retrieve(r.id, { stream: true })) all.push(e);
  assert.equal(deltas(all), final.output_text);
  const tail: Event[] = [];
  for await (const e of await client.responses.retrieve(r.id, { stream: true, starting_after: all.length - 2 })) tail.push(e);
  assert.deepEqual(tail.map((e) => e.type), ['response.completed']);
});

test('responses.cancel stops a background response at once; store: false is refused', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url, dialect: 'vllm' }] });
  const client = new OpenAI({ baseURL: g.url, apiKey: 'unused', maxRetries: 0 });
  const started = once(s.events, 'request');
  const r = await client.responses.create({ model: 'sluice-sim', input: 'Hello', background: true, ...SIM(400, 20) } as unknown as OpenAI.Responses.ResponseCreateParamsNonStreaming);
  await started;
  const aborted = once(s.events, 'aborted');
  const c = await client.responses.cancel(r.id);
  assert.equal(c.status, 'cancelled');
  await aborted;
  assert.equal((await client.responses.retrieve(r.id)).status, 'cancelled');
  await assert.rejects(
    client.responses.create({ model: 'sluice-sim', input: 'Hello', background: true, store: false }),
    (e: unknown) => e instanceof OpenAI.BadRequestError,
  );
  await assert.rejects(client.responses.retrieve(`resp_${'x'.repeat(24)}`), (e: unknown) => e instanceof OpenAI.NotFoundError);
});
