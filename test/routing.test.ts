import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { gateway, sim, post, chatBody, frames, once } from './helpers/gateway.ts';

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

type ErrorBody = { error: { message: string; type: string; param: string | null; code: string | null } };

test('before the first byte, a 5xx moves the request to the next replica', async (t) => {
  const bad = await sim(t, { timing: { fail: 'status', failStatus: 503 } });
  const good = await sim(t, { timing: { ttftMs: 0, itlMs: 0, tokens: 3 } });
  const g = await gateway(t, { upstreams: [{ url: bad.url, name: 'bad' }, { url: good.url, name: 'good' }] });
  let badHits = 0;
  bad.events.on('request', () => badHits++);
  for (let i = 0; i < 4; i++) {
    const res = await post(`${g.url}/chat/completions`, chatBody());
    assert.equal(res.status, 200);
    assert.ok((await res.text()).endsWith('data: [DONE]\n\n'));
  }
  assert.ok(badHits >= 1, 'the failing replica was tried');
  assert.ok(g.logs.every((l) => l.upstream === 'good' && l.outcome === 'completed'));
});

test('a connect error and a 429 both fail over; the answer still streams', async (t) => {
  const port = await closedPort();
  const limited = await sim(t, { timing: { fail: 'status', failStatus: 429 } });
  const good = await sim(t, { timing: { ttftMs: 0, itlMs: 0, tokens: 2 } });
  const g = await gateway(t, {
    upstreams: [
      { url: `http://127.0.0.1:${port}/v1`, name: 'down', models: ['sluice-sim'] },
      { url: limited.url, name: 'limited' },
      { url: good.url, name: 'good' },
    ],
  });
  for (let i = 0; i < 3; i++) {
    const res = await post(`${g.url}/chat/completions`, chatBody());
    assert.equal(res.status, 200);
    await res.text();
  }
  assert.ok(g.logs.every((l) => l.upstream === 'good'));
});

test('a large prompt reaches the replica that answers whole, after a connect error and a 5xx, streamed or not', async (t) => {
  const port = await closedPort();
  const bad = await sim(t, { timing: { fail: 'status', failStatus: 503 } });
  const good = await sim(t, { timing: { ttftMs: 0, itlMs: 0, tokens: 2 } });
  const g = await gateway(t, {
    upstreams: [
      { url: `http://127.0.0.1:${port}/v1`, name: 'down', models: ['sluice-sim'] },
      { url: bad.url, name: 'bad', models: ['sluice-sim'] },
      { url: good.url, name: 'good' },
    ],
  });
  // Over the size from which the body is handed to undici as a stream; multi-byte characters make bytes ≠ length.
  const prompt = 'é🙂 long context. '.repeat(3000);
  let badHits = 0;
  bad.events.on('request', () => badHits++);
  for (const stream of [true, false]) {
    const seen = once<{ body: { messages: Array<{ content: string }> }; headers: Record<string, string> }>(good.events, 'request');
    const res = await post(`${g.url}/chat/completions`, chatBody({ stream, messages: [{ role: 'user', content: prompt }] }));
    assert.equal(res.status, 200);
    const text = await res.text();
    if (stream) assert.ok(text.endsWith('data: [DONE]\n\n'));
    const { body, headers } = await seen;
    assert.equal(body.messages[0]?.content, prompt);
    assert.ok(Number(headers['content-length']) > prompt.length, 'length declared in bytes');
  }
  assert.ok(badHits >= 1, 'the failing replica was tried with the same body');
  assert.ok(g.logs.every((l) => l.upstream === 'good' && l.outcome === 'completed'));
});

test('503 when no upstream is healthy', async (t) => {
  const port = await closedPort();
  const g = await gateway(t, { upstreams: [{ url: `http://127.0.0.1:${port}/v1`, models: ['sluice-sim'] }] });
  const res = await post(`${g.url}/chat/completions`, chatBody());
  assert.equal(res.status, 503);
  const body = (await res.json()) as ErrorBody;
  assert.equal(body.error.code, 'sluice_no_healthy_upstream');
  assert.equal(body.error.type, 'server_error');
  const ready = await fetch(`${g.url.replace('/v1', '')}/ready`);
  assert.equal(ready.status, 503);
});

test('an upstream 429 with no other replica passes through with its retry-after', async (t) => {
  const limited = await sim(t, { timing: { fail: 'status', failStatus: 429 } });
  const g = await gateway(t, { upstreams: [{ url: limited.url }] });
  const res = await post(`${g.url}/chat/completions`, chatBody());
  assert.equal(res.status, 429);
  assert.equal(res.headers.get('retry-after'), '1');
  const body = (await res.json()) as ErrorBody;
  assert.equal(body.error.type, 'rate_limit_error');
  assert.equal(body.error.message, 'simulated 429');
});

test('an upstream 4xx passes through cleanly in OpenAI shape', async (t) => {
  const s = await sim(t);
  // The gateway believes the upstream serves `ghost`; the engine says otherwise.
  const g = await gateway(t, { upstreams: [{ url: s.url, models: ['ghost'] }] });
  const res = await post(`${g.url}/chat/completions`, chatBody({ model: 'ghost' }));
  assert.equal(res.status, 404);
  const body = (await res.json()) as ErrorBody;
  assert.match(body.error.message, /ghost/);
  assert.equal(body.error.type, 'not_found_error');
});

test('models are merged across upstreams, with aliases; replicas are balanced', async (t) => {
  const a = await sim(t, { models: ['alpha', 'shared'], timing: { ttftMs: 0, itlMs: 0, tokens: 1 } });
  const b = await sim(t, { models: ['beta', 'shared'], timing: { ttftMs: 0, itlMs: 0, tokens: 1 } });
  const g = await gateway(t, { upstreams: [{ url: a.url, name: 'a' }, { url: b.url, name: 'b' }], aliases: { fast: 'beta' } });
  const models = (await (await fetch(`${g.url}/models`)).json()) as { data: Array<{ id: string; owned_by: string }> };
  assert.deepEqual(models.data.map((m) => m.id).sort(), ['alpha', 'beta', 'fast', 'shared']);
  const res = await post(`${g.url}/chat/completions`, chatBody({ model: 'fast' }));
  assert.equal(res.status, 200);
  await res.text();
  assert.equal(g.logs.at(-1)?.upstream, 'b');
  for (let i = 0; i < 6; i++) await (await post(`${g.url}/chat/completions`, chatBody({ model: 'shared' }))).text();
  const used = new Set(g.logs.slice(-6).map((l) => l.upstream));
  assert.deepEqual([...used].sort(), ['a', 'b'], 'both replicas of `shared` served');
});

test('bad input gets OpenAI-shaped errors with fitting statuses', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url }], limits: { max_body_bytes: 4096 } });
  const url = `${g.url}/chat/completions`;
  const cases: Array<[string, unknown, number, string | null, string | null]> = [
    ['invalid JSON', '{"model": ', 400, null, 'sluice_invalid_json'],
    ['not an object', '[1,2]', 400, null, 'sluice_invalid_request'],
    ['wrong type', { model: 'sluice-sim', messages: 'hi' }, 400, 'messages', 'invalid_value'],
    ['missing field', { model: 'sluice-sim' }, 400, 'messages', 'missing_required_parameter'],
    ['nested wrong type', { model: 'sluice-sim', messages: [{ role: 3 }] }, 400, 'messages[0].role', 'invalid_value'],
    ['stream not boolean', { model: 'sluice-sim', messages: [{ role: 'user', content: 'x' }], stream: 'yes' }, 400, 'stream', 'invalid_value'],
    ['unknown model', { model: 'nope', messages: [{ role: 'user', content: 'x' }] }, 404, 'model', 'model_not_found'],
    ['body too large', { model: 'sluice-sim', messages: [{ role: 'user', content: 'x'.repeat(5000) }] }, 413, null, 'sluice_body_too_large'],
  ];
  for (const [name, body, status, param, code] of cases) {
    const res = await post(url, body);
    assert.equal(res.status, status, name);
    const json = (await res.json()) as ErrorBody;
    assert.equal(typeof json.error.message, 'string', name);
    assert.equal(json.error.param, param, name);
    assert.equal(json.error.code, code, name);
    if (name === 'unknown model') assert.match(json.error.message, /sluice-sim/, 'lists the models that exist');
  }
  const notFound = await fetch(`${g.url}/nothing`);
  assert.equal(notFound.status, 404);
  const wrongMethod = await fetch(url);
  assert.equal(wrongMethod.status, 405);
});

test('client keys: missing or wrong key is 401, the right one streams; health stays open', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 0, tokens: 1 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }], api_keys: ['sk-test-key-1', 'sk-test-key-2'] });
  const url = `${g.url}/chat/completions`;
  const missing = await post(url, chatBody());
  assert.equal(missing.status, 401);
  assert.equal(((await missing.json()) as ErrorBody).error.type, 'authentication_error');
  const wrong = await post(url, chatBody(), { authorization: 'Bearer sk-test-key-3' });
  assert.equal(wrong.status, 401);
  await wrong.text();
  const ok = await post(url, chatBody(), { authorization: 'Bearer sk-test-key-2' });
  assert.equal(ok.status, 200);
  await ok.text();
  assert.equal((await fetch(`${g.url}/models`)).status, 401);
  assert.equal((await fetch(g.url.replace('/v1', '/health'))).status, 200);
});

test("the upstream's API key is sent upstream and never reaches the client or the log", async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 0, tokens: 1 } });
  const seen: string[] = [];
  s.events.on('request', (r: { headers: Record<string, string> }) => seen.push(r.headers['authorization'] ?? ''));
  const g = await gateway(t, { upstreams: [{ url: s.url, api_key: 'upstream-secret-123' }] });
  const res = await post(`${g.url}/chat/completions`, chatBody(), { authorization: 'Bearer client-key' });
  const text = await res.text();
  assert.deepEqual(seen, ['Bearer upstream-secret-123']);
  assert.ok(!text.includes('upstream-secret'));
  assert.ok(![...res.headers.values()].some((v) => v.includes('upstream-secret')));
  assert.ok(!JSON.stringify(g.logs).includes('upstream-secret'));
  const ready = await (await fetch(g.url.replace('/v1', '/ready'))).text();
  assert.ok(!ready.includes('upstream-secret'));
});

test('CORS: preflight answered for allowed origins, refused for others; streams readable cross-origin', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 0, tokens: 1 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }], cors: { origins: ['https://app.example'] } });
  const url = `${g.url}/chat/completions`;
  const pre = await fetch(url, {
    method: 'OPTIONS',
    headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type, x-stainless-os' },
  });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get('access-control-allow-origin'), 'https://app.example');
  assert.match(pre.headers.get('access-control-allow-headers') ?? '', /authorization/);
  assert.match(pre.headers.get('access-control-allow-headers') ?? '', /content-type/);
  assert.match(pre.headers.get('access-control-allow-methods') ?? '', /POST/);
  const denied = await fetch(url, { method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } });
  assert.equal(denied.status, 403);
  const res = await post(url, chatBody(), { origin: 'https://app.example' });
  assert.equal(res.headers.get('access-control-allow-origin'), 'https://app.example');
  assert.ok(frames(await res.text()).length > 1);
});

test('/v1/responses streams keep event: framing; /v1/completions and /v1/embeddings work', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 0, tokens: 3 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }] });
  const r = await (await post(`${g.url}/responses`, { model: 'sluice-sim', input: 'hi', stream: true })).text();
  assert.match(r, /^event: response\.created\ndata: /);
  assert.match(r, /event: response\.completed\ndata: .*"usage":\{"input_tokens"/);
  assert.ok(!r.includes('[DONE]'));
  assert.equal(g.logs.at(-1)?.tokens_out, 3);
  const c = await (await post(`${g.url}/completions`, { model: 'sluice-sim', prompt: 'hi', stream: true })).text();
  assert.ok(c.endsWith('data: [DONE]\n\n'));
  assert.match(c, /"object":"text_completion"/);
  const e = await post(`${g.url}/embeddings`, { model: 'sluice-sim', input: ['a', 'b'] });
  assert.equal(e.status, 200);
  assert.equal(((await e.json()) as { data: unknown[] }).data.length, 2);
});

test('a Responses stream cut mid-way ends with an error event, never as complete', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 1, tokens: 10, fail: 'drop', failAfter: 2 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }] });
  const r = await (await post(`${g.url}/responses`, { model: 'sluice-sim', input: 'hi', stream: true })).text();
  assert.ok(!r.includes('response.completed'));
  assert.match(r, /event: error\ndata: \{"type":"error","code":"sluice_upstream_truncated"/);
});

test('an upstream that starts after the gateway is discovered on the first request that needs it', async (t) => {
  const port = await closedPort();
  const g = await gateway(t, { upstreams: [{ url: `http://127.0.0.1:${port}/v1` }] });
  assert.equal((await post(`${g.url}/chat/completions`, chatBody())).status, 503, 'nothing there yet');
  await new Promise((r) => setTimeout(r, 1_100)); // re-discovery is rate-limited to once a second
  await sim(t, { port, timing: { ttftMs: 0, itlMs: 0, tokens: 2 } });
  const res = await post(`${g.url}/chat/completions`, chatBody());
  assert.equal(res.status, 200);
  assert.ok((await res.text()).endsWith('data: [DONE]\n\n'));
});
