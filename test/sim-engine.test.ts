import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sim, post, chatBody } from './helpers/gateway.ts';
import { blockHashes } from '../src/sim/engine.ts';

/** Reads one sample of a simulator's `/metrics` by metric name. */
async function metric(base: string, name: string): Promise<number> {
  const text = await (await fetch(`${base.replace(/\/v1$/, '')}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`));
  assert.ok(line, `${name} is on /metrics`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

test('chained block hashes: equal prefixes give equal leading hashes, a change changes every later one', () => {
  const a = blockHashes('x'.repeat(64) + 'y'.repeat(64) + 'z'.repeat(10), 64);
  const b = blockHashes('x'.repeat(64) + 'y'.repeat(64) + 'w'.repeat(70), 64);
  const c = blockHashes('q' + 'x'.repeat(63) + 'y'.repeat(64), 64);
  assert.equal(a.length, 2, 'only whole blocks');
  assert.deepEqual(a, b.slice(0, 2));
  assert.notEqual(c[0], a[0]);
  assert.notEqual(c[1], a[1], 'the second block differs because the first did');
});

test('the batch limit queues requests beyond it; /metrics shows running and waiting under vLLM names', async (t) => {
  const s = await sim(t, { engine: { maxBatch: 1 }, timing: { ttftMs: 0, itlMs: 20, tokens: 40 } });
  const first = await post(`${s.url}/chat/completions`, chatBody());
  const second = await post(`${s.url}/chat/completions`, chatBody());
  assert.equal(first.status, 200);
  assert.equal(second.status, 200, 'headers come at once, as vLLM sends them');
  assert.equal(await metric(s.url, 'vllm:num_requests_running'), 1);
  assert.equal(await metric(s.url, 'vllm:num_requests_waiting'), 1);
  assert.ok((await metric(s.url, 'vllm:kv_cache_usage_perc')) > 0);
  await first.text();
  await second.text();
  assert.equal(await metric(s.url, 'vllm:num_requests_running'), 0);
  assert.equal(await metric(s.url, 'vllm:num_requests_waiting'), 0);
  assert.equal(await metric(s.url, 'vllm:kv_cache_usage_perc'), 0);
});

test('a client that leaves while queued gives its place up', async (t) => {
  const s = await sim(t, { engine: { maxBatch: 1 }, timing: { ttftMs: 0, itlMs: 10, tokens: 30 } });
  const first = await post(`${s.url}/chat/completions`, chatBody());
  const ac = new AbortController();
  const queued = await post(`${s.url}/chat/completions`, chatBody(), {}, ac.signal);
  assert.equal(await metric(s.url, 'vllm:num_requests_waiting'), 1);
  ac.abort();
  await queued.text().catch(() => undefined);
  for (let i = 0; i < 50 && (await metric(s.url, 'vllm:num_requests_waiting')) !== 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(await metric(s.url, 'vllm:num_requests_waiting'), 0);
  await first.text();
  const third = await post(`${s.url}/chat/completions`, chatBody());
  assert.ok((await third.text()).endsWith('data: [DONE]\n\n'), 'the batch is free again');
});

test('the prefix cache: a conversation resending its history hits; hits and queries are counted in tokens', async (t) => {
  const s = await sim(t, { engine: { prefixCacheTokens: 10_000 }, timing: { ttftMs: 0, itlMs: 0, tokens: 2 } });
  const history = [{ role: 'user', content: 'a long question '.repeat(40) }];
  await (await post(`${s.url}/chat/completions`, chatBody({ messages: history }))).text();
  assert.equal(await metric(s.url, 'vllm:prefix_cache_hits_total'), 0);
  const q1 = await metric(s.url, 'vllm:prefix_cache_queries_total');
  assert.ok(q1 > 100);
  const next = [...history, { role: 'assistant', content: 'an answer' }, { role: 'user', content: 'and then?' }];
  await (await post(`${s.url}/chat/completions`, chatBody({ messages: next }))).text();
  const hits = await metric(s.url, 'vllm:prefix_cache_hits_total');
  assert.ok(hits >= q1 - 16 && hits <= q1, `the first turn's whole blocks were cached (${hits} of ${q1})`);
  // Another conversation shares only the JSON's opening characters: less than a block.
  await (await post(`${s.url}/chat/completions`, chatBody({ messages: [{ role: 'user', content: 'something else '.repeat(40) }] }))).text();
  assert.equal(await metric(s.url, 'vllm:prefix_cache_hits_total'), hits);
});

test('a small cache evicts the oldest blocks; SGLang names under --dialect sglang; other dialects have no /metrics', async (t) => {
  const s = await sim(t, { dialect: 'sglang', engine: { prefixCacheTokens: 64 }, timing: { ttftMs: 0, itlMs: 0, tokens: 2 } });
  const one = [{ role: 'user', content: 'first conversation '.repeat(20) }];
  const two = [{ role: 'user', content: 'second conversation '.repeat(20) }];
  for (const m of [one, two, one]) await (await post(`${s.url}/chat/completions`, chatBody({ messages: m }))).text();
  assert.equal(await metric(s.url, 'sglang:cache_hit_rate'), 0, 'the second conversation pushed the first out');
  assert.equal(await metric(s.url, 'sglang:num_queue_reqs'), 0);
  assert.equal(await metric(s.url, 'sglang:num_running_reqs'), 0);
  assert.equal(await metric(s.url, 'sglang:token_usage'), 0);
  const o = await sim(t, { dialect: 'ollama' });
  assert.equal((await fetch(`http://127.0.0.1:${o.port}/metrics`)).status, 404);
});

test('a client that left before admission takes no place in the batch', async (t) => {
  const s = await sim(t, { engine: { maxBatch: 1 }, timing: { ttftMs: 0, itlMs: 0, tokens: 2, headersDelayMs: 100 } });
  const ac = new AbortController();
  const gone = post(`${s.url}/chat/completions`, chatBody(), {}, ac.signal).catch(() => undefined);
  await new Promise((r) => setTimeout(r, 30));
  ac.abort();
  await gone;
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(await metric(s.url, 'vllm:num_requests_running'), 0);
  const next = await post(`${s.url}/chat/completions`, chatBody());
  assert.ok((await next.text()).endsWith('data: [DONE]\n\n'), 'the batch of one is still free');
});
