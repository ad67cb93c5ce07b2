import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import WebSocket from 'ws';
import { chatBody, gateway, post, sim } from './helpers/gateway.ts';
import { generateKey, hashKey, shownPrefix } from '../src/auth/api-key.ts';
import { openStore } from '../src/state/store.ts';
import { ConsoleAccess } from '../src/console/access.ts';
import { ConsoleMonitor } from '../src/console/monitor.ts';
import { validateConfig } from '../src/config/load.ts';
import { KeyRing } from '../src/auth/key-ring.ts';
import { KeyChecker } from '../src/auth/key-checker.ts';
import type { HttpRequest } from '../src/http/http-types.ts';
import type { RequestLogEntry } from '../src/generation/request-log.ts';
import type { ConsoleSnapshot } from '../src/console/snapshot.ts';

// The console's JSON and SSE API against a malicious or mistaken client (docs/console.md): who may reach it, what it
// never says, and the bounds on what it keeps. Real gateway, real simulator.

const ADMIN = 'admin-key-0123456789abcdef';
const CLIENT = 'sk-client-0123456789';

interface OpenAIError {
  error: { message: string; type: string; param: unknown; code: string };
}

async function errorOf(r: Response): Promise<OpenAIError['error']> {
  const body = (await r.json()) as OpenAIError;
  assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'param', 'type'], 'OpenAI-shaped');
  return body.error;
}

const origin = (g: { port: number }): string => `http://127.0.0.1:${g.port}`;
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

/** GET with a Host header of one's choice (fetch does not let a caller set Host). */
function rawGet(port: number, path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('on by default on loopback: the page with its CSP, the JSON API; GET only; unknown paths and ids are 404', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 0, tokens: 3 } });
  const g = await gateway(t, { upstreams: [{ url: s.url, name: 'gpu-a' }] });
  const page = await fetch(`${origin(g)}/console`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'none'; script-src 'self'/);
  assert.equal(page.headers.get('x-frame-options'), 'DENY');
  assert.match(await page.text(), /<script type="module" src="\/console\/assets\/console.js">/);
  const timeline = await fetch(`${origin(g)}/console/assets/timeline.js`);
  assert.match(timeline.headers.get('content-type') ?? '', /^text\/javascript/);
  assert.match(await timeline.text(), /export function timelineElement/);

  await (await post(`${g.url}/chat/completions`, chatBody(), { 'x-request-id': 'req-1' })).text();
  const rec = (await (await fetch(`${origin(g)}/console/api/requests/req-1`)).json()) as { upstream: string; outcome: string; tokens_out: number };
  assert.deepEqual([rec.upstream, rec.outcome, rec.tokens_out], ['gpu-a', 'completed', 3]);
  const state = (await (await fetch(`${origin(g)}/console/api/state`)).json()) as ConsoleSnapshot;
  assert.equal(state.upstreams[0]?.name, 'gpu-a');
  assert.equal(state.recent[0]?.id, 'req-1');
  assert.equal(state.upstreams[0]?.ttft_ms?.count, 1);

  const posted = await fetch(`${origin(g)}/console/api/state`, { method: 'POST', body: '{}' });
  assert.equal(posted.status, 405);
  for (const p of ['/console/api/requests/..%2F..%2Fpackage.json', '/console/assets/../../package.json', '/console/assets/%2e%2e/x', '/console/api/requests/%ff', '/console/nope']) {
    const r = await fetch(`${origin(g)}${p}`);
    assert.equal(r.status, 404, p);
    assert.equal((await errorOf(r)).code, 'not_found');
  }
});

test('off when console.enabled is false, and by default on a gateway bound beyond loopback', async (t) => {
  const off = await gateway(t, { console: { enabled: false } });
  assert.equal((await fetch(`${origin(off)}/console`)).status, 404);
  assert.equal((await fetch(`${origin(off)}/console/api/state`)).status, 404);
  const wide = await gateway(t, { host: '0.0.0.0' });
  const r = await fetch(`${origin(wide)}/console/api/state`);
  assert.equal(r.status, 404);
  assert.match((await errorOf(r)).message, /Unknown endpoint/);
  const on = await gateway(t, { host: '0.0.0.0', console: { enabled: true } });
  assert.equal((await fetch(`${origin(on)}/console/api/state`)).status, 200);
});

test('a loopback-only console refuses a client from another address', () => {
  const keys = new KeyRing(new KeyChecker([]), undefined, () => {});
  const fake = (remoteAddress: string): HttpRequest => ({ socket: { remoteAddress }, headers: {} }) as unknown as HttpRequest;
  const byDefault = new ConsoleAccess(validateConfig({}), keys);
  assert.equal(byDefault.refusal(fake('192.0.2.7'))?.error.status, 404);
  assert.equal(byDefault.refusal(fake('::ffff:10.1.2.3'))?.error.status, 404);
  assert.equal(byDefault.refusal(fake('127.0.0.1')), undefined);
  assert.equal(byDefault.refusal(fake('::1')), undefined);
  assert.equal(byDefault.refusal(fake('::ffff:127.0.0.1')), undefined);
  assert.equal(new ConsoleAccess(validateConfig({ console: { enabled: true } }), keys).refusal(fake('192.0.2.7')), undefined);
});

test('with client keys: the admin key opens it (Bearer or Basic), a client key never does; 401s are OpenAI-shaped', async (t) => {
  const g = await gateway(t, { api_keys: [CLIENT], admin_key: ADMIN });
  for (const path of ['/console', '/console/api/state', '/console/api/info', '/console/api/events', '/console/api/requests/x', '/console/assets/console.js']) {
    for (const authorization of [undefined, `Bearer ${CLIENT}`, basic('admin', CLIENT), `Bearer ${ADMIN}x`, basic(ADMIN, 'x'), 'Basic !!!', `Bearer ${ADMIN.slice(0, -1)}`]) {
      const r = await fetch(`${origin(g)}${path}`, { headers: authorization ? { authorization } : {} });
      assert.equal(r.status, 401, `${path} with ${authorization}`);
      assert.match(r.headers.get('www-authenticate') ?? '', /^Basic realm="Sluice console"/);
      const e = await errorOf(r);
      assert.equal(e.type, 'authentication_error');
      assert.equal(e.code, 'invalid_api_key');
    }
  }
  assert.equal((await fetch(`${origin(g)}/console`, { headers: { authorization: `Bearer ${ADMIN}` } })).status, 200);
  assert.equal((await fetch(`${origin(g)}/console/api/state`, { headers: { authorization: basic('anyone', ADMIN) } })).status, 200);
  // The admin key is not a client key.
  assert.equal((await fetch(`${g.url}/models`, { headers: { authorization: `Bearer ${ADMIN}` } })).status, 401);
});

test('with stored keys only, the console needs admin_key too; without one it cannot be opened', async (t) => {
  const state = `sqlite:${join(mkdtempSync(join(tmpdir(), 'sluice-console-')), 'state.db')}`;
  const store = await openStore(state);
  const key = generateKey();
  await store.createKey({ rpm: null, tpm: null, concurrency: null, models: null, expires_at: null, name: 'team-a', hash: hashKey(key).toString('hex'), prefix: shownPrefix(key), created_at: Date.now(), revoked_at: null });
  await store.close();
  const g = await gateway(t, { state: { url: state } });
  const r = await fetch(`${origin(g)}/console/api/state`, { headers: { authorization: `Bearer ${key}` } });
  assert.equal(r.status, 401);
  assert.equal(r.headers.get('www-authenticate'), null, 'no password prompt: there is no admin key to give');
  assert.match((await errorOf(r)).message, /admin_key/);
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 0, tokens: 2 } });
  const withAdmin = await gateway(t, { state: { url: state }, admin_key: ADMIN, upstreams: [{ url: s.url, name: 'gpu-a' }] });
  await (await post(`${withAdmin.url}/chat/completions`, chatBody(), { authorization: `Bearer ${key}` })).text();
  const snap = (await (await fetch(`${origin(withAdmin)}/console/api/state`, { headers: { authorization: `Bearer ${ADMIN}` } })).json()) as ConsoleSnapshot;
  assert.deepEqual(snap.keys, [{ key: 'team-a', requests: 1, tokens_in: snap.recent[0]?.tokens_in, tokens_out: 2 }], 'per-key usage by name');
  assert.equal(snap.recent[0]?.key, 'team-a');
  assert.doesNotMatch(JSON.stringify(snap), new RegExp(key), 'never the key itself');
});

test('cross-site requests are refused whatever cors.origins says; a rebound Host is refused before', async (t) => {
  const g = await gateway(t, { cors: { origins: ['*'] } });
  for (const headers of [{ origin: 'http://evil.example' }, { origin: 'null' }, { 'sec-fetch-site': 'cross-site' }, { origin: `http://127.0.0.1:${g.port + 1}` }]) {
    const r = await fetch(`${origin(g)}/console/api/state`, { headers });
    assert.equal(r.status, 403, JSON.stringify(headers));
    assert.equal((await errorOf(r)).code, 'origin_not_allowed');
  }
  assert.equal((await fetch(`${origin(g)}/console/api/state`, { headers: { origin: origin(g), 'sec-fetch-site': 'same-origin' } })).status, 200);
  const rebound = await rawGet(g.port, '/console/api/state', { host: `attacker.example:${g.port}` });
  assert.equal(rebound.status, 403);
  assert.match(rebound.body, /host_not_allowed/);
});

test('no secret in any console answer: upstream keys and passwords, client keys, the admin key', async (t) => {
  const upstreamKey = 'sk-upstream-SECRET-abc123';
  const password = 'pa55-SECRET-word';
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 0, tokens: 2 } });
  const simPort = new URL(s.url).port;
  const g = await gateway(t, {
    upstreams: [
      { url: s.url, name: 'keyed', api_key: upstreamKey },
      { url: `http://user:${password}@127.0.0.1:${simPort}/v1`, name: 'basic' },
      // Refuses connections: its error is shown, without secrets.
      { url: `http://127.0.0.1:1/v1`, api_key: upstreamKey, models: ['sluice-sim'] },
    ],
    api_keys: [CLIENT],
    admin_key: ADMIN,
  });
  const auth = { authorization: `Bearer ${CLIENT}` };
  for (let i = 0; i < 4; i++) await (await post(`${g.url}/chat/completions`, chatBody(), { ...auth, 'x-request-id': `s-${i}` })).text();
  await (await post(`${g.url}/chat/completions`, chatBody({ model: 'nope' }), auth)).text();
  const admin = { authorization: `Bearer ${ADMIN}` };
  const texts: string[] = [];
  for (const p of ['/console/api/state', '/console/api/info', '/console/api/requests/s-0', '/console/api/requests/s-3']) texts.push(await (await fetch(`${origin(g)}${p}`, { headers: admin })).text());
  const ac = new AbortController();
  const feed = await fetch(`${origin(g)}/console/api/events`, { headers: admin, signal: ac.signal });
  const reader = feed.body!.getReader();
  texts.push(new TextDecoder().decode((await reader.read()).value));
  ac.abort();
  const all = texts.join('\n');
  assert.match(all, /"name":"keyed"/);
  for (const secret of [upstreamKey, password, CLIENT, ADMIN, `user:${password}`, Buffer.from(`user:${password}`).toString('base64')]) assert.ok(!all.includes(secret), `no ${secret}`);
});

test('bounded: the recent ring, hostile model names, and the number of live feeds', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 0, tokens: 1 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }], console: { recent_requests: 5, max_live_clients: 2 } });
  const huge = `<script>${'x'.repeat(100_000)}`;
  for (let i = 0; i < 12; i++) await (await post(`${g.url}/chat/completions`, chatBody({ model: huge }), { 'x-request-id': `r-${i}` })).text();
  const snap = (await (await fetch(`${origin(g)}/console/api/state`)).json()) as ConsoleSnapshot;
  assert.deepEqual(snap.recent.map((r) => r.id), ['r-11', 'r-10', 'r-9', 'r-8', 'r-7']);
  assert.ok(snap.recent.every((r) => (r.model?.length ?? 0) <= 201), 'model names are cut');
  assert.equal((await fetch(`${origin(g)}/console/api/requests/r-0`)).status, 404, 'the oldest left the ring');

  const feeds = [new AbortController(), new AbortController()];
  for (const ac of feeds) {
    const r = await fetch(`${origin(g)}/console/api/events`, { signal: ac.signal });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'text/event-stream; charset=utf-8');
    await r.body!.getReader().read();
  }
  const third = await fetch(`${origin(g)}/console/api/events`);
  assert.equal(third.status, 429);
  assert.equal((await errorOf(third)).code, 'too_many_live_clients');
  feeds[0]!.abort();
  let again = 429;
  for (let i = 0; i < 50 && again === 429; i++) {
    await new Promise((r) => setTimeout(r, 20));
    const r = await fetch(`${origin(g)}/console/api/events`);
    again = r.status;
    if (r.status === 200) await r.body!.cancel();
    else await r.text();
  }
  assert.equal(again, 200, 'a closed feed frees its place');
  feeds[1]!.abort();
});

test('the monitor keeps at most its ring, and TTFT per upstream as p50/p99 over the window', () => {
  let now = 1_000_000;
  const m = new ConsoleMonitor(3, () => now);
  const entry = (id: string, ttft: number): RequestLogEntry => ({ ts: '', id, method: 'POST', path: '/v1/chat/completions', model: 'm', upstream: 'u', status: 200, stream: true, ttft_ms: ttft, tokens_in: 1, tokens_out: 2, tokens_source: 'reported', duration_ms: 5, outcome: 'completed', error_code: undefined });
  for (let i = 1; i <= 100; i++) {
    const e = entry(`e${i}`, i);
    m.started(e, null);
    m.ended(e, null);
  }
  assert.deepEqual(m.recent(10).map((r) => r.id), ['e100', 'e99', 'e98'], 'the newest three, newest first, across the wrap');
  assert.deepEqual(m.recent(2).map((r) => r.id), ['e100', 'e99']);
  assert.equal(m.find('e97'), undefined, 'pushed out of the ring');
  assert.equal(m.find('e98')?.ttft_ms, 98);
  assert.deepEqual(m.ttft().get('u'), { p50: 50, p99: 99, count: 100 });
  // 4,096 TTFT samples are kept: 5,000 more, all of 1 ms, leave none of the first hundred.
  for (let i = 0; i < 5000; i++) {
    const e = entry(`f${i}`, 1);
    m.started(e, null);
    m.ended(e, null);
  }
  assert.deepEqual(m.ttft().get('u'), { p50: 1, p99: 1, count: 4096 });
  assert.deepEqual(m.recent(5).map((r) => r.id), ['f4999', 'f4998', 'f4997']);
  now += 6 * 60_000;
  assert.equal(m.ttft().size, 0, 'samples older than the window are not counted');
  const running = entry('run', 1);
  m.started(running, 'k');
  assert.equal(m.find('run')?.outcome, 'in_flight');
  assert.equal(m.inFlightCount, 1);
});

test('/v1/ws: a create with request_id names the generation, so the console finds it', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 0, tokens: 2 } });
  const g = await gateway(t, { upstreams: [{ url: s.url, name: 'gpu-a' }] });
  const ws = new WebSocket(`ws://127.0.0.1:${g.port}/v1/ws`);
  t.after(() => ws.close());
  await new Promise((r) => ws.once('open', r));
  const done = new Promise<void>((resolve) =>
    ws.on('message', (d) => {
      if ((JSON.parse(String(d)) as { type: string }).type === 'done') resolve();
    }),
  );
  ws.send(JSON.stringify({ type: 'create', id: 'a', request_id: 'ws-req-1', body: { model: 'sluice-sim', messages: [{ role: 'user', content: 'hi' }] } }));
  await done;
  let rec: { upstream?: string; method?: string } = {};
  for (let i = 0; i < 20 && rec.upstream === undefined; i++) {
    const r = await fetch(`${origin(g)}/console/api/requests/ws-req-1`);
    if (r.ok) rec = (await r.json()) as typeof rec;
    else await new Promise((res) => setTimeout(res, 20));
  }
  assert.equal(rec.upstream, 'gpu-a');
  assert.equal(rec.method, 'WS');
  assert.equal(g.logs.at(-1)?.id, 'ws-req-1', 'and the log line carries it');
});
