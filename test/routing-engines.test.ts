import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { gateway, sim, post, chatBody, frames } from './helpers/gateway.ts';
import type { Simulator } from '../src/sim/server.ts';

// Routing with simulator replicas end to end (issue 17, docs/routing.md): decisions are read from the request log's
// `upstream` and from what each simulator received, never from timings.

const root = (url: string): string => url.replace(/\/v1$/, '');

/** Polls the gateway's /metrics until `pattern` matches (the scraper has seen what the test set up). */
async function metricsMatch(gatewayUrl: string, pattern: RegExp): Promise<string> {
  let text = '';
  for (let i = 0; i < 200; i++) {
    text = await (await fetch(`${root(gatewayUrl)}/metrics`)).text();
    if (pattern.test(text)) return text;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail(`gateway /metrics never matched ${pattern}:\n${text.split('\n').filter((l) => l.startsWith('sluice_upstream_engine') || l.startsWith('sluice_routing')).join('\n')}`);
}

/**
 * Long streams sent straight to a simulator (not through the gateway) to fill its batch and queue; `free` ends them
 * (their client goes away, as the gateway's would), which empties the engine.
 */
async function occupy(t: TestContext, s: Simulator, n: number): Promise<() => void> {
  const ac = new AbortController();
  t.after(() => ac.abort());
  const started: Promise<Response>[] = [];
  for (let i = 0; i < n; i++) started.push(post(`${s.url}/chat/completions`, chatBody({ sim: { itl_ms: 50, tokens: 400 } }), {}, ac.signal));
  for (const r of await Promise.all(started)) void r.text().catch(() => undefined);
  return () => ac.abort();
}

const FAST = { ttftMs: 0, itlMs: 0, tokens: 3 };
const names = ['a', 'b', 'c', 'd'];

function turn(conversation: number, turns: number): Array<{ role: string; content: string }> {
  const messages = [{ role: 'system', content: `You are the routing test, conversation ${conversation}. `.repeat(12) }];
  for (let i = 0; i < turns; i++) {
    messages.push({ role: 'user', content: `Conversation ${conversation}, question ${i}: ${'tell me more about it. '.repeat(15)}` });
    if (i < turns - 1) messages.push({ role: 'assistant', content: `Answer ${i} of conversation ${conversation}. ${'Details follow. '.repeat(15)}` });
  }
  return messages;
}

test('prefix-aware: each conversation\'s turns stick to the replica holding its prefix, and conversations spread', async (t) => {
  const sims = await Promise.all(names.map(() => sim(t, { timing: FAST, engine: { prefixCacheTokens: 100_000 } })));
  const g = await gateway(t, { routing: { strategy: 'prefix-aware', metrics: { interval_ms: 20 } }, upstreams: sims.map((s, i) => ({ url: s.url, name: names[i] as string })) });
  const homes = new Map<number, string[]>();
  for (let k = 1; k <= 3; k++) {
    for (let c = 0; c < 8; c++) {
      const res = await post(`${g.url}/chat/completions`, chatBody({ messages: turn(c, k) }));
      assert.equal(res.status, 200);
      await res.text();
      const line = g.logs.at(-1);
      assert.equal(line?.outcome, 'completed');
      homes.set(c, [...(homes.get(c) ?? []), line?.upstream as string]);
    }
  }
  for (const [c, ups] of homes) assert.equal(new Set(ups).size, 1, `conversation ${c} went to ${ups.join(', ')}`);
  assert.ok(new Set([...homes.values()].map((u) => u[0])).size >= 3, 'first turns were spread over the replicas');
  // The engines agree: every later turn found its history in the replica's prefix cache.
  const hits = sims.reduce((n, s) => n + s.engine.hits, 0);
  const queries = sims.reduce((n, s) => n + s.engine.queries, 0);
  assert.ok(hits / queries > 0.5, `prefix cache hit rate ${(hits / queries).toFixed(2)}`);
});

test('the session header, else the user field, keeps a session on one replica when nothing else decides', async (t) => {
  const sims = await Promise.all(names.map(() => sim(t, { timing: FAST })));
  const g = await gateway(t, { routing: { strategy: 'engine-aware', metrics: { interval_ms: 20 } }, upstreams: sims.map((s, i) => ({ url: s.url, name: names[i] as string })) });
  // "Nothing else decides": every engine idle, and scraped as idle, before each request. Under load the engine that
  // served the last request could still be seen running it, and a busier engine rightly loses to an idle one.
  const idle = async (): Promise<void> => {
    for (let i = 0; i < 100 && sims.some((s) => s.stats.inFlight > 0); i++) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 60));
  };
  for (const [session, how] of [['alice', 'header'], ['bob', 'header'], ['carol', 'user']] as const) {
    const seen = new Set<string>();
    for (let i = 0; i < 5; i++) {
      await idle();
      const res = await post(`${g.url}/chat/completions`, chatBody(how === 'user' ? { user: session } : {}), how === 'header' ? { 'x-session-id': session } : {});
      await res.text();
      seen.add(g.logs.at(-1)?.upstream as string);
    }
    assert.equal(seen.size, 1, `${session}'s requests went to ${[...seen].join(', ')}`);
  }
  const seen = new Set<string>();
  for (let i = 0; i < 4; i++) {
    await idle();
    await (await post(`${g.url}/chat/completions`, chatBody())).text();
    seen.add(g.logs.at(-1)?.upstream as string);
  }
  assert.equal(seen.size, 4, 'without a session, equal replicas take turns');
});

test('a saturated replica is avoided even by the conversation whose prefix it holds', async (t) => {
  const sims = await Promise.all(['a', 'b'].map(() => sim(t, { timing: FAST, engine: { maxBatch: 1 } })));
  const g = await gateway(t, {
    // A prefix worth far more than any queue: only saturation can move the conversation.
    routing: { strategy: 'prefix-aware', prefix: { weight: 1000 }, saturation: { queue_threshold: 2 }, metrics: { interval_ms: 20 } },
    upstreams: sims.map((s, i) => ({ url: s.url, name: names[i] as string })),
  });
  await (await post(`${g.url}/chat/completions`, chatBody({ messages: turn(1, 1) }))).text();
  const home = g.logs.at(-1)?.upstream as string;
  await (await post(`${g.url}/chat/completions`, chatBody({ messages: turn(1, 2) }))).text();
  assert.equal(g.logs.at(-1)?.upstream, home, 'sticks while its replica is free');
  const homeSim = sims[names.indexOf(home)] as Simulator;
  await occupy(t, homeSim, 3); // one running, two waiting
  await metricsMatch(g.url, new RegExp(`sluice_upstream_engine_waiting\\{upstream="${home}"\\} 2`));
  await (await post(`${g.url}/chat/completions`, chatBody({ messages: turn(1, 3) }))).text();
  assert.notEqual(g.logs.at(-1)?.upstream, home, 'the saturated replica was avoided');
  assert.equal(g.logs.at(-1)?.outcome, 'completed');
});

/** One replica with a batch of one, occupied so that its queue is at the threshold (1). */
async function saturatedSetup(t: TestContext, saturation: Record<string, unknown>) {
  const s = await sim(t, { timing: FAST, engine: { maxBatch: 1 } });
  const g = await gateway(t, {
    heartbeatMs: 30,
    // Explicit engine-aware: even a single replica is scraped, for its queue.
    routing: { strategy: 'engine-aware', saturation: { queue_threshold: 1, ...saturation }, metrics: { interval_ms: 20 } },
    upstreams: [{ url: s.url, name: 'only' }],
  });
  const fromGateway: string[] = [];
  s.events.on('request', (r: { headers: Record<string, string> }) => {
    if (r.headers['x-request-id']) fromGateway.push(r.headers['x-request-id']);
  });
  const free = await occupy(t, s, 2);
  await metricsMatch(g.url, /sluice_upstream_engine_waiting\{upstream="only"\} 1/);
  return { s, g, fromGateway, free };
}

test('saturation with action queue: the stream waits in Sluice with heartbeats, then runs when the engine frees up', async (t) => {
  const { g, fromGateway, free } = await saturatedSetup(t, { action: 'queue' });
  const res = await post(`${g.url}/chat/completions`, chatBody());
  assert.equal(res.status, 200, 'a stream\'s headers go out while it waits');
  await metricsMatch(g.url, /sluice_routing_queued 1/);
  assert.equal(fromGateway.length, 0, 'nothing was piled onto the saturated engine');
  const reader = res.body?.getReader();
  assert.ok(reader);
  const decoder = new TextDecoder();
  let text = '';
  // Read the heartbeats sent while queued.
  while (!text.includes(': keep-alive\n\n')) {
    const { value, done } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
  }
  assert.ok(text.startsWith(': keep-alive\n\n'), 'heartbeats before any data');
  assert.equal(fromGateway.length, 0, 'still waiting in Sluice, heartbeats and all');
  // The engine frees up (its other clients leave): the next scrape lets the request go.
  free();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
  }
  assert.ok(text.endsWith('data: [DONE]\n\n'));
  assert.equal(fromGateway.length, 1);
  assert.equal(g.logs.at(-1)?.outcome, 'completed');
  await metricsMatch(g.url, /sluice_routing_queued 0/);
});

test('saturation with action shed: 429 upstreams_saturated with retry-after, streamed or not, before any engine work', async (t) => {
  const { g, fromGateway } = await saturatedSetup(t, { action: 'shed' });
  for (const stream of [true, false]) {
    const res = await post(`${g.url}/chat/completions`, chatBody({ stream }));
    assert.equal(res.status, 429);
    assert.equal(res.headers.get('retry-after'), '1');
    const body = (await res.json()) as { error: { code: string; type: string; message: string } };
    assert.equal(body.error.code, 'upstreams_saturated');
    assert.equal(body.error.type, 'rate_limit_error');
    assert.match(body.error.message, /routing\.saturation\.action is shed/);
  }
  assert.equal(fromGateway.length, 0);
  await metricsMatch(g.url, /sluice_routing_shed_total\{reason="shed"\} 2/);
  assert.ok(g.logs.every((l) => l.error_code === 'SLUICE_UPSTREAMS_SATURATED' && l.status === 429));
});

test('the queue is bounded: max_queue 0 sheds at once; max_wait_ms ends a waiting stream with the error frame', async (t) => {
  const full = await saturatedSetup(t, { action: 'queue', max_queue: 0 });
  const refused = await post(`${full.g.url}/chat/completions`, chatBody());
  assert.equal(refused.status, 429);
  assert.match(((await refused.json()) as { error: { message: string } }).error.message, /max_queue = 0/);

  const slow = await saturatedSetup(t, { action: 'queue', max_wait_ms: 150 });
  const res = await post(`${slow.g.url}/chat/completions`, chatBody());
  assert.equal(res.status, 200);
  const fs = frames(await res.text());
  const last = fs.at(-1) ?? '';
  assert.ok(last.startsWith('data: {"error"'), `ends with an error frame, not [DONE]: ${last}`);
  assert.equal((JSON.parse(last.slice(6)) as { error: { code: string } }).error.code, 'upstreams_saturated');
  const unary = await post(`${slow.g.url}/chat/completions`, chatBody({ stream: false }));
  assert.equal(unary.status, 429);
  assert.equal(slow.fromGateway.length, 0);
  await metricsMatch(slow.g.url, /sluice_routing_shed_total\{reason="timeout"\} 2/);
});

test('a replica that goes away: its figures go stale, requests go to the others', async (t) => {
  const sims = await Promise.all(['a', 'b'].map(() => sim(t, { timing: FAST })));
  const g = await gateway(t, { routing: { strategy: 'engine-aware', metrics: { interval_ms: 20, stale_ms: 100 } }, upstreams: sims.map((s, i) => ({ url: s.url, name: names[i] as string })) });
  await metricsMatch(g.url, /sluice_upstream_engine_waiting\{upstream="a"\} 0/);
  await (sims[0] as Simulator).close();
  await metricsMatch(g.url, /^(?![\s\S]*sluice_upstream_engine_waiting\{upstream="a"\})[\s\S]*sluice_upstream_engine_waiting\{upstream="b"\} 0/);
  for (let i = 0; i < 4; i++) {
    const res = await post(`${g.url}/chat/completions`, chatBody());
    assert.equal(res.status, 200);
    await res.text();
  }
  assert.ok(g.logs.every((l) => l.upstream === 'b' && l.outcome === 'completed'));
});

test('a burst between two scrapes is spread by Sluice\'s own in-flight counts, not sent to the replica that looked idle', async (t) => {
  const sims = await Promise.all(names.map(() => sim(t, { timing: { ttftMs: 0, itlMs: 30, tokens: 20 } })));
  // One scrape, long before the burst: every replica looked idle then.
  const g = await gateway(t, { routing: { strategy: 'engine-aware', metrics: { interval_ms: 60_000, stale_ms: 60_000 } }, upstreams: sims.map((s, i) => ({ url: s.url, name: names[i] as string })) });
  await metricsMatch(g.url, /sluice_upstream_engine_waiting\{upstream="d"\} 0/);
  const burst = await Promise.all(Array.from({ length: 8 }, () => post(`${g.url}/chat/completions`, chatBody())));
  await Promise.all(burst.map((r) => r.text()));
  const per = names.map((n) => g.logs.filter((l) => l.upstream === n).length);
  assert.deepEqual(per, [2, 2, 2, 2], `requests per replica: ${per.join(' / ')}`);
});

test('a client that leaves while queued leaves the queue at once; nothing reaches the engine', async (t) => {
  const { g, fromGateway } = await saturatedSetup(t, { action: 'queue' });
  const ac = new AbortController();
  const res = await post(`${g.url}/chat/completions`, chatBody(), {}, ac.signal);
  assert.equal(res.status, 200);
  await metricsMatch(g.url, /sluice_routing_queued 1/);
  ac.abort();
  await res.text().catch(() => undefined);
  await metricsMatch(g.url, /sluice_routing_queued 0/);
  for (let i = 0; i < 100 && g.logs.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(g.logs.at(-1)?.outcome, 'client_aborted');
  assert.equal(fromGateway.length, 0);
});
