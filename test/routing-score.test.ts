import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseEngineMetrics } from '../src/routing/engine-metrics.ts';
import { rank, rendezvous, score, UNKNOWN_PENALTY, type Candidate, type ScoreParams } from '../src/routing/score.ts';
import { canonicalPrompt, MAX_HASHED_CHARS, PrefixIndex, prefixHashes } from '../src/routing/prefix.ts';
import { validateRequest } from '../src/openai/request.ts';
import { validateConfig } from '../src/config/load.ts';

// vLLM v0.11's /metrics, abridged: histograms and counters around the three gauges routing reads.
const VLLM = `# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="Qwen/Qwen3-8B"} 7.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="Qwen/Qwen3-8B"} 3.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="Qwen/Qwen3-8B"} 0.42
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.001",model_name="Qwen/Qwen3-8B"} 0.0
vllm:prefix_cache_queries_total{engine="0",model_name="Qwen/Qwen3-8B"} 1234.0
`;

test('engine metrics: vLLM and SGLang names, label sets summed, KV averaged', () => {
  assert.deepEqual(parseEngineMetrics(VLLM), { waiting: 3, running: 7, kvUsage: 0.42 });
  const sglang = 'sglang:num_queue_reqs{model_name="m",dp="0"} 2\nsglang:num_queue_reqs{model_name="m",dp="1"} 4\nsglang:num_running_reqs{model_name="m"} 5\nsglang:token_usage{model_name="m",dp="0"} 0.2\nsglang:token_usage{model_name="m",dp="1"} 0.6\n';
  const s = parseEngineMetrics(sglang);
  assert.equal(s?.waiting, 6);
  assert.equal(s?.running, 5);
  assert.ok(Math.abs((s?.kvUsage ?? 0) - 0.4) < 1e-9);
  // Old vLLM's name for the KV gauge; a timestamp after the value; a `}` inside a quoted label value.
  assert.deepEqual(parseEngineMetrics('vllm:gpu_cache_usage_perc{model_name="a}b"} 0.5 1700000000000\nvllm:num_requests_waiting 1\n'), { waiting: 1, running: 0, kvUsage: 0.5 });
});

test('engine metrics: garbage, other engines and bad values are not figures', () => {
  assert.equal(parseEngineMetrics(''), undefined);
  assert.equal(parseEngineMetrics('<html>502 Bad Gateway</html>'), undefined);
  assert.equal(parseEngineMetrics('llamacpp:requests_processing 3\nprocess_cpu_seconds_total 1\n'), undefined);
  assert.equal(parseEngineMetrics('vllm:num_requests_waiting{engine="0" 3\n'), undefined, 'unterminated labels');
  assert.equal(parseEngineMetrics('vllm:num_requests_waiting NaN\nvllm:num_requests_running -1\nvllm:num_requests_running +Inf\n'), undefined);
  assert.equal(parseEngineMetrics(`vllm:num_requests_waiting{x="${'y'.repeat(10_000)}"} 5\n`), undefined, 'an over-long line is skipped');
  assert.deepEqual(parseEngineMetrics('\u0000\uffff\nvllm:num_requests_running 2\n\r\n'), { waiting: 0, running: 2, kvUsage: undefined });
});

const P: ScoreParams = { totalBlocks: 10, prefixWeight: 4, queueThreshold: 8 };
const known = (waiting: number, running: number, kvUsage: number, inFlightAtScrape = 0, inFlight = inFlightAtScrape, extra: Partial<Candidate> = {}): Candidate => ({
  healthy: true,
  inFlight,
  engine: { waiting, running, kvUsage, inFlightAtScrape },
  matched: 0,
  session: 0,
  ...extra,
});
const unknown = (inFlight: number, extra: Partial<Candidate> = {}): Candidate => ({ healthy: true, inFlight, engine: undefined, matched: 0, session: 0, ...extra });

test('engine-aware: the queue decides, the batch and KV usage weigh less', () => {
  assert.ok(Math.abs(score(known(3, 7, 0.5), 'engine-aware', P).cost - 3.7) < 1e-9, 'KV usage up to half costs nothing');
  assert.ok(Math.abs(score(known(0, 0, 1), 'engine-aware', P).cost - 2) < 1e-9, 'a full KV cache costs two queued requests');
  assert.deepEqual(rank([known(0, 1, 0.3), known(0, 1, 0.1, 0, 0, { session: 0.9 })], 'engine-aware', P, 0).order, [1, 0], 'low KV differences are not a cost');
  const { order } = rank([known(2, 0, 0), known(0, 10, 0.2), known(0, 1, 0.9)], 'engine-aware', P, 0);
  assert.deepEqual(order, [1, 2, 0], 'a long queue loses to a big batch; a nearly full KV cache to a lighter one');
});

test('engine-aware: requests sent since the scrape join the queue if there was one, else the batch; ended ones leave', () => {
  // Both looked idle at the scrape; Sluice has sent three to the first since.
  const { order } = rank([known(0, 0, 0, 0, 3), known(0, 0, 0, 0, 0)], 'engine-aware', P, 0);
  assert.deepEqual(order, [1, 0]);
  assert.equal(score(known(0, 0, 0, 0, 3), 'engine-aware', P).queued, 0, 'no queue: they joined the batch');
  assert.equal(score(known(1, 8, 0, 9, 12), 'engine-aware', P).queued, 4, 'a queue: the batch was full, they queue');
  // No queues: in-flight counts decide, as least-loaded's do (a batch of 5 seen, 2 sent since → 7; 6 seen → 6).
  assert.deepEqual(rank([known(0, 5, 0, 5, 7), known(0, 6, 0, 6, 6)], 'engine-aware', P, 0).order, [1, 0]);
  // Four of Sluice's requests ended since: the queue of two empties, then the batch loses two.
  const ended = score(known(2, 5, 0, 6, 2), 'engine-aware', P);
  assert.equal(ended.queued, 0);
  assert.ok(Math.abs(ended.cost - 0.3) < 1e-9);
});

test('stale or missing figures are unknown, not idle: in-flight count plus a penalty', () => {
  assert.equal(score(unknown(0), 'engine-aware', P).cost, UNKNOWN_PENALTY);
  const { order } = rank([unknown(0), known(0, 2, 0.1)], 'engine-aware', P, 0);
  assert.deepEqual(order, [1, 0], 'a known replica with a small batch beats one we know nothing about');
  // Every replica unknown: least-loaded's order.
  assert.deepEqual(rank([unknown(4), unknown(1), unknown(2)], 'engine-aware', P, 0).order, [1, 2, 0]);
});

test('saturated replicas go after the others, and unhealthy ones after all', () => {
  const s = score(known(8, 0, 0), 'engine-aware', P);
  assert.equal(s.saturated, true);
  assert.equal(score(known(7, 0, 0, 0, 1), 'engine-aware', P).saturated, true, 'the engine\'s queue plus what Sluice sent since');
  assert.equal(score(known(100, 0, 0), 'engine-aware', { ...P, queueThreshold: 0 }).saturated, false, 'threshold 0: never');
  const { order } = rank([known(9, 0, 0, 0, 0, { matched: 10 }), known(0, 0, 0, 0, 0, { healthy: false }), known(5, 0, 1)], 'prefix-aware', P, 0);
  assert.deepEqual(order, [2, 0, 1], 'the saturated replica loses its prefix bonus and its place');
});

test('prefix-aware: the longest match wins unless the other replica is prefix.weight requests emptier', () => {
  const { order } = rank([known(0, 2, 0.1), known(2, 2, 0.1, 0, 0, { matched: 9 }), known(0, 2, 0.1, 0, 0, { matched: 3 })], 'prefix-aware', P, 0);
  assert.deepEqual(order, [1, 2, 0]);
  assert.deepEqual(rank([known(0, 0, 0), known(4, 0, 0, 0, 0, { matched: 9 })], 'prefix-aware', P, 0).order, [0, 1], 'a queue of 4 outweighs 90% of the prompt');
  assert.deepEqual(rank([known(0, 0, 0), known(3, 0, 0, 0, 0, { matched: 9 })], 'engine-aware', P, 0).order, [0, 1], 'engine-aware ignores prefixes');
});

test('ties: the session\'s replica, then in turn; least-loaded and round-robin as before', () => {
  const sessions = ['a', 'b', 'c'].map((n) => rendezvous('user-42', n));
  const best = sessions.indexOf(Math.max(...sessions));
  const cands = sessions.map((session) => known(0, 0, 0, 0, 0, { session }));
  for (let start = 0; start < 3; start++) assert.equal(rank(cands, 'prefix-aware', P, start).order[0], best, 'the same replica whatever the rotation');
  assert.equal(rendezvous('user-42', 'a'), rendezvous('user-42', 'a'));
  const firsts = [0, 1, 2].map((start) => rank([unknown(0), unknown(0), unknown(0)], 'engine-aware', P, start).order[0]);
  assert.deepEqual(firsts, [0, 1, 2], 'equal replicas in turn');
  assert.deepEqual(rank([unknown(3), unknown(1), unknown(2)], 'least-loaded', P, 0).order, [1, 2, 0]);
  assert.deepEqual(rank([unknown(3), unknown(1, { healthy: false }), unknown(2)], 'round-robin', P, 1).order, [2, 0, 1]);
});

test('prefix hashes are chained; the index finds leading blocks only and forgets the oldest', () => {
  const a = prefixHashes('x'.repeat(20) + 'y'.repeat(20) + 'z', 10);
  assert.equal(a.length, 4);
  const b = prefixHashes('x'.repeat(20) + 'Y'.repeat(20), 10);
  assert.deepEqual(a.slice(0, 2), b.slice(0, 2));
  assert.notEqual(a[2], b[2]);
  assert.notEqual(prefixHashes('y'.repeat(10) + 'x'.repeat(10), 10)[1], a[1], 'the same block after another prefix is another hash');
  assert.equal(prefixHashes('p'.repeat(MAX_HASHED_CHARS * 4), 256).length, MAX_HASHED_CHARS / 256, 'a huge prompt is hashed up to a bound');
  const index = new PrefixIndex(6);
  index.add(a);
  assert.equal(index.match(a), 4);
  assert.equal(index.match(b), 2);
  index.add(prefixHashes('q'.repeat(30), 10));
  assert.equal(index.size, 6);
  assert.equal(index.match(a), 0, 'its first blocks were the oldest: dropped, so nothing leads');
});

test('the canonical prompt: a conversation\'s next turn starts with the text of the one before', () => {
  const turn1 = validateRequest('chat', { model: 'm', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: [{ type: 'text', text: 'Hi' }] }] });
  const turn2 = validateRequest('chat', {
    model: 'm',
    messages: [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: [{ type: 'text', text: 'Hi' }] },
      { role: 'assistant', content: 'Hello!' },
      { role: 'user', content: 'More' },
    ],
  });
  assert.ok(canonicalPrompt(turn2).startsWith(canonicalPrompt(turn1)));
  assert.ok(canonicalPrompt(turn1).includes('Be brief.'));
  assert.equal(canonicalPrompt(validateRequest('completion', { model: 'm', prompt: 'Once upon' })), 'Once upon');
});

test('config: `routing: prefix-aware` is the strategy; per-model strategies; bad names name the key', () => {
  assert.equal(validateConfig({ routing: 'prefix-aware' }).routing.strategy, 'prefix-aware');
  const c = validateConfig({ routing: { models: { m: 'round-robin' } } });
  assert.equal(c.routing.strategy, 'auto');
  assert.equal(c.routing.models['m'], 'round-robin');
  assert.throws(() => validateConfig({ routing: 'fastest' }), /routing\.strategy = "fastest"/);
});
