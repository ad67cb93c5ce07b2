import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { chatBody, gateway, once, post, sim } from './helpers/gateway.ts';
import { chatText, events, rawStream } from './helpers/resume.ts';
import { startRedis } from './helpers/redis.ts';
import { freePort, runCli, serveOnPort, stop, tmpFile } from './helpers/cli.ts';

// Resumable streams across gateway instances on one real redis-server (issue 15, docs/resume.md "Across instances"):
// a client cut on instance A resumes on instance B, cancels there, and learns when A died or Redis went away.

const SLOW = (tokens = 40, itl = 20) => ({ sim: { ttft_ms: 0, itl_ms: itl, tokens, jitter_ms: 0 } });
const KEY = 'sk-resume-redis-owner-1';
const OTHER = 'sk-resume-redis-other-2';
const auth = (k: string) => ({ authorization: `Bearer ${k}` });
const sameRequest = (e: string): string => e.replace(/"id":"chatcmpl-[^"]*"/, '"id":""').replace(/"created":\d+/, '"created":0');

/** A simulator and two gateways on it sharing the Redis at `state`. */
async function pair(t: TestContext, state: string) {
  const s = await sim(t);
  const options = { upstreams: [{ url: s.url, name: 'sim1', dialect: 'vllm' as const }], state: { url: state }, api_keys: [KEY, OTHER] };
  return { s, a: await gateway(t, options), b: await gateway(t, options) };
}

test('cut on instance A after K events, resumed on instance B with after=K: every event exactly once, the whole text', async (t) => {
  const r = await startRedis(t);
  const { s, a, b } = await pair(t, r.url);
  const body = chatBody(SLOW(40, 20));
  const whole = events((await rawStream(`${a.url}/chat/completions`, { body, headers: auth(KEY) })).frames);
  for (const K of [1, 7, 20]) {
    const first = await rawStream(`${a.url}/chat/completions`, { body, headers: { 'x-sluice-resume': '1', ...auth(KEY) }, cutAfter: K });
    const id = String(first.headers['x-sluice-stream-id']);
    const got = events(first.frames);
    const rest = await rawStream(`${b.url}/streams/${id}?after=${got.length}`, { headers: auth(KEY) });
    assert.equal(rest.status, 200);
    const all = [...got, ...events(rest.frames)];
    assert.equal(all.length, whole.length, `K=${K}: as many events as the uninterrupted stream`);
    assert.equal(chatText(all), chatText(whole), `K=${K}: the whole text`);
    assert.deepEqual(all.map(sameRequest), whole.map(sameRequest), `K=${K}: the same events in the same order`);
  }
  assert.equal(s.stats.aborted, 0);
});

test('A finishes the generation while the client is away; B replays the rest, and from the start', async (t) => {
  const r = await startRedis(t);
  const { s, a, b } = await pair(t, r.url);
  const body = chatBody(SLOW(15, 10));
  const whole = events((await rawStream(`${a.url}/chat/completions`, { body, headers: auth(KEY) })).frames);
  const completed = once(s.events, 'completed');
  const first = await rawStream(`${a.url}/chat/completions`, { body, headers: { 'x-sluice-resume': '1', ...auth(KEY) }, cutAfter: 3 });
  await completed;
  const id = String(first.headers['x-sluice-stream-id']);
  const rest = await rawStream(`${b.url}/streams/${id}?after=${events(first.frames).length}`, { headers: auth(KEY) });
  const all = [...events(first.frames), ...events(rest.frames)];
  assert.deepEqual(all.map(sameRequest), whole.map(sameRequest));
  const again = await rawStream(`${b.url}/streams/${id}`, { headers: auth(KEY) });
  assert.equal(chatText(events(again.frames)), chatText(whole));
  assert.equal(s.stats.aborted, 0);
});

test('cancel sent to B aborts the generation on A; another key is refused on B (404)', async (t) => {
  const r = await startRedis(t);
  const { s, a, b } = await pair(t, r.url);
  const res = await post(`${a.url}/chat/completions`, chatBody(SLOW(400, 20)), { 'x-sluice-resume': '1', ...auth(KEY) });
  const id = String(res.headers.get('x-sluice-stream-id'));
  const reader = res.body!.getReader();
  await reader.read();
  assert.equal((await fetch(`${b.url}/streams/${id}`, { headers: auth(OTHER) })).status, 404);
  const foreign = await post(`${b.url}/streams/${id}/cancel`, {}, auth(OTHER));
  assert.equal(foreign.status, 404);
  assert.equal(s.stats.aborted, 0);
  const aborted = once(s.events, 'aborted');
  const c = await post(`${b.url}/streams/${id}/cancel`, {}, auth(KEY));
  assert.equal(c.status, 200);
  assert.equal(((await c.json()) as { status: string }).status, 'cancelled');
  await aborted;
  let text = '';
  const dec = new TextDecoder();
  for (let i = 0; i < 10_000; i++) {
    const { done, value } = await reader.read();
    if (done) break;
    text += dec.decode(value, { stream: true });
  }
  assert.match(text, /"code":"sluice_stream_cancelled"/);
  const after = await rawStream(`${b.url}/streams/${id}`, { headers: auth(KEY) });
  assert.match(after.text, /"code":"sluice_stream_cancelled"/, 'the log on Redis ends with the same event');
});

test('Redis killed mid-stream: the client reading directly gets its whole stream; a reader on B ends with sluice_resume_log_lost', async (t) => {
  const r = await startRedis(t);
  const { a, b } = await pair(t, r.url);
  const body = chatBody(SLOW(60, 20));
  const res = await post(`${a.url}/chat/completions`, body, { 'x-sluice-resume': '1', ...auth(KEY) });
  assert.equal(res.status, 200);
  const id = String(res.headers.get('x-sluice-stream-id'));
  const following = rawStream(`${b.url}/streams/${id}`, { headers: auth(KEY) });
  await new Promise((res2) => setTimeout(res2, 200));
  await r.kill();
  const text = await res.text();
  assert.ok(text.trimEnd().endsWith('data: [DONE]'), text.slice(-300));
  assert.doesNotMatch(text, /"error"/);
  const f = await following;
  assert.match(f.text, /"code":"sluice_resume_log_lost"/);
  assert.ok(!f.text.includes('[DONE]'), 'a cut replay never looks complete');
  // A resume attempted while Redis is down: a clear 503, not a hang and not a 404 that says the stream never was.
  const down = await fetch(`${b.url}/streams/${id}`, { headers: auth(KEY) });
  assert.equal(down.status, 503);
  assert.equal(((await down.json()) as { error: { code: string } }).error.code, 'sluice_resume_log_lost');
});

test('the owner instance killed (SIGKILL): a reader on B gets sluice_resume_owner_lost, not a hang', async (t) => {
  const r = await startRedis(t);
  const s = await sim(t);
  const config = tmpFile('sluice.yaml', `upstreams: [{ url: "${s.url}", name: sim1, dialect: vllm }]\nstate: { url: "${r.url}" }\napi_keys: ["${KEY}"]\n`);
  const owner = await serveOnPort(t, ['--config', config]);
  const b = await gateway(t, { upstreams: [{ url: s.url, name: 'sim1', dialect: 'vllm' }], state: { url: r.url }, api_keys: [KEY] });
  const first = await rawStream(`${owner.url}/chat/completions`, { body: chatBody(SLOW(400, 20)), headers: { 'x-sluice-resume': '1', ...auth(KEY) }, cutAfter: 3 });
  const id = String(first.headers['x-sluice-stream-id']);
  const following = rawStream(`${b.url}/streams/${id}?after=${events(first.frames).length}`, { headers: auth(KEY) });
  await new Promise((res) => setTimeout(res, 200));
  owner.child.kill('SIGKILL');
  await owner.exited;
  const f = await following;
  assert.equal(f.status, 200);
  assert.match(f.text, /"code":"sluice_resume_owner_lost"/);
});

test('--workers 2 with state.url redis://: a stream cut on one worker is resumed on the other', async (t) => {
  const r = await startRedis(t);
  const port = await freePort();
  const config = tmpFile('sluice.yaml', `sim: { ttft_ms: 0, itl_ms: 20, tokens: 30 }\nstate: { url: "${r.url}" }\ndrain: { announce_ms: 0 }\n`);
  const gw = await runCli(['serve', '--workers', '2', '--port', String(port), '--config', config], {}, /workers: 2 processes share the port/);
  t.after(() => stop(gw));
  assert.equal(gw.code, null, gw.stderr);
  const url = `http://127.0.0.1:${port}/v1`;
  const body = { model: 'sluice-sim', stream: true, messages: [{ role: 'user', content: 'hi' }] };
  const whole = events((await rawStream(`${url}/chat/completions`, { body, headers: { connection: 'close' } })).frames);
  // Connections are handed out in turn: of two fresh connections in a row, one lands on each worker.
  for (let i = 0; i < 2; i++) {
    const first = await rawStream(`${url}/chat/completions`, { body, headers: { 'x-sluice-resume': '1', connection: 'close' }, cutAfter: 5 });
    const id = String(first.headers['x-sluice-stream-id']);
    const rest = await rawStream(`${url}/streams/${id}?after=${events(first.frames).length}`, { headers: { connection: 'close' } });
    assert.equal(rest.status, 200, rest.text);
    assert.equal(chatText([...events(first.frames), ...events(rest.frames)]), chatText(whole));
  }
  // Both workers served: each numbers its requests after a prefix of its own.
  const prefixes = new Set([...gw.stdout.matchAll(/"id":"(req_[0-9a-f]{12})[0-9a-f]{6}"/g)].map((m) => m[1]));
  assert.equal(prefixes.size, 2, gw.stdout);
});

test('Redis frozen (SIGSTOP) mid-stream: the direct client gets its whole stream, a reader on B ends with sluice_resume_log_lost', async (t) => {
  const r = await startRedis(t);
  const { a, b } = await pair(t, r.url);
  const res = await post(`${a.url}/chat/completions`, chatBody(SLOW(80, 25)), { 'x-sluice-resume': '1', ...auth(KEY) });
  assert.equal(res.status, 200);
  const id = String(res.headers.get('x-sluice-stream-id'));
  const following = rawStream(`${b.url}/streams/${id}`, { headers: auth(KEY) });
  await new Promise((res2) => setTimeout(res2, 200));
  r.pause();
  t.after(() => r.resume());
  const text = await res.text();
  assert.ok(text.trimEnd().endsWith('data: [DONE]'), text.slice(-300));
  assert.doesNotMatch(text, /"error"/);
  const f = await following;
  assert.match(f.text, /"code":"sluice_resume_log_lost"/);
  r.resume();
});

test('a Responses background response created on A is retrieved, replayed and cancelled through B', async (t) => {
  const r = await startRedis(t);
  const { s, a, b } = await pair(t, r.url);
  const onA = new OpenAI({ baseURL: a.url, apiKey: KEY, maxRetries: 0 });
  const onB = new OpenAI({ baseURL: b.url, apiKey: KEY, maxRetries: 0 });
  const completed = once(s.events, 'completed');
  const done = await onA.responses.create({ model: 'sluice-sim', input: 'Hello', background: true, ...SLOW(10, 10) } as unknown as OpenAI.Responses.ResponseCreateParamsNonStreaming);
  await completed;
  const final = await onB.responses.retrieve(done.id);
  assert.equal(final.status, 'completed');
  let text = '';
  for await (const e of await onB.responses.retrieve(done.id, { stream: true })) if (e.type === 'response.output_text.delta') text += e.delta;
  assert.equal(text, final.output_text);
  const started = once(s.events, 'request');
  const long = await onA.responses.create({ model: 'sluice-sim', input: 'Hello', background: true, ...SLOW(400, 20) } as unknown as OpenAI.Responses.ResponseCreateParamsNonStreaming);
  await started;
  const aborted = once(s.events, 'aborted');
  assert.equal((await onB.responses.cancel(long.id)).status, 'cancelled');
  await aborted;
  assert.equal((await onB.responses.retrieve(long.id)).status, 'cancelled');
});
