import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gateway, sim, post, chatBody, httpServer } from './helpers/gateway.ts';

/** Reads one sample's value from a Prometheus text exposition; undefined when absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_:]+)(\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got: Record<string, string> = {};
    for (const kv of (m[3] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) got[kv[1] as string] = kv[2] as string;
    if (Object.entries(labels).every(([k, v]) => got[k] === v) && Object.keys(got).length === Object.keys(labels).length) return Number(m[4]);
  }
  return undefined;
}

const scrape = async (url: string, headers: Record<string, string> = {}): Promise<string> => {
  const res = await fetch(url.replace(/\/v1$/, '/metrics'), { headers });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return res.text();
};

test('metrics after streams that complete, abort, time out and fail match what clients and the upstream saw', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 20, itlMs: 5, tokens: 6 } });
  const g = await gateway(t, { upstreams: [{ url: s.url, name: 'gpu1' }], timeouts: { first_byte_ms: 300 } });
  const chat = `${g.url}/chat/completions`;
  let completion = 0;
  let prompt = 0;
  for (let i = 0; i < 2; i++) {
    const text = await (await post(chat, chatBody({ stream_options: { include_usage: true } }))).text();
    const usage = JSON.parse(text.split('\n\n').filter((f) => f.includes('"usage":{')).at(-1)!.slice(6)).usage as { prompt_tokens: number; completion_tokens: number };
    completion += usage.completion_tokens;
    prompt += usage.prompt_tokens;
  }
  const unary = (await (await post(chat, chatBody({ stream: false }))).json()) as { usage: { prompt_tokens: number; completion_tokens: number } };
  completion += unary.usage.completion_tokens;
  prompt += unary.usage.prompt_tokens;
  // A timeout, an upstream failure, and a client that leaves mid-stream.
  await (await post(chat, chatBody({ sim: { ttft_ms: 5_000 } }))).text();
  await (await post(chat, chatBody({ sim: { fail: 'status', fail_status: 400 } }))).text();
  const ac = new AbortController();
  const res = await post(chat, chatBody({ sim: { itl_ms: 200, tokens: 50 } }), {}, ac.signal);
  const reader = res.body!.getReader();
  await reader.read();
  ac.abort();
  await reader.read().catch(() => {});
  // A model nobody serves: counted as rejected, and its name never becomes a label.
  assert.equal((await post(chat, chatBody({ model: 'no-such-model-xyz' }))).status, 404);
  const deadline = Date.now() + 5_000;
  while (g.logs.length < 7 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));

  const m = await scrape(g.url);
  const req = (outcome: string, model = 'sluice-sim', upstream = 'gpu1') => sample(m, 'sluice_requests_total', { endpoint: '/v1/chat/completions', model, upstream, outcome });
  assert.equal(req('completed'), 3);
  assert.equal(req('timeout'), 1);
  assert.equal(req('upstream_error'), 1);
  assert.equal(req('client_aborted'), 1);
  assert.equal(req('rejected', '', ''), 1);
  assert.ok(!m.includes('no-such-model-xyz'), 'an unknown model name is not a label');
  const aborted = g.logs.find((l) => l.outcome === 'client_aborted');
  assert.equal(aborted?.tokens_source, 'reported', 'the simulator (vLLM) reports usage on every chunk: the aborted stream is metered exactly');
  const reported = { model: 'sluice-sim', source: 'reported' };
  assert.equal(sample(m, 'sluice_tokens_total', { ...reported, type: 'completion' }), completion + (aborted?.tokens_out ?? 0));
  assert.equal(sample(m, 'sluice_tokens_total', { ...reported, type: 'prompt' }), prompt + (aborted?.tokens_in ?? 0));
  const genAi = { gen_ai_operation_name: 'chat', gen_ai_request_model: 'sluice-sim' };
  assert.equal(sample(m, 'gen_ai_server_time_to_first_token_seconds_count', genAi), 2, 'TTFT for the completed streams');
  assert.equal(sample(m, 'gen_ai_server_time_per_output_token_seconds_count', genAi), 2);
  const tpot = sample(m, 'gen_ai_server_time_per_output_token_seconds_sum', genAi)! / 2;
  assert.ok(tpot >= 0.003 && tpot < 0.05, `time per output token ${tpot}s follows the simulator's 5 ms`);
  const ttft = sample(m, 'gen_ai_server_time_to_first_token_seconds_sum', genAi)! / 2;
  assert.ok(ttft >= 0.018 && ttft < 0.5, `time to first token ${ttft}s includes the simulator's 20 ms`);
  assert.equal(sample(m, 'gen_ai_server_request_duration_seconds_count', genAi), 6);
  assert.equal(sample(m, 'gen_ai_server_time_to_first_token_seconds_bucket', { ...genAi, le: '0.001' }), 0, 'OpenTelemetry bucket boundaries');
  assert.notEqual(sample(m, 'gen_ai_server_time_to_first_token_seconds_bucket', { ...genAi, le: '7.5' }), undefined);
  assert.equal(sample(m, 'sluice_streams_in_flight', { model: 'sluice-sim' }), 0);
  assert.equal(sample(m, 'sluice_upstream_up', { upstream: 'gpu1' }), 1);
  assert.equal(sample(m, 'sluice_upstream_in_flight', { upstream: 'gpu1' }), 0);
  assert.equal(sample(m, 'sluice_overhead_seconds_count'), 6, 'every request that was sent upstream');
  assert.ok(sample(m, 'sluice_overhead_seconds_sum')! / 6 < 0.05);
});

test('failovers are counted by reason; heartbeats are counted', async (t) => {
  const down = await httpServer(t, (req, res) => {
    if (req.url === '/v1/models') return void res.end(JSON.stringify({ data: [{ id: 'm' }] }));
    res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":{"message":"overloaded"}}');
  });
  const s = await sim(t, { models: ['m'], timing: { ttftMs: 150, itlMs: 1, tokens: 2 } });
  const g = await gateway(t, { upstreams: [{ url: down.url, name: 'down', models: ['m'] }, { url: s.url, name: 'up', models: ['m'] }], heartbeat_ms: 40 });
  // Both replicas are tried in turn; the first to be tried may be either, so send until one fails over.
  for (let i = 0; i < 4; i++) assert.ok((await (await post(`${g.url}/chat/completions`, chatBody({ model: 'm' }))).text()).includes('[DONE]'));
  const m = await scrape(g.url);
  assert.ok((sample(m, 'sluice_failovers_total', { reason: 'status_5xx' }) ?? 0) >= 1);
  assert.ok((sample(m, 'sluice_heartbeats_total') ?? 0) >= 4, 'a 150 ms first token with 40 ms heartbeats');
});

test('/metrics is behind the client keys when there are any, and gone when metrics are off', async (t) => {
  const g = await gateway(t, { api_keys: ['sk-team-0123456789'] });
  assert.equal((await fetch(g.url.replace(/\/v1$/, '/metrics'))).status, 401);
  await scrape(g.url, { authorization: 'Bearer sk-team-0123456789' });
  const off = await gateway(t, { metrics: { enabled: false } });
  assert.equal((await fetch(off.url.replace(/\/v1$/, '/metrics'))).status, 404);
});
