import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { chatBody, gateway, once, post, sim } from './helpers/gateway.ts';
import { runCli } from './helpers/cli.ts';
import { startRedis } from './helpers/redis.ts';
import { openSocket, wsUrl } from './helpers/ws.ts';
import { openStore, type UsageRecord } from '../src/state/store.ts';

// Two gateway instances sharing one real redis-server (issue 14): keys made with the CLI work on both, a revoked key
// is refused by both within 1 s, limits hold across both, and both write one ledger that `sluice usage` reads.

/** `sluice keys create NAME ARGS --state URL`: the printed key. */
async function createKey(state: string, name: string, args: string[] = []): Promise<string> {
  const r = await runCli(['keys', 'create', name, ...args, '--state', state]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

/** A simulator and two gateways on it, both on the Redis at `state`. */
async function pair(t: TestContext, state: string, extra: Record<string, unknown> = {}) {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 0, tokens: 4 } });
  const options = { upstreams: [{ url: s.url, name: 'sim1', dialect: 'vllm' as const }], state: { url: state, refresh_ms: 100, ledger_flush_ms: 100 }, ...extra };
  const a = await gateway(t, options);
  const b = await gateway(t, options);
  return { s, a, b };
}

const auth = (key: string): Record<string, string> => ({ authorization: `Bearer ${key}` });

test('keys through the CLI on redis://: create, list, update, revoke, usage; no password in any output', async (t) => {
  const r = await startRedis(t, ['--requirepass', 'pw-0123456789']);
  const state = `redis://:pw-0123456789@127.0.0.1:${r.port}/1`;
  const made = await runCli(['keys', 'create', 'team-a', '--rpm', '60', '--models', 'sluice-sim', '--state', state]);
  assert.equal(made.code, 0, made.stderr);
  const key = made.stdout.trim();
  assert.match(key, /^sk-sluice-[A-Za-z0-9_-]{43}$/);
  assert.match(made.stderr, new RegExp(`created in redis://127\\.0\\.0\\.1:${r.port}/1 `));
  assert.equal((await runCli(['keys', 'create', 'team-a', '--state', state])).code, 1, 'a live name is taken');
  const updated = await runCli(['keys', 'update', 'team-a', '--rpm', 'none', '--tpm', '5000', '--state', state]);
  assert.equal(updated.code, 0, updated.stderr);
  const rows = JSON.parse((await runCli(['keys', 'list', '--json'], { SLUICE_STATE: state })).stdout) as Array<Record<string, unknown>>;
  assert.deepEqual(
    rows.map((x) => [x['name'], x['prefix'], x['rpm'], x['tpm'], x['models'], x['status']]),
    [['team-a', key.slice(0, 16), null, 5000, ['sluice-sim'], 'active']],
  );
  assert.equal((await runCli(['keys', 'revoke', 'team-a', '--state', state])).code, 0);
  assert.equal((await runCli(['keys', 'revoke', 'team-a', '--state', state])).code, 1);
  const usage = await runCli(['usage', '--json', '--state', state]);
  assert.equal(usage.code, 0, usage.stderr);
  assert.deepEqual(JSON.parse(usage.stdout), []);
  // The secret part of the key is nowhere in Redis; only its hash is.
  const store = await openStore(state);
  t.after(() => store.close());
  const dump = JSON.stringify(await store.listKeys());
  assert.ok(!dump.includes(key.slice(16)));
  const wrong = await runCli(['keys', 'list', '--state', `redis://:nope-not-it@127.0.0.1:${r.port}`]);
  assert.notEqual(wrong.code, 0);
  assert.doesNotMatch(wrong.stderr + wrong.stdout, /nope-not-it|pw-0123456789/);
});

test('a key revoked with the CLI is refused by both gateway instances within 1 s', async (t) => {
  const r = await startRedis(t);
  const key = await createKey(r.url, 'app');
  const { a, b } = await pair(t, r.url, { state: { url: r.url } });
  const body = chatBody({ stream: false });
  for (const g of [a, b]) assert.equal((await post(`${g.url}/chat/completions`, body, auth(key))).status, 200);
  assert.equal((await post(`${a.url}/chat/completions`, body, auth('sk-sluice-unknown'))).status, 401);
  assert.equal((await runCli(['keys', 'revoke', 'app', '--state', r.url])).code, 0);
  const revokedAt = performance.now();
  const refusedAfter = await Promise.all(
    [a, b].map(async (g) => {
      for (let i = 0; i < 1000; i++) {
        const res = await post(`${g.url}/chat/completions`, body, auth(key));
        await res.body?.cancel();
        if (res.status === 401) return performance.now() - revokedAt;
      }
      return Infinity;
    }),
  );
  for (const ms of refusedAfter) assert.ok(ms <= 1_000, `refused ${ms.toFixed(0)} ms after the revoke (default state.refresh_ms)`);
});

test('--rpm 10 across two instances under concurrent load: exactly 10 admissions, the rest 429 with headers', async (t) => {
  const r = await startRedis(t);
  const key = await createKey(r.url, 'ten', ['--rpm', '10']);
  const { s, a, b } = await pair(t, r.url);
  let upstream = 0;
  s.events.on('request', () => upstream++);
  const results = await Promise.all(
    Array.from({ length: 40 }, async (_, i) => {
      const res = await post(`${(i % 2 === 0 ? a : b).url}/chat/completions`, chatBody({ stream: i % 4 < 2 }), auth(key));
      await res.text();
      return res;
    }),
  );
  const ok = results.filter((x) => x.status === 200);
  const limited = results.filter((x) => x.status === 429);
  assert.equal(ok.length, 10);
  assert.equal(limited.length, 30);
  assert.equal(upstream, 10, 'the engine saw exactly the admitted requests');
  // Each admission saw a different count: the script is atomic.
  assert.deepEqual(ok.map((x) => Number(x.headers.get('x-ratelimit-remaining-requests'))).sort((x, y) => x - y), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  for (const x of ok) {
    assert.equal(x.headers.get('x-ratelimit-limit-requests'), '10');
    assert.equal(x.headers.get('x-ratelimit-reset-requests'), '1m0s');
  }
  for (const x of limited) {
    assert.equal(x.headers.get('x-ratelimit-limit-requests'), '10');
    assert.equal(x.headers.get('x-ratelimit-remaining-requests'), '0');
    const ms = Number(x.headers.get('retry-after-ms'));
    assert.ok(ms > 50_000 && ms <= 60_000, `retry-after-ms ${ms}`);
    assert.equal(x.headers.get('retry-after'), String(Math.ceil(ms / 1000)));
  }
  // Admissions on one instance count on the other one.
  const late = await post(`${b.url}/chat/completions`, chatBody(), auth(key));
  assert.equal(late.status, 429);
  assert.equal(((await late.json()) as { error: { code: string } }).error.code, 'rate_limit_exceeded');
});

test('--concurrency 2 holds across both instances, and a slot freed on one is usable on the other', async (t) => {
  const r = await startRedis(t);
  const key = await createKey(r.url, 'two', ['--concurrency', '2']);
  const { a, b } = await pair(t, r.url);
  const slow = chatBody({ sim: { ttft_ms: 0, itl_ms: 100, tokens: 8 } });
  // A burst of six across both: two admitted.
  const burst = await Promise.all(Array.from({ length: 6 }, (_, i) => post(`${(i % 2 ? a : b).url}/chat/completions`, slow, auth(key))));
  const admitted = burst.filter((x) => x.status === 200);
  assert.equal(admitted.length, 2);
  for (const x of burst.filter((y) => y.status === 429)) {
    assert.equal(x.headers.get('retry-after-ms'), '1000');
    assert.match(((await x.json()) as { error: { message: string } }).error.message, /2 concurrent requests/);
  }
  await Promise.all(admitted.map((x) => x.text()));
  // Now one held on each instance; a third on either is refused.
  const one = await post(`${a.url}/chat/completions`, slow, auth(key));
  const two = await post(`${b.url}/chat/completions`, slow, auth(key));
  assert.deepEqual([one.status, two.status], [200, 200]);
  assert.equal((await post(`${a.url}/chat/completions`, slow, auth(key))).status, 429);
  assert.equal((await post(`${b.url}/chat/completions`, slow, auth(key))).status, 429);
  await one.text();
  // Settlement is one script after the stream's end, off the request's path: give it a moment.
  let status = 429;
  for (let i = 0; i < 50 && status === 429; i++) {
    const res = await post(`${b.url}/chat/completions`, chatBody(), auth(key));
    status = res.status;
    await res.text();
    if (status === 429) await new Promise((res2) => setTimeout(res2, 10));
  }
  assert.equal(status, 200, 'the slot freed on a is taken on b');
  await two.text();
});

test('--tpm: reserved at admission on one instance, settled with the simulator\'s real usage, seen by the other', async (t) => {
  const r = await startRedis(t);
  const key = await createKey(r.url, 'tok', ['--tpm', '1000']);
  const { a, b } = await pair(t, r.url);
  const body = chatBody({ max_tokens: 100, stream_options: { include_usage: true }, sim: { ttft_ms: 0, itl_ms: 0, tokens: 7 } });
  const reserve = Math.ceil(JSON.stringify(body).length / 4) + 100;
  const first = await post(`${a.url}/chat/completions`, body, auth(key));
  assert.equal(first.headers.get('x-ratelimit-limit-tokens'), '1000');
  assert.equal(first.headers.get('x-ratelimit-remaining-tokens'), String(1000 - reserve));
  assert.equal(first.headers.get('x-ratelimit-reset-tokens'), '1m0s');
  const text = await first.text();
  const usage = JSON.parse(/"usage":(\{[^}]*\})/.exec(text)?.[1] ?? 'null') as { prompt_tokens: number; completion_tokens: number };
  assert.equal(usage.completion_tokens, 7);
  const used = usage.prompt_tokens + usage.completion_tokens;
  // On the other instance, once the settlement (one script, after the stream) has landed.
  let remaining = '';
  for (let i = 0; i < 50; i++) {
    const second = await post(`${b.url}/chat/completions`, body, auth(key));
    remaining = second.headers.get('x-ratelimit-remaining-tokens') ?? '';
    await second.text();
    if (remaining === String(1000 - used - reserve)) break;
    assert.fail(`the second request saw ${remaining} tokens left, not ${1000 - used - reserve}`);
  }
  // One that does not fit: 429 with the tokens' headers and the time until it fits.
  const big = await post(`${a.url}/chat/completions`, chatBody({ max_tokens: 980 }), auth(key));
  assert.equal(big.status, 429);
  assert.equal(big.headers.get('x-ratelimit-limit-tokens'), '1000');
  assert.match(big.headers.get('x-ratelimit-reset-tokens') ?? '', /^\d+(\.\d+)?s$/);
  assert.ok(Number(big.headers.get('retry-after-ms')) > 50_000);
  assert.match(((await big.json()) as { error: { message: string } }).error.message, /1000 tokens per minute/);
});

test('both instances write one ledger: completed, aborted and failed streams match the simulator, and sluice usage sums them', async (t) => {
  const r = await startRedis(t);
  const key = await createKey(r.url, 'meter');
  const { s, a, b } = await pair(t, r.url);
  const sent: number[] = [];
  for (const g of [a, b]) {
    await (await post(`${g.url}/chat/completions`, chatBody({ sim: { ttft_ms: 0, itl_ms: 0, tokens: 6 } }), auth(key))).text();
    const aborted = once<{ tokensSent: number }>(s.events, 'aborted');
    const ac = new AbortController();
    const res = await post(`${g.url}/chat/completions`, chatBody({ sim: { ttft_ms: 0, itl_ms: 60, tokens: 50 } }), auth(key), ac.signal);
    const reader = res.body!.getReader();
    let seen = '';
    while ((seen.match(/"content":"[^"]/g) ?? []).length < 3) seen += Buffer.from((await reader.read()).value ?? []).toString();
    ac.abort();
    await reader.read().catch(() => {});
    sent.push((await aborted).tokensSent);
    await (await post(`${g.url}/chat/completions`, chatBody({ sim: { fail: 'drop', fail_after: 4, tokens: 10 } }), auth(key))).text();
    await (await post(`${g.url}/chat/completions`, chatBody({ sim: { fail: 'status', fail_status: 500 } }), auth(key))).text();
  }
  const deadline = Date.now() + 5_000;
  while (a.logs.length + b.logs.length < 8 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 10));
  await a.close();
  await b.close();

  const store = await openStore(r.url);
  t.after(() => store.close());
  const records: UsageRecord[] = [];
  for await (const x of store.readUsage({ key: 'meter' })) records.push(x);
  assert.equal(records.length, 8);
  for (const [g, aborted] of [[a, sent[0]], [b, sent[1]]] as const) {
    const mine = records.filter((x) => g.logs.some((l) => l.id === x.request_id));
    assert.equal(mine.length, 4, 'each instance wrote its own four');
    assert.deepEqual(
      mine.map((x) => [x.outcome, x.completion_tokens]),
      [['completed', 6], ['client_aborted', aborted], ['truncated', 4], ['upstream_error', null]],
    );
    for (const x of mine) {
      const line = g.logs.find((l) => l.id === x.request_id)!;
      assert.deepEqual([x.prompt_tokens, x.completion_tokens, x.outcome, x.status, x.duration_ms], [line.tokens_in ?? null, line.tokens_out ?? null, line.outcome, line.status, line.duration_ms]);
    }
  }
  const usage = await runCli(['usage', '--json', '--state', r.url]);
  assert.equal(usage.code, 0, usage.stderr);
  const rows = JSON.parse(usage.stdout) as Array<Record<string, unknown>>;
  assert.deepEqual(rows.map((x) => [x['key'], x['requests'], x['completion_tokens'], x['outcomes']]), [
    ['meter', 8, 2 * (6 + 4) + (sent[0] ?? 0) + (sent[1] ?? 0), { completed: 2, client_aborted: 2, truncated: 2, upstream_error: 2 }],
  ]);
  const list = JSON.parse((await runCli(['keys', 'list', '--json', '--state', r.url])).stdout) as Array<Record<string, unknown>>;
  assert.equal(typeof list[0]?.['last_used_at'], 'string', 'last used comes from the shared ledger');
});

test('the OpenAI SDK retries a 429 from one instance after retry-after-ms, once a stream on the other has freed the slot', async (t) => {
  const r = await startRedis(t);
  const key = await createKey(r.url, 'one', ['--concurrency', '1']);
  const { a, b } = await pair(t, r.url);
  const statuses: Array<{ status: number; at: number }> = [];
  const client = new OpenAI({
    baseURL: b.url,
    apiKey: key,
    maxRetries: 2,
    fetch: async (url, init) => {
      const res = await fetch(url, init);
      statuses.push({ status: res.status, at: performance.now() });
      return res;
    },
  });
  // A stream on a holds the key's only slot for about 400 ms.
  const holder = await post(`${a.url}/chat/completions`, chatBody({ sim: { ttft_ms: 0, itl_ms: 100, tokens: 4 } }), auth(key));
  assert.equal(holder.status, 200);
  const answer = await client.chat.completions.create({ model: 'sluice-sim', messages: [{ role: 'user', content: 'Hi' }] });
  await holder.text();
  assert.ok(answer.choices[0]?.message.content);
  assert.deepEqual(statuses.map((x) => x.status), [429, 200]);
  const waited = (statuses[1]?.at ?? 0) - (statuses[0]?.at ?? 0);
  assert.ok(waited >= 950, `the SDK waited ${waited.toFixed(0)} ms (retry-after-ms: 1000)`);
});

test('WebSocket generations count against the same shared limits as HTTP requests on the other instance', async (t) => {
  const r = await startRedis(t);
  const key = await createKey(r.url, 'ws', ['--rpm', '2']);
  const { a, b } = await pair(t, r.url);
  assert.equal((await post(`${a.url}/chat/completions`, chatBody({ stream: false }), auth(key))).status, 200);
  const socket = await openSocket(t, wsUrl(b.url, '/ws'), [], { headers: auth(key) });
  const body = chatBody({ sim: { ttft_ms: 0, itl_ms: 0, tokens: 2 } });
  socket.send({ type: 'create', id: 'one', endpoint: '/v1/chat/completions', body });
  await socket.waitFor((m) => m['id'] === 'one' && m['type'] === 'done');
  socket.send({ type: 'create', id: 'two', endpoint: '/v1/chat/completions', body });
  const refused = await socket.waitFor((m) => m['id'] === 'two' && m['type'] === 'error');
  assert.equal((refused['error'] as { code: string }).code, 'rate_limit_exceeded');
  assert.equal((await post(`${a.url}/chat/completions`, chatBody({ stream: false }), auth(key))).status, 429);
});
