import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { jsonSchema, streamText, tool } from 'ai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { gateway } from './helpers/gateway.ts';
import { ENGINES, loadFixture, replayUpstream, type Engine } from './helpers/replay.ts';

/**
 * The real openai client and the Vercel AI SDK consume every engine's recorded stream through Sluice exactly as they
 * consume vLLM's: text, reasoning, tool calls assembled by the SDKs' own stream helpers, usage, and errors raised as
 * the SDKs' error types.
 */

/** Serves one fixture and returns an OpenAI client and AI SDK provider pointed at a gateway in front of it. */
async function clients(t: import('node:test').TestContext, engine: Engine, name: string, dialect: Engine | 'auto' = 'auto') {
  const f = loadFixture(engine, name);
  const up = await replayUpstream(t, f);
  const g = await gateway(t, { upstreams: [{ url: up.url, dialect }] });
  const openai = new OpenAI({ baseURL: g.url, apiKey: 'unused', maxRetries: 0 });
  const provider = createOpenAICompatible({ name: 'sluice', baseURL: g.url, apiKey: 'unused', includeUsage: true });
  return { f, openai, provider, model: f.request['model'] as string, messages: f.request['messages'] as OpenAI.ChatCompletionMessageParam[] };
}

const weatherTool: OpenAI.ChatCompletionTool = {
  type: 'function',
  function: { name: 'get_weather', description: 'Get the current weather for a city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } },
};

/** The keys of the message openai-node's stream helper assembles from vLLM's recordings: every engine must match. */
const VLLM_MESSAGE_KEYS = ['content', 'parsed', 'refusal', 'role'];
const messageKeys = (m: object): string[] => Object.keys(m).sort();

/** What each recording says: its answer text, and the usage it reports. */
const TEXT: Record<Engine, { chat: string; completion: string; completionTokens: number }> = {
  vllm: { chat: 'Hello there!', completion: ' Paris. It is', completionTokens: 4 },
  sglang: { chat: 'Hello there!', completion: ' Paris. It is', completionTokens: 4 },
  llamacpp: { chat: 'Hello there!', completion: ' Paris.', completionTokens: 3 },
  ollama: { chat: 'Hello there!', completion: ' Paris.', completionTokens: 3 },
  tgi: { chat: 'Hello there!', completion: ' Paris. It is', completionTokens: 4 },
};

for (const engine of ENGINES) {
  test(`openai client, ${engine}: chat text and usage through the stream helper; completions text`, async (t) => {
    const { openai, model, messages } = await clients(t, engine, 'chat-text');
    const stream = openai.chat.completions.stream({ model, messages, stream_options: { include_usage: true } });
    const final = await stream.finalChatCompletion();
    assert.equal(final.choices[0]?.message.content, TEXT[engine].chat);
    assert.equal(final.choices[0]?.message.role, 'assistant');
    assert.deepEqual(messageKeys(final.choices[0]?.message ?? {}), VLLM_MESSAGE_KEYS, 'no extra null fields (SGLang), as vLLM');
    assert.equal(final.choices[0]?.finish_reason, 'stop');
    assert.equal(final.usage?.completion_tokens, 4);
    assert.ok(final.id.length > 0);

    const c = await clients(t, engine, 'completions-text');
    const completion = await c.openai.completions.create({ model: c.model, prompt: 'The capital of France is', stream: true, stream_options: { include_usage: true } });
    let text = '';
    let tokens = 0;
    const finishes: string[] = [];
    for await (const chunk of completion) {
      for (const ch of chunk.choices) {
        text += ch.text;
        if (ch.finish_reason) finishes.push(ch.finish_reason);
      }
      if (chunk.usage) tokens = chunk.usage.completion_tokens;
    }
    assert.equal(text, TEXT[engine].completion);
    assert.deepEqual(finishes, [engine === 'llamacpp' || engine === 'ollama' ? 'stop' : 'length']);
    if (engine !== 'llamacpp' && engine !== 'tgi') assert.equal(tokens, TEXT[engine].completionTokens); // no include_usage in those recordings
  });

  test(`openai client, ${engine}: tool-call arguments assembled by the SDK's stream helper`, async (t) => {
    const { openai, model, messages } = await clients(t, engine, 'chat-tools');
    const stream = openai.chat.completions.stream({ model, messages, tools: [weatherTool], tool_choice: 'auto' });
    const names: string[] = [];
    stream.on('tool_calls.function.arguments.done', (e) => names.push(e.name));
    const final = await stream.finalChatCompletion();
    const call = final.choices[0]?.message.tool_calls?.[0];
    assert.equal(call?.type, 'function');
    assert.ok(call?.type === 'function');
    assert.equal(call.function.name, 'get_weather');
    assert.deepEqual(JSON.parse(call.function.arguments), { city: 'Paris' });
    assert.ok(call.id.length > 0);
    assert.equal(final.choices[0]?.finish_reason, 'tool_calls');
    assert.deepEqual(names, ['get_weather']);
    assert.deepEqual(messageKeys(final.choices[0]?.message ?? {}), [...VLLM_MESSAGE_KEYS, 'tool_calls'].sort());
  });

  test(`openai client, ${engine}: an engine error mid-stream raises OpenAI.APIError, after the text that came before`, async (t) => {
    const { openai, model, messages } = await clients(t, engine, 'chat-error-midstream');
    const stream = await openai.chat.completions.create({ model, messages, stream: true });
    let text = '';
    await assert.rejects(
      async () => {
        for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
      },
      (err: unknown) => err instanceof OpenAI.APIError && err.message.length > 0,
    );
    assert.equal(text, 'Hello there');
  });

  test(`Vercel AI SDK, ${engine}: text, usage, a tool call, and an error part`, async (t) => {
    const text = await clients(t, engine, 'chat-text');
    const r = streamText({ model: text.provider(text.model), prompt: 'Say hello.', maxRetries: 0 });
    let out = '';
    for await (const d of r.textStream) out += d;
    assert.equal(out, 'Hello there!');
    assert.equal((await r.usage).outputTokens, 4);
    assert.equal(await r.finishReason, 'stop');

    const tools = await clients(t, engine, 'chat-tools');
    const rt = streamText({
      model: tools.provider(tools.model),
      prompt: 'What is the weather in Paris?',
      tools: { get_weather: tool({ description: 'Get the current weather for a city', inputSchema: jsonSchema<{ city: string }>({ type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }) }) },
      maxRetries: 0,
    });
    const calls = await rt.toolCalls;
    assert.equal(calls.length, 1);
    assert.equal(calls[0]?.toolName, 'get_weather');
    assert.deepEqual(calls[0]?.input, { city: 'Paris' });
    assert.equal(await rt.finishReason, 'tool-calls');

    const failing = await clients(t, engine, 'chat-error-midstream');
    const errors: unknown[] = [];
    const rf = streamText({ model: failing.provider(failing.model), prompt: 'Say hello.', maxRetries: 0, onError: ({ error }) => void errors.push(error) });
    const parts: string[] = [];
    for await (const p of rf.fullStream) parts.push(p.type);
    assert.ok(parts.includes('error'), `an error part: ${parts.join(',')}`);
    assert.equal(errors.length, 1);
    assert.ok(!parts.includes('finish') || (await rf.finishReason) === 'error');
  });
}

test('openai client and AI SDK: reasoning from every engine that has it, under the configured key', async (t) => {
  for (const engine of ['vllm', 'sglang', 'llamacpp', 'ollama'] as const) {
    const { openai, provider, model, messages } = await clients(t, engine, 'chat-reasoning');
    const final = await openai.chat.completions.stream({ model, messages }).finalChatCompletion();
    assert.match(final.choices[0]?.message.content ?? '', /Hello!$/);
    assert.deepEqual(messageKeys(final.choices[0]?.message ?? {}), [...VLLM_MESSAGE_KEYS, 'reasoning_content'].sort(), engine);
    let reasoning = '';
    const stream = await openai.chat.completions.create({ model, messages, stream: true });
    for await (const chunk of stream) reasoning += (chunk.choices[0]?.delta as { reasoning_content?: string } | undefined)?.reasoning_content ?? '';
    assert.equal(reasoning, 'The user wants a greeting.', engine);
    const r = streamText({ model: provider(model), prompt: 'Say hello.', maxRetries: 0 });
    assert.equal(await r.reasoningText, 'The user wants a greeting.', engine);
    assert.match(await r.text, /Hello!$/);
  }
});

test('openai client: errors an engine reports in-band before any token surface as APIError with the OpenAI code', async (t) => {
  for (const [engine, name] of [['sglang', 'chat-error-context-length'], ['tgi', 'chat-error-validation']] as const) {
    const { openai, model, messages } = await clients(t, engine, name);
    const stream = await openai.chat.completions.create({ model, messages, stream: true });
    await assert.rejects(
      async () => {
        for await (const _ of stream) {
          // consume
        }
      },
      (err: unknown) => err instanceof OpenAI.APIError && err.code === 'context_length_exceeded' && err.type === 'invalid_request_error',
    );
  }
});
