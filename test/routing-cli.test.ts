import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runCli, startCli, stop } from './helpers/cli.ts';

test('sluice sim: the engine flags, and /metrics under vLLM\'s names', async (t) => {
  const r = startCli(['sim', '--port', '0', '--max-batch', '2', '--prefix-cache-tokens', '4096', '--prefill-us-per-token', '50', '--kv-cache-tokens', '1000']);
  t.after(() => stop(r));
  for (let i = 0; i < 300 && !/listening on/.test(r.stdout) && r.code === null; i++) await new Promise((res) => setTimeout(res, 20));
  const url = /listening on (http:\/\/\S+)\/v1/.exec(r.stdout)?.[1];
  assert.ok(url, r.stdout + r.stderr);
  const body = JSON.stringify({ model: 'sluice-sim', messages: [{ role: 'user', content: 'x'.repeat(400) }], max_tokens: 2 });
  for (let i = 0; i < 2; i++) await (await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })).text();
  const metrics = await (await fetch(`${url}/metrics`)).text();
  assert.match(metrics, /^vllm:num_requests_waiting\{engine="0",model_name="sluice-sim"\} 0\.0$/m);
  assert.match(metrics, /^vllm:prefix_cache_hits_total\{engine="0",model_name="sluice-sim"\} [1-9]/m, 'the second request found the first one\'s blocks');
});

test('sluice sim and serve refuse bad engine and routing values with exit code 2', async () => {
  const a = await runCli(['sim', '--max-batch=-1']);
  assert.equal(a.code, 2);
  assert.match(a.stderr, /--max-batch: '-1'/);
  const b = await runCli(['serve', '--port', '0', '--routing', 'fastest']);
  assert.equal(b.code, 2);
  assert.match(b.stderr, /routing\.strategy = "fastest"/);
  const c = await runCli(['serve', '--port', '0'], { SLUICE_ROUTING: 'nearest' });
  assert.equal(c.code, 2);
  assert.match(c.stderr, /routing\.strategy = "nearest"/);
});
