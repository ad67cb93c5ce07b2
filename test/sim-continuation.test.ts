import { test } from 'node:test';
import assert from 'node:assert/strict';
import { post, sim } from './helpers/gateway.ts';
import { assemble } from './helpers/openai-stream.ts';

// The simulator continues a prefilled answer deterministically (issue 15): what mid-stream failover's tests rely on
// to compare a spliced answer with the uninterrupted one word for word.

const messages = [{ role: 'user', content: 'Tell me about streams' }];

async function chatText(url: string, body: Record<string, unknown>): Promise<{ text: string; finish: string | undefined; usage: Record<string, number> | undefined }> {
  const res = await post(`${url}/chat/completions`, { model: 'sluice-sim', stream: true, stream_options: { include_usage: true }, ...body });
  assert.equal(res.status, 200, await res.clone().text());
  // The engine's own bytes (SGLang's nulls included), read as chunks.
  const chunks = (await res.text()).split('\n\n').filter((f) => f.startsWith('data: {')).map((f) => JSON.parse(f.slice(6)) as Record<string, unknown>);
  const a = assemble(chunks);
  const usage = chunks.find((c) => c['usage'])?.['usage'] as Record<string, number> | undefined;
  return { text: a.content[0] ?? '', finish: a.finish[0], usage };
}

for (const dialect of ['vllm', 'sglang'] as const) {
  test(`${dialect}: continue_final_message continues the prefilled answer with the rest of the uninterrupted one`, async (t) => {
    const s = await sim(t, { dialect, timing: { ttftMs: 0, itlMs: 0, tokens: 20 } });
    const whole = await chatText(s.url, { messages });
    assert.equal(whole.finish, 'stop');
    const words = whole.text.split(/(?= )/);
    assert.equal(words.length, 20);
    for (const k of [1, 7, 19]) {
      const prefix = words.slice(0, k).join('');
      const rest = await chatText(s.url, { messages: [...messages, { role: 'assistant', content: prefix }], continue_final_message: true, add_generation_prompt: false });
      assert.equal(prefix + rest.text, whole.text, `continued after ${k} tokens`);
      assert.equal(rest.finish, 'stop');
      assert.equal(rest.usage?.['completion_tokens'], 20 - k, 'only the new tokens are counted');
    }
    // max_tokens counts the continuation's own tokens, as engines do.
    const cut = await chatText(s.url, { messages: [...messages, { role: 'assistant', content: words.slice(0, 5).join('') }], continue_final_message: true, add_generation_prompt: false, max_tokens: 3 });
    assert.equal(cut.text, words.slice(5, 8).join(''));
    assert.equal(cut.finish, 'length');
  });
}

test('continue_final_message needs add_generation_prompt false and a final assistant message, as vLLM says', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 0 } });
  const both = await post(`${s.url}/chat/completions`, { model: 'sluice-sim', stream: true, messages: [...messages, { role: 'assistant', content: 'This' }], continue_final_message: true });
  assert.equal(both.status, 400);
  assert.match(await both.text(), /add_generation_prompt/);
  const noAssistant = await post(`${s.url}/chat/completions`, { model: 'sluice-sim', stream: true, messages, continue_final_message: true, add_generation_prompt: false });
  assert.equal(noAssistant.status, 400);
});

test('a completions prompt that ends with the beginning of its answer gets the rest of it', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 0, tokens: 16 } });
  const complete = async (prompt: unknown): Promise<string> => {
    const res = await post(`${s.url}/completions`, { model: 'sluice-sim', prompt, stream: false });
    const o = (await res.json()) as { choices: Array<{ text: string }> };
    return o.choices[0]!.text;
  };
  for (const prompt of ['Once upon a time', ['A list prompt']]) {
    const whole = await complete(prompt);
    const words = whole.split(/(?= )/);
    assert.equal(words.length, 16);
    for (const k of [1, 6, 15]) {
      const head = words.slice(0, k).join('');
      const p = Array.isArray(prompt) ? [prompt[0] + head] : prompt + head;
      assert.equal(head + (await complete(p)), whole, `continued after ${k} tokens`);
    }
  }
});
