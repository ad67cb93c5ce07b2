import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Upstream } from '../src/upstream/upstream.ts';
import { EngineScraper, metricsUrl } from '../src/routing/engine-scraper.ts';
import { gateway, httpServer, post, chatBody, sim } from './helpers/gateway.ts';

const GOOD = 'vllm:num_requests_waiting{engine="0",model_name="m"} 2.0\nvllm:num_requests_running{engine="0",model_name="m"} 5.0\nvllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25\n';

/** An engine whose `/metrics` the test scripts; `/v1/...` answers as a tiny OpenAI server with model `m`. */
async function engine(t: TestContext, metrics: (req: IncomingMessage, res: ServerResponse) => void) {
  const seen: IncomingMessage[] = [];
  const up = await httpServer(t, (req, res) => {
    if (req.url === '/v1/models') return void res.end(JSON.stringify({ data: [{ id: 'm' }] }));
    if (req.url === '/metrics') {
      seen.push(req);
      return metrics(req, res);
    }
    req.resume();
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.end('data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n');
  });
  return { ...up, seen };
}

function scraper(t: TestContext, url: string, opts: { timeoutMs?: number; maxBytes?: number; metricsUrl?: string; apiKey?: string } = {}): EngineScraper {
  const u = new Upstream({ url, dialect: 'auto', max_connections: 0, ...(opts.apiKey ? { api_key: opts.apiKey } : {}) }, 0, 1_000);
  const s = new EngineScraper(u, metricsUrl(u, opts.metricsUrl), { intervalMs: 50, timeoutMs: opts.timeoutMs ?? 300, maxBytes: opts.maxBytes ?? 64 * 1024 }, () => {});
  t.after(async () => {
    await s.stop();
    await u.close();
  });
  return s;
}

test('the URL: /metrics beside /v1 (at the root for vLLM and SGLang), or metrics_url', () => {
  const u = new Upstream({ url: 'http://gpu1:8000/v1', dialect: 'auto', max_connections: 0 }, 0, 1_000);
  assert.equal(metricsUrl(u, undefined).href, 'http://gpu1:8000/metrics');
  const p = new Upstream({ url: 'http://lb/vllm/gpu1/v1', dialect: 'auto', max_connections: 0 }, 0, 1_000);
  assert.equal(metricsUrl(p, undefined).href, 'http://lb/vllm/gpu1/metrics');
  assert.equal(metricsUrl(u, 'http://gpu1:9090/custom?x=1').href, 'http://gpu1:9090/custom?x=1');
  void u.close();
  void p.close();
});

test('a good scrape is fresh until stale_ms, then unknown', async (t) => {
  const e = await engine(t, (_req, res) => res.end(GOOD));
  const s = scraper(t, e.url);
  await s.scrape();
  assert.equal(s.lastError, undefined);
  const snap = s.latest;
  assert.deepEqual(snap?.load, { waiting: 2, running: 5, kvUsage: 0.25 });
  assert.ok(s.fresh((snap?.at ?? 0) + 1_000, 2_000));
  assert.equal(s.fresh((snap?.at ?? 0) + 2_001, 2_000), undefined, 'stale figures are unknown, not idle');
});

test('garbage, a 404 and an HTML page are failed scrapes that keep no figures', async (t) => {
  for (const answer of ['<html>oops</html>', '\u0000\u0001 binary \uffff', '']) {
    const e = await engine(t, (_req, res) => res.end(answer));
    const s = scraper(t, e.url);
    await s.scrape();
    assert.equal(s.latest, undefined);
    assert.match(s.lastError ?? '', /none of the vLLM or SGLang queue metrics/);
  }
  const missing = await engine(t, (_req, res) => {
    res.statusCode = 404;
    res.end('Not Found');
  });
  const s = scraper(t, missing.url);
  await s.scrape();
  await s.scrape();
  assert.match(s.lastError ?? '', /answered 404/);
  assert.equal(s.failures, 2, 'failures in a row (the interval backs off)');
});

test('a huge answer is cut at max_bytes and the scrape aborted', async (t) => {
  let closed = false;
  const e = await engine(t, (_req, res) => {
    res.on('close', () => (closed = true));
    const line = `vllm:num_requests_waiting{pad="${'x'.repeat(1000)}"} 1\n`;
    // Endless unless the reader stops: bounded only by the scraper's limit.
    const pump = (): void => {
      while (!res.destroyed && res.write(line));
      if (!res.destroyed) res.once('drain', pump);
    };
    pump();
  });
  const s = scraper(t, e.url, { maxBytes: 16 * 1024, timeoutMs: 5_000 });
  await s.scrape();
  assert.equal(s.latest, undefined);
  assert.match(s.lastError ?? '', /more than 16384 bytes/);
  for (let i = 0; i < 100 && !closed; i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(closed, 'the connection was closed, not left streaming');
});

test('silent, trickling and headers-only answers end at timeout_ms', async (t) => {
  const silent = await engine(t, () => {});
  const trickle = await engine(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    const timer = setInterval(() => res.write('v'), 20);
    res.on('close', () => clearInterval(timer));
  });
  const headersOnly = await engine(t, (_req, res) => res.writeHead(200).flushHeaders());
  for (const e of [silent, trickle, headersOnly]) {
    const s = scraper(t, e.url, { timeoutMs: 200 });
    await s.scrape();
    assert.equal(s.latest, undefined);
    assert.match(s.lastError ?? '', /no whole answer within 200 ms/);
  }
});

test('an engine that goes away mid-scrape: a failed scrape; the last figures age out', async (t) => {
  let mode: 'good' | 'cut' = 'good';
  const e = await engine(t, (_req, res) => {
    if (mode === 'good') return void res.end(GOOD);
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(GOOD.length) });
    res.write(GOOD.slice(0, 30));
    setTimeout(() => res.socket?.destroy(), 5);
  });
  const s = scraper(t, e.url);
  await s.scrape();
  const before = s.latest;
  assert.ok(before);
  mode = 'cut';
  await s.scrape();
  assert.ok(s.lastError, 'the cut answer is a failure');
  assert.equal(s.latest, before, 'the last good figures stay, to age');
  assert.equal(s.fresh(before.at + 5_000, 2_000), undefined);
  e.server.close();
  e.server.closeAllConnections();
  await s.scrape();
  assert.ok(s.lastError, 'a refused connection is a failure too');
});

test('credentials go to the upstream\'s own origin only', async (t) => {
  const e = await engine(t, (_req, res) => res.end(GOOD));
  const other = await engine(t, (_req, res) => res.end(GOOD));
  await scraper(t, e.url, { apiKey: 'sk-upstream-secret' }).scrape();
  assert.equal(e.seen[0]?.headers.authorization, 'Bearer sk-upstream-secret');
  await scraper(t, e.url, { apiKey: 'sk-upstream-secret', metricsUrl: `http://localhost:${other.port}/metrics` }).scrape();
  assert.equal(other.seen.length, 1);
  assert.equal(other.seen[0]?.headers.authorization, undefined);
});

test('through the gateway: hostile /metrics on every replica never hold a request up; figures show when good', async (t) => {
  const hanging = await engine(t, () => {});
  const garbage = await engine(t, (_req, res) => res.end('x'.repeat(100_000)));
  const good = await sim(t, { models: ['m'], timing: { ttftMs: 0, itlMs: 0, tokens: 2 } });
  const g = await gateway(t, {
    routing: { strategy: 'prefix-aware', metrics: { interval_ms: 20, timeout_ms: 100, max_bytes: 4096 } },
    upstreams: [
      { url: hanging.url, name: 'hanging' },
      { url: garbage.url, name: 'garbage' },
      { url: good.url, name: 'good' },
    ],
  });
  for (let i = 0; i < 6; i++) {
    const res = await post(`${g.url}/chat/completions`, chatBody({ model: 'm', messages: [{ role: 'user', content: `q${i}` }] }));
    assert.equal(res.status, 200);
    assert.ok((await res.text()).endsWith('data: [DONE]\n\n'));
  }
  assert.ok(g.logs.every((l) => l.outcome === 'completed'));
  let text = '';
  for (let i = 0; i < 100 && !text.includes('sluice_upstream_engine_waiting{upstream="good"}'); i++) {
    await new Promise((r) => setTimeout(r, 20));
    text = await (await fetch(`${g.url.replace(/\/v1$/, '')}/metrics`)).text();
  }
  assert.match(text, /sluice_upstream_engine_waiting\{upstream="good"\} 0/);
  assert.doesNotMatch(text, /sluice_upstream_engine_waiting\{upstream="(hanging|garbage)"\}/, 'unknown figures are absent, not 0');
  for (let i = 0; i < 100 && !g.notices.some((l) => l.includes('upstream garbage: routing cannot read')); i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(g.notices.some((l) => /upstream good: routing reads its engine metrics \(http:\/\/127\.0\.0\.1:\d+\/metrics\)/.test(l)), g.notices.join('\n'));
  assert.ok(g.notices.some((l) => l.includes('upstream garbage: routing cannot read engine metrics') && l.includes('routed by in-flight count')), g.notices.join('\n'));
});

test('scraping only where a strategy reads it: not for least-loaded or round-robin, nor auto with one replica', async (t) => {
  const engines = await Promise.all([0, 1, 2].map(() => engine(t, (_req, res) => res.end(GOOD))));
  const [a, b, c] = engines as [Awaited<ReturnType<typeof engine>>, Awaited<ReturnType<typeof engine>>, Awaited<ReturnType<typeof engine>>];
  const blind = await gateway(t, { routing: { strategy: 'least-loaded', models: { other: 'round-robin' }, metrics: { interval_ms: 10 } }, upstreams: [{ url: a.url }, { url: b.url }] });
  const single = await gateway(t, { routing: { metrics: { interval_ms: 10 } }, upstreams: [{ url: c.url }] });
  for (const g of [blind, single]) {
    const res = await post(`${g.url}/chat/completions`, chatBody({ model: 'm' }));
    assert.equal(res.status, 200);
    await res.text();
  }
  await new Promise((r) => setTimeout(r, 150));
  assert.deepEqual([a.seen.length, b.seen.length, c.seen.length], [0, 0, 0]);
  // A per-model engine-aware strategy scrapes that model's replicas.
  const reading = await gateway(t, { routing: { strategy: 'round-robin', models: { m: 'engine-aware' }, metrics: { interval_ms: 10 } }, upstreams: [{ url: a.url }, { url: b.url }] });
  for (let i = 0; i < 100 && (a.seen.length === 0 || b.seen.length === 0); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(a.seen.length > 0 && b.seen.length > 0);
  void reading;
});
