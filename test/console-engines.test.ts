import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chatBody, gateway, post, sim } from './helpers/gateway.ts';
import type { ConsoleSnapshot } from '../src/console/snapshot.ts';
import type { ConsoleRequest } from '../src/console/monitor.ts';

// The console's live view with the features that feed it: engine figures scraped by routing (issue 17) and
// mid-stream failovers (issue 15) recorded on the request. Real simulators and a real gateway on loopback.

const root = (url: string): string => url.replace(/\/v1$/, '');

test('live view: each upstream shows the queue and KV-cache use its engine reports, while they are fresh', async (t) => {
  const a = await sim(t, { timing: { ttftMs: 5, itlMs: 5, tokens: 4 }, engine: { maxBatch: 4, kvCacheTokens: 10_000 } });
  const b = await sim(t, { timing: { ttftMs: 5, itlMs: 5, tokens: 4 }, engine: { maxBatch: 4, kvCacheTokens: 10_000 } });
  const g = await gateway(t, { upstreams: [{ url: a.url, name: 'a' }, { url: b.url, name: 'b' }], routing: { strategy: 'engine-aware', metrics: { interval_ms: 50 } } });
  let state: ConsoleSnapshot | undefined;
  for (let i = 0; i < 100; i++) {
    state = (await (await fetch(`${root(g.url)}/console/api/state`)).json()) as ConsoleSnapshot;
    if (state.upstreams.every((u) => typeof u.queue === 'number' && typeof u.kv_cache === 'number')) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(state!.upstreams.every((u) => typeof u.queue === 'number' && typeof u.kv_cache === 'number'), JSON.stringify(state?.upstreams));
  for (const u of state!.upstreams) {
    assert.equal(u.queue, 0, 'idle engines queue nothing');
    assert.ok(u.kv_cache! >= 0 && u.kv_cache! <= 1);
  }
});

test('live view: an engine without metrics shows no queue or KV figures rather than zeros', async (t) => {
  const a = await sim(t, { dialect: 'llamacpp' });
  const b = await sim(t, { dialect: 'llamacpp' });
  const g = await gateway(t, { upstreams: [{ url: a.url, name: 'a' }, { url: b.url, name: 'b' }], routing: { strategy: 'engine-aware', metrics: { interval_ms: 50 } } });
  await new Promise((r) => setTimeout(r, 300));
  const state = (await (await fetch(`${root(g.url)}/console/api/state`)).json()) as ConsoleSnapshot;
  for (const u of state.upstreams) {
    assert.equal(u.queue, undefined);
    assert.equal(u.kv_cache, undefined);
  }
});

test('a mid-stream failover is on the request the console shows: from, to, why and when', async (t) => {
  const a = await sim(t, { timing: { ttftMs: 5, itlMs: 5, tokens: 24, fail: 'drop', failAfter: 9 } });
  const b = await sim(t, { timing: { ttftMs: 5, itlMs: 5, tokens: 24 } });
  const g = await gateway(t, { upstreams: [{ url: a.url, name: 'a' }, { url: b.url, name: 'b' }], routing: { strategy: 'least-loaded' }, failover: { mid_stream: true } });
  const res = await post(`${g.url}/chat/completions`, chatBody(), { 'x-request-id': 'req-failover-1' });
  const text = await res.text();
  assert.ok(text.endsWith('data: [DONE]\n\n'), text.slice(-200));
  const rec = (await (await fetch(`${root(g.url)}/console/api/requests/req-failover-1`)).json()) as ConsoleRequest;
  assert.equal(rec.outcome, 'completed');
  assert.equal(rec.events?.length, 1, JSON.stringify(rec));
  const e = rec.events![0]!;
  assert.equal(e.type, 'failover');
  assert.equal(e.from, 'a');
  assert.equal(e.to, 'b');
  assert.ok(e.at_ms > 0 && e.at_ms <= (rec.duration_ms ?? Infinity), JSON.stringify(e));
});
