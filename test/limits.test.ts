import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { chatBody, gateway, post, sim } from './helpers/gateway.ts';
import { generateKey, hashKey, shownPrefix } from '../src/auth/api-key.ts';
import { openStore, type KeyLimits } from '../src/state/store.ts';
import { resetDuration } from '../src/limits/reset-duration.ts';
import { Limiter } from '../src/limits/limiter.ts';
import type { SluiceError } from '../src/errors.ts';

// Per-key limits on a real gateway and simulator (issue 14): OpenAI's x-ratelimit-* headers on 200 and 429, the 429
// before any upstream work, and the OpenAI SDK's own retry on it.

const NO_LIMITS: KeyLimits = { rpm: null, tpm: null, concurrency: null, models: null, expires_at: null };

/** A gateway on its own SQLite state with one stored key; returns the key and the gateway. */
async function keyed(t: TestContext, limits: Partial<KeyLimits>, simTokens = 4) {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 0, tokens: simTokens } });
  const state = `sqlite:${join(mkdtempSync(join(tmpdir(), 'sluice-limits-')), 'state.db')}`;
  const store = await openStore(state);
  const key = generateKey();
  await store.createKey({ ...NO_LIMITS, ...limits, name: 'k', hash: hashKey(key).toString('hex'), prefix: shownPrefix(key), created_at: Date.now(), revoked_at: null });
  await store.close();
  const g = await gateway(t, { upstreams: [{ url: s.url, dialect: 'vllm' }], state: { url: state } });
  return { g, s, key, auth: { authorization: `Bearer ${key}` } };
}

const rateHeaders = (r: Response): Record<string, string> =>
  Object.fromEntries([...r.headers].filter(([k]) => k.startsWith('x-ratelimit-') || k.startsWith('retry-after')));

test('rpm: the headers count down on streamed and JSON answers; over the limit a 429 with retry-after, and no upstream request', async (t) => {
  const { g, s, auth } = await keyed(t, { rpm: 3 });
  let upstreamRequests = 0;
  s.events.on('request', () => upstreamRequests++);
  const streamed = await post(`${g.url}/chat/completions`, chatBody(), auth);
  assert.equal(streamed.status, 200);
  assert.equal(streamed.headers.get('content-type'), 'text/event-stream; charset=utf-8');
  assert.deepEqual(rateHeaders(streamed), { 'x-ratelimit-limit-requests': '3', 'x-ratelimit-remaining-requests': '2', 'x-ratelimit-reset-requests': '1m0s' });
  await streamed.text();
  const unary = await post(`${g.url}/chat/completions`, chatBody({ stream: false }), auth);
  assert.equal(unary.status, 200);
  assert.equal(unary.headers.get('x-ratelimit-remaining-requests'), '1');
  await unary.json();
  await (await post(`${g.url}/chat/completions`, chatBody(), auth)).text();
  const before = upstreamRequests;
  const refused = await post(`${g.url}/chat/completions`, chatBody(), auth);
  assert.equal(refused.status, 429);
  const h = rateHeaders(refused);
  assert.equal(h['x-ratelimit-limit-requests'], '3');
  assert.equal(h['x-ratelimit-remaining-requests'], '0');
  assert.match(h['x-ratelimit-reset-requests'] ?? '', /^\d+(\.\d+)?s$/);
  const ms = Number(h['retry-after-ms']);
  assert.ok(ms > 55_000 && ms <= 60_000, `retry-after-ms ${ms}`);
  assert.equal(h['retry-after'], String(Math.ceil(ms / 1000)));
  const body = (await refused.json()) as { error: { code: string; type: string; message: string } };
  assert.equal(body.error.code, 'rate_limit_exceeded');
  assert.equal(body.error.type, 'rate_limit_error');
  assert.match(body.error.message, /3 requests per minute/);
  assert.equal(upstreamRequests, before, 'the refused request never reached the engine');
  const line = g.logs.at(-1);
  assert.equal(line?.status, 429);
  assert.equal(line?.error_code, 'SLUICE_RATE_LIMITED');
});

test('tpm: max_tokens is reserved at admission and settled with the real usage when the stream ends', async (t) => {
  const { g, auth } = await keyed(t, { tpm: 1000 }, 5);
  const body = chatBody({ max_tokens: 100, stream_options: { include_usage: true } });
  const reserve = Math.ceil(JSON.stringify(body).length / 4) + 100;
  const first = await post(`${g.url}/chat/completions`, body, auth);
  assert.equal(first.headers.get('x-ratelimit-limit-tokens'), '1000');
  assert.equal(first.headers.get('x-ratelimit-remaining-tokens'), String(1000 - reserve), 'the reservation, before any usage');
  assert.equal(first.headers.get('x-ratelimit-reset-tokens'), '1m0s');
  const text = await first.text();
  const usage = JSON.parse(/"usage":(\{[^}]*\})/.exec(text)?.[1] ?? 'null') as { prompt_tokens: number; completion_tokens: number };
  assert.equal(usage.completion_tokens, 5);
  const second = await post(`${g.url}/chat/completions`, body, auth);
  const used = usage.prompt_tokens + usage.completion_tokens;
  assert.equal(second.headers.get('x-ratelimit-remaining-tokens'), String(1000 - used - reserve), 'the first request now counts its real usage');
  await second.text();
  // A request that does not fit: refused with the time until enough of the window has expired.
  const big = await post(`${g.url}/chat/completions`, chatBody({ max_tokens: 990 }), auth);
  assert.equal(big.status, 429);
  assert.ok(Number(big.headers.get('retry-after-ms')) > 50_000);
  assert.match(((await big.json()) as { error: { message: string } }).error.message, /1000 tokens per minute/);
});

test('concurrency: a third stream is refused while two run, and admitted once one ends', async (t) => {
  const { g, auth } = await keyed(t, { concurrency: 2 });
  const slow = chatBody({ sim: { ttft_ms: 0, itl_ms: 100, tokens: 5 } });
  const a = await post(`${g.url}/chat/completions`, slow, auth);
  const b = await post(`${g.url}/chat/completions`, slow, auth);
  assert.equal(a.status, 200);
  assert.equal(b.status, 200);
  const c = await post(`${g.url}/chat/completions`, slow, auth);
  assert.equal(c.status, 429);
  assert.equal(c.headers.get('retry-after-ms'), '1000');
  assert.match(((await c.json()) as { error: { message: string } }).error.message, /2 concurrent requests/);
  await a.text();
  const d = await post(`${g.url}/chat/completions`, slow, auth);
  assert.equal(d.status, 200);
  await Promise.all([b.text(), d.text()]);
});

test('the OpenAI SDK retries a 429 after retry-after-ms and then gets its answer', async (t) => {
  const { g, key } = await keyed(t, { concurrency: 1 });
  const statuses: Array<{ status: number; at: number }> = [];
  const client = new OpenAI({
    baseURL: g.url,
    apiKey: key,
    maxRetries: 2,
    fetch: async (url, init) => {
      const r = await fetch(url, init);
      statuses.push({ status: r.status, at: performance.now() });
      return r;
    },
  });
  // One stream holds the key's only slot for about 400 ms.
  const holder = await post(`${g.url}/chat/completions`, chatBody({ sim: { ttft_ms: 0, itl_ms: 100, tokens: 4 } }), { authorization: `Bearer ${key}` });
  assert.equal(holder.status, 200);
  const started = performance.now();
  const answer = await client.chat.completions.create({ model: 'sluice-sim', messages: [{ role: 'user', content: 'Hi' }] });
  await holder.text();
  assert.ok(answer.choices[0]?.message.content);
  assert.deepEqual(statuses.map((x) => x.status), [429, 200]);
  const waited = (statuses[1]?.at ?? 0) - (statuses[0]?.at ?? 0);
  assert.ok(waited >= 950, `the SDK waited ${waited.toFixed(0)} ms (retry-after-ms: 1000)`);
  assert.ok(performance.now() - started < 5_000);
});

test('a key limited to some models: others are 403 model_not_allowed, and /v1/models lists only its own', async (t) => {
  const { g, auth } = await keyed(t, { models: ['sluice-sim'] });
  assert.equal((await post(`${g.url}/chat/completions`, chatBody(), auth)).status, 200);
  const other = await post(`${g.url}/chat/completions`, chatBody({ model: 'gpt-4o' }), auth);
  assert.equal(other.status, 403);
  assert.equal(((await other.json()) as { error: { code: string } }).error.code, 'model_not_allowed');
  const models = (await (await fetch(`${g.url}/models`, { headers: auth })).json()) as { data: Array<{ id: string }> };
  assert.deepEqual(models.data.map((m) => m.id), ['sluice-sim']);
});

test('the limiter alone: sliding windows, settlement of expired entries, and OpenAI-style reset durations', () => {
  const l = new Limiter();
  const limits: KeyLimits = { ...NO_LIMITS, rpm: 2, tpm: 100 };
  const a = l.admit('x', limits, 30, 0);
  l.admit('x', limits, 30, 10_000);
  assert.throws(() => l.admit('x', limits, 1, 20_000), (e: SluiceError) => e.headers['retry-after-ms'] === '40000');
  // Past 60 s the first admission has left the window; settling it then changes nothing.
  a.reservation.settle(90);
  const c = l.admit('x', limits, 30, 60_001);
  assert.equal(c.headers['x-ratelimit-remaining-requests'], '0');
  assert.equal(c.headers['x-ratelimit-remaining-tokens'], '40');
  // A reservation larger than the whole limit waits for an empty window instead of being refused for ever.
  const huge = l.admit('y', { ...NO_LIMITS, tpm: 50 }, 500, 0);
  assert.equal(huge.headers['x-ratelimit-remaining-tokens'], '0');
  assert.deepEqual(['0s', '20ms', '1s', '1.5s', '59.633s', '1m0s', '6m0s', '1h0m0s'], [0, 20, 1000, 1500, 59_633, 60_000, 360_000, 3_600_000].map(resetDuration));
});
