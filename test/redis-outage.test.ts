import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chatBody, gateway, post, sim } from './helpers/gateway.ts';
import { startRedis } from './helpers/redis.ts';
import { runCli } from './helpers/cli.ts';
import { generateKey, hashKey, shownPrefix } from '../src/auth/api-key.ts';
import { openStore, type KeyLimits, type UsageRecord } from '../src/state/store.ts';
import type { RedisStore } from '../src/state/redis-store.ts';

// Redis killed under a running gateway (issue 14, docs/keys.md "The store being down"): unknown keys stay refused and
// nothing hangs; cached keys keep working; limited keys run on local counters for state.outage_grace_ms, then get
// 503 sluice_state_store_unavailable; the ledger is kept in memory; a warning and the metrics say so; and all of it recovers
// on its own when Redis is back on the same port.

const NO_LIMITS: KeyLimits = { rpm: null, tpm: null, concurrency: null, models: null, expires_at: null };

test('Redis killed mid-run: fail closed, cached keys, local limits for the grace period, then 503; recovery when it is back', async (t) => {
  // Redis with an append-only file synced on every write: its keys survive the SIGKILL, as in a real deployment.
  const dir = mkdtempSync(join(tmpdir(), 'sluice-redis-'));
  const r = await startRedis(t, ['--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir]);
  const store = await openStore(r.url);
  const keys: Record<string, string> = {};
  for (const [name, limits] of [['limited', { rpm: 1000 }], ['free', {}]] as const) {
    const k = (keys[name] = generateKey());
    await store.createKey({ ...NO_LIMITS, ...limits, name, hash: hashKey(k).toString('hex'), prefix: shownPrefix(k), created_at: Date.now(), revoked_at: null });
  }
  await store.close();
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 0, tokens: 3 } });
  const g = await gateway(t, { upstreams: [{ url: s.url, dialect: 'vllm' }], state: { url: r.url, refresh_ms: 100, ledger_flush_ms: 100, outage_grace_ms: 1500 } });
  const auth = (name: string): Record<string, string> => ({ authorization: `Bearer ${keys[name]}` });
  const ask = async (name: string, stream = false): Promise<Response> => {
    const res = await post(`${g.url}/chat/completions`, chatBody({ stream }), name in keys ? auth(name) : { authorization: 'Bearer sk-sluice-not-a-key' });
    await res.clone().text();
    return res;
  };
  const metric = async (name: string): Promise<number> => {
    const text = await (await fetch(`${g.url.replace(/\/v1$/, '')}/metrics`, { headers: auth('free') })).text();
    return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
  };

  for (let i = 0; i < 3; i++) assert.equal((await ask('limited')).status, 200);
  assert.equal((await ask('free')).status, 200);
  assert.equal(await metric('sluice_state_store_up'), 1);
  assert.equal(await metric('sluice_state_store_errors_total'), 0);

  await r.kill();
  const killedAt = performance.now();
  // Unknown keys: 401 at once, as before. Cached keys: served.
  const unknown = await ask('nobody');
  assert.equal(unknown.status, 401);
  assert.ok(performance.now() - killedAt < 1_000, 'no wait on a store that is down');
  assert.equal((await ask('free', true)).status, 200);
  // Limited keys: local counters, with their headers, while within the grace period.
  const local = await ask('limited', true);
  assert.equal(local.status, 200);
  assert.equal(local.headers.get('x-ratelimit-limit-requests'), '1000');
  assert.equal(local.headers.get('x-ratelimit-remaining-requests'), '999', 'fresh local counters');
  assert.ok(performance.now() - killedAt < 1_500, 'still within the grace period');
  assert.equal(await metric('sluice_state_store_up'), 0);
  assert.ok((await metric('sluice_state_store_errors_total')) > 0);
  assert.ok(g.notices.some((l) => /state store redis:\/\/127\.0\.0\.1:\d+: .* failed/.test(l)), g.notices.join('\n'));

  // Past the grace period: limited keys are refused with a 503 that says why; other keys are still served.
  await new Promise((res) => setTimeout(res, Math.max(0, 1_600 - (performance.now() - killedAt))));
  const refused = await ask('limited');
  assert.equal(refused.status, 503);
  assert.equal(refused.headers.get('retry-after'), '1');
  const err = ((await refused.json()) as { error: { code: string; type: string; message: string } }).error;
  assert.equal(err.code, 'sluice_state_store_unavailable');
  assert.equal(err.type, 'server_error');
  assert.match(err.message, /cannot reach its state store/);
  assert.equal((await ask('free')).status, 200);
  const warnings = g.notices.filter((l) => /state store .* failed/.test(l)).length;
  assert.ok(warnings <= 3, `warnings are rate-limited (${warnings})`);
  const sentWhileDown = g.logs.length;

  // Redis is back on the same port: everything recovers without a restart of the gateway.
  await r.restart();
  const deadline = Date.now() + 10_000;
  let back: Response;
  for (;;) {
    back = await ask('limited');
    if (back.status === 200) break;
    assert.ok(Date.now() < deadline, 'limited keys admitted again within 10 s');
    await new Promise((res) => setTimeout(res, 50));
  }
  // Counted in Redis again: the three admissions before the outage plus this one (the local ones are not).
  assert.equal(back.headers.get('x-ratelimit-remaining-requests'), String(1000 - 4));
  assert.equal(await metric('sluice_state_store_up'), 1);
  assert.ok(g.notices.some((l) => /reachable again/.test(l)));

  // The ledger kept what it could not write and wrote it once Redis answered.
  const reopened = await openStore(r.url);
  t.after(() => reopened.close());
  const wanted = new Set(g.logs.slice(0, sentWhileDown).map((l) => l.id));
  let found = new Set<string>();
  while (Date.now() < deadline + 5_000) {
    const records: UsageRecord[] = [];
    for await (const x of reopened.readUsage({})) records.push(x);
    found = new Set(records.map((x) => x.request_id).filter((id) => wanted.has(id)));
    if (found.size === wanted.size) break;
    await new Promise((res) => setTimeout(res, 50));
  }
  assert.equal(found.size, wanted.size, 'every request of the outage is in the ledger');
  assert.equal(sentWhileDown, 8, 'four before the outage, four during it (the 401 is not a generation)');
});

test('a Redis that stops answering (paused): no request waits longer than the command timeout, and it recovers', async (t) => {
  const r = await startRedis(t);
  const store = await openStore(r.url);
  const key = generateKey();
  await store.createKey({ ...NO_LIMITS, rpm: 1000, name: 'limited', hash: hashKey(key).toString('hex'), prefix: shownPrefix(key), created_at: Date.now(), revoked_at: null });
  await store.close();
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 0, tokens: 2 } });
  const g = await gateway(t, { upstreams: [{ url: s.url, dialect: 'vllm' }], state: { url: r.url, refresh_ms: 100, ledger_flush_ms: 100 } });
  const ask = async (k: string): Promise<{ status: number; ms: number; remaining: string | null }> => {
    const started = performance.now();
    const res = await post(`${g.url}/chat/completions`, chatBody({ stream: false }), { authorization: `Bearer ${k}` });
    await res.text();
    return { status: res.status, ms: performance.now() - started, remaining: res.headers.get('x-ratelimit-remaining-requests') };
  };
  assert.equal((await ask(key)).status, 200);
  r.pause();
  t.after(() => r.resume());
  const unknown = await ask('sk-sluice-not-a-key');
  assert.equal(unknown.status, 401);
  assert.ok(unknown.ms < 500, `401 in ${unknown.ms.toFixed(0)} ms: keys are checked in memory`);
  // The first admission waits for the command timeout (1 s), then runs on local counters; the next ones do not wait.
  const first = await ask(key);
  assert.equal(first.status, 200);
  assert.ok(first.ms < 2_500, `admitted in ${first.ms.toFixed(0)} ms`);
  assert.equal(first.remaining, '999', 'local counters');
  const second = await ask(key);
  assert.equal(second.status, 200);
  assert.ok(second.ms < 500, `then in ${second.ms.toFixed(0)} ms`);
  r.resume();
  // Back: admissions are counted in Redis again (the reservation that timed out ran when Redis woke up, so it counts
  // too: a lost reply errs on the side of the limit).
  const check = (await openStore(r.url)) as RedisStore;
  t.after(() => check.close());
  const counted = (): Promise<number> => check.redis.zcard('sluice:rl:{limited}:req');
  const deadline = Date.now() + 10_000;
  let remote = false;
  while (!remote && Date.now() < deadline) {
    const before = await counted();
    const res = await ask(key);
    assert.equal(res.status, 200);
    remote = (await counted()) === before + 1 && Number(res.remaining) === 1000 - before - 1;
    if (!remote) await new Promise((res2) => setTimeout(res2, 100));
  }
  assert.ok(remote, 'counted in Redis again within 10 s');
});

test('sluice serve and sluice keys stop at start-up with one line when Redis cannot be reached; the password is not shown', async (t) => {
  const r = await startRedis(t);
  await r.kill();
  const url = `redis://:open-sesame-123@127.0.0.1:${r.port}`;
  for (const args of [['serve', '--port', '0', '--state', url], ['keys', 'list', '--state', url]]) {
    const run = await runCli(args);
    assert.equal(run.code, 2, run.stderr);
    assert.match(run.stderr, new RegExp(`state\\.url redis://127\\.0\\.0\\.1:${r.port}: cannot connect \\(connect ECONNREFUSED`));
    assert.doesNotMatch(run.stderr + run.stdout, /open-sesame/);
  }
});
