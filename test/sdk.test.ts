import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { streamText } from 'ai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { gateway, sim, once } from './helpers/gateway.ts';
import { simToken, seedOf } from '../src/sim/text.ts';

/** The simulator's deterministic answer to a prompt, to compare with what a client assembled. */
function expectedText(promptJson: string, tokens: number): string {
  let s = '';
  const seed = seedOf(promptJson);
  for (let i = 0; i < tokens; i++) s += simToken(i, seed);
  return s;
}

const messages = [{ role: 'user' as const, content: 'Tell me about streaming' }];

test('openai client: chat stream through Sluice, full text and usage when asked', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 5, itlMs: 2, tokens: 12 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }] });
  const client = new OpenAI({ baseURL: g.url, apiKey: 'unused', maxRetries: 0 });
  const stream = await client.chat.completions.create({ model: 'sluice-sim', messages, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let usage: OpenAI.CompletionUsage | undefined | null;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta.content ?? '';
    if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(text, expectedText(JSON.stringify(messages), 12));
  assert.equal(usage?.completion_tokens, 12);

  // Without include_usage the SDK sees no usage chunk at all.
  const plain = await client.chat.completions.create({ model: 'sluice-sim', messages, stream: true });
  let sawUsage = false;
  for await (const chunk of plain) if (chunk.usage) sawUsage = true;
  assert.equal(sawUsage, false);
});

test('openai client: completions stream and non-streamed chat', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 5, itlMs: 2, tokens: 7 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }] });
  const client = new OpenAI({ baseURL: g.url, apiKey: 'unused', maxRetries: 0 });
  const stream = await client.completions.create({ model: 'sluice-sim', prompt: 'Once upon', stream: true, stream_options: { include_usage: true } });
  let text = '';
  let tokens = 0;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.text ?? '';
    if (chunk.usage) tokens = chunk.usage.completion_tokens;
  }
  assert.equal(text, expectedText(JSON.stringify('Once upon'), 7));
  assert.equal(tokens, 7);
  const whole = await client.chat.completions.create({ model: 'sluice-sim', messages });
  assert.equal(whole.choices[0]?.message.content, expectedText(JSON.stringify(messages), 7));
});

test('openai client: AbortController aborts the upstream request', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 20, tokens: 500 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }] });
  const client = new OpenAI({ baseURL: g.url, apiKey: 'unused', maxRetries: 0 });
  const controller = new AbortController();
  const stream = await client.chat.completions.create({ model: 'sluice-sim', messages, stream: true }, { signal: controller.signal });
  const aborted = once<{ tokensSent: number }>(s.events, 'aborted');
  let n = 0;
  try {
    for await (const _ of stream) if (++n === 3) controller.abort();
  } catch (err) {
    // openai-node may end the iteration quietly or raise APIUserAbortError, depending on timing
    assert.ok(err instanceof OpenAI.APIUserAbortError, String(err));
  }
  assert.ok(n < 10, 'the client stopped reading');
  const info = await aborted;
  assert.ok(info.tokensSent < 500);
});

test('openai client: a mid-stream failure raises an error, not a short answer', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 1, tokens: 20, fail: 'drop', failAfter: 4 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }] });
  const client = new OpenAI({ baseURL: g.url, apiKey: 'unused', maxRetries: 0 });
  const stream = await client.chat.completions.create({ model: 'sluice-sim', messages, stream: true });
  await assert.rejects(async () => {
    for await (const _ of stream) {
      // consume
    }
  }, (err: unknown) => err instanceof OpenAI.APIError && /before the answer was complete|mid-stream/.test(err.message));
});

test('openai client: errors before headers surface as the SDK error types', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url }], api_keys: ['sk-correct-key'] });
  const bad = new OpenAI({ baseURL: g.url, apiKey: 'sk-wrong', maxRetries: 0 });
  await assert.rejects(bad.chat.completions.create({ model: 'sluice-sim', messages, stream: true }), OpenAI.AuthenticationError);
  const good = new OpenAI({ baseURL: g.url, apiKey: 'sk-correct-key', maxRetries: 0 });
  await assert.rejects(good.chat.completions.create({ model: 'missing', messages, stream: true }), OpenAI.NotFoundError);
});

test('Vercel AI SDK (openai-compatible provider): streamText gets the full text and usage', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 5, itlMs: 2, tokens: 10 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }] });
  const provider = createOpenAICompatible({ name: 'sluice', baseURL: g.url, apiKey: 'unused', includeUsage: true });
  const result = streamText({ model: provider('sluice-sim'), prompt: 'Tell me about streaming', maxRetries: 0 });
  let text = '';
  for await (const delta of result.textStream) text += delta;
  const usage = await result.usage;
  assert.equal(text.length > 0, true);
  assert.equal(text, expectedText(JSON.stringify([{ role: 'user', content: 'Tell me about streaming' }]), 10));
  assert.equal(usage.outputTokens, 10);
});

test('Vercel AI SDK: completion model streams too', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 5, itlMs: 2, tokens: 6 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }] });
  const provider = createOpenAICompatible({ name: 'sluice', baseURL: g.url, apiKey: 'unused', includeUsage: true });
  const result = streamText({ model: provider.completionModel('sluice-sim'), prompt: 'Once upon', maxRetries: 0 });
  let text = '';
  for await (const delta of result.textStream) text += delta;
  assert.equal(text.split(' ').filter(Boolean).length, 6);
  assert.equal((await result.usage).outputTokens, 6);
});

test('Vercel AI SDK: abortSignal aborts the upstream request', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 20, tokens: 500 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }] });
  const provider = createOpenAICompatible({ name: 'sluice', baseURL: g.url, apiKey: 'unused' });
  const controller = new AbortController();
  const aborted = once<{ tokensSent: number }>(s.events, 'aborted');
  const result = streamText({ model: provider('sluice-sim'), prompt: 'go', abortSignal: controller.signal, maxRetries: 0, onError: () => {} });
  let n = 0;
  try {
    for await (const _ of result.textStream) if (++n === 3) controller.abort();
  } catch {
    // the SDK may surface the abort
  }
  const info = await aborted;
  assert.ok(info.tokensSent < 500);
});
