import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chatBody, gateway, once, post, sim } from './helpers/gateway.ts';
import { generateKey, hashKey, shownPrefix } from '../src/auth/api-key.ts';
import { openStore, type UsageRecord } from '../src/state/store.ts';

// The usage ledger (issue 14): one record per request with the log line's figures, for completed, aborted and failed
// streams, matching what the simulator says it sent; written in batches and flushed when the gateway closes.

test('the ledger after completed, aborted and failed streams matches the simulator and the log lines', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 0, tokens: 6 } });
  const state = `sqlite:${join(mkdtempSync(join(tmpdir(), 'sluice-ledger-')), 'state.db')}`;
  const store = await openStore(state);
  const key = generateKey();
  await store.createKey({ name: 'meter', hash: hashKey(key).toString('hex'), prefix: shownPrefix(key), rpm: 100, tpm: null, concurrency: null, models: null, expires_at: null, created_at: Date.now(), revoked_at: null });
  await store.close();
  // A long flush interval: the records reach the store only through close().
  const g = await gateway(t, { upstreams: [{ url: s.url, name: 'sim1', dialect: 'vllm' }], state: { url: state, ledger_flush_ms: 60_000 } });
  const auth = { authorization: `Bearer ${key}` };

  // Completed: all 6 tokens.
  await (await post(`${g.url}/chat/completions`, chatBody(), auth)).text();
  // Aborted by the client after the first tokens: the simulator reports how many it had sent.
  const aborted = once<{ tokensSent: number }>(s.events, 'aborted');
  const ac = new AbortController();
  const res = await post(`${g.url}/chat/completions`, chatBody({ sim: { ttft_ms: 0, itl_ms: 60, tokens: 50 } }), auth, ac.signal);
  const reader = res.body!.getReader();
  let seen = '';
  while ((seen.match(/"content":"[^"]/g) ?? []).length < 3) seen += Buffer.from((await reader.read()).value ?? []).toString();
  ac.abort();
  await reader.read().catch(() => {});
  const sent = (await aborted).tokensSent;
  // Failed mid-stream: the engine drops the connection after 4 tokens.
  await (await post(`${g.url}/chat/completions`, chatBody({ sim: { fail: 'drop', fail_after: 4 } }), auth)).text();
  // Failed before any token: the engine answers 500 (every replica: one here).
  await (await post(`${g.url}/chat/completions`, chatBody({ sim: { fail: 'status', fail_status: 500 } }), auth)).text();
  // Static key or no auth: no key name. Not in this gateway (it has stored keys); a wrong key is not a request.
  assert.equal((await post(`${g.url}/chat/completions`, chatBody(), { authorization: 'Bearer nope' })).status, 401);

  const deadline = Date.now() + 5_000;
  while (g.logs.length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  await g.close();

  const reopened = await openStore(state);
  t.after(() => reopened.close());
  const records: UsageRecord[] = [];
  for await (const r of reopened.readUsage({})) records.push(r);
  assert.equal(records.length, 4, JSON.stringify(records));
  const [done, cut, dropped, failed] = records as [UsageRecord, UsageRecord, UsageRecord, UsageRecord];
  assert.deepEqual([done.outcome, cut.outcome, dropped.outcome, failed.outcome], ['completed', 'client_aborted', 'truncated', 'upstream_error']);
  assert.equal(done.completion_tokens, 6);
  assert.equal(cut.completion_tokens, sent, `the aborted stream: the simulator sent ${sent}`);
  assert.equal(dropped.completion_tokens, 4);
  assert.equal(failed.completion_tokens, null);
  for (const r of [done, cut, dropped]) {
    assert.equal(r.tokens_source, 'reported');
    assert.ok((r.prompt_tokens ?? 0) > 0);
    assert.equal(r.key, 'meter');
    assert.equal(r.model, 'sluice-sim');
    assert.equal(r.upstream, 'sim1');
    assert.equal(r.stream, true);
  }
  assert.equal(done.status, 200);
  assert.ok(done.ttft_ms !== null && done.duration_ms >= done.ttft_ms);
  // The same figures as the log lines, request by request.
  for (const r of records) {
    const line = g.logs.find((l) => l.id === r.request_id);
    assert.ok(line, `a log line for ${r.request_id}`);
    assert.deepEqual(
      [r.prompt_tokens, r.completion_tokens, r.tokens_source, r.outcome, r.status, r.error_code, r.ttft_ms, r.duration_ms],
      [line.tokens_in ?? null, line.tokens_out ?? null, line.tokens_source ?? null, line.outcome, line.status, line.error_code ?? null, line.ttft_ms ?? null, line.duration_ms],
    );
  }
});
