import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway } from '../src/gateway.ts';
import { ConfigError, validateConfig } from '../src/config/load.ts';
import { sim, post, chatBody, frames } from './helpers/gateway.ts';

test('close() lets in-flight streams finish, then stops', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 30, tokens: 10 } });
  const g = await startGateway({ port: 0, upstreams: [{ url: s.url }], drain: { timeout_ms: 5_000 }, logger: () => {} });
  const res = await post(`${g.url}/chat/completions`, chatBody());
  const closing = g.close();
  const text = await res.text();
  assert.ok(text.endsWith('data: [DONE]\n\n'), 'the stream completed during the drain');
  await closing;
  await assert.rejects(fetch(`${g.url}/models`));
});

test('close() ends streams still running after drain.timeout_ms with an error frame', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 30, tokens: 1_000 } });
  const g = await startGateway({ port: 0, upstreams: [{ url: s.url }], drain: { timeout_ms: 200 }, logger: () => {} });
  const res = await post(`${g.url}/chat/completions`, chatBody());
  const closing = g.close();
  const text = await res.text();
  const last = JSON.parse(frames(text).at(-1)!.slice(6)) as { error: { code: string } };
  assert.equal(last.error.code, 'sluice_shutting_down');
  await closing;
});

test('/health is always up; /ready reports upstreams without secrets', async (t) => {
  const s = await sim(t);
  const g = await startGateway({ port: 0, upstreams: [{ url: s.url, name: 'gpu1', api_key: 'secret-key-xyz' }], logger: () => {} });
  t.after(() => g.close());
  const base = g.url.replace(/\/v1$/, '');
  assert.deepEqual(await (await fetch(`${base}/health`)).json(), { status: 'ok' });
  const res = await fetch(`${base}/ready`);
  assert.equal(res.status, 200);
  const text = await res.text();
  assert.doesNotMatch(text, /secret-key-xyz/);
  const ready = JSON.parse(text) as { status: string; upstreams: Array<{ last_check: string }> };
  assert.equal(ready.status, 'ready');
  const checked = Date.parse(ready.upstreams[0]?.last_check ?? '');
  assert.ok(checked <= Date.now() && checked > Date.now() - 60_000, `last_check ${ready.upstreams[0]?.last_check} is the start-up discovery`);
  assert.deepEqual(ready.upstreams, [{ name: 'gpu1', healthy: true, state: 'up', last_check: ready.upstreams[0]?.last_check, models: ['sluice-sim'] }]);
});

test('/ready with client keys: health for anyone, models and errors only with a valid key', async (t) => {
  const s = await sim(t);
  const g = await startGateway({ port: 0, upstreams: [{ url: s.url, name: 'gpu1' }], api_keys: ['sk-team-0123456789'], logger: () => {} });
  t.after(() => g.close());
  const base = g.url.replace(/\/v1$/, '');
  for (const auth of [undefined, 'Bearer wrong-key-000000']) {
    const res = await fetch(`${base}/ready`, auth ? { headers: { authorization: auth } } : {});
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: 'ready', upstreams: [{ name: 'gpu1', healthy: true }] }, `no model list (${auth ?? 'no key'})`);
  }
  const full = (await (await fetch(`${base}/ready`, { headers: { authorization: 'Bearer sk-team-0123456789' } })).json()) as { upstreams: Array<{ models: string[] }> };
  assert.deepEqual(full.upstreams[0]?.models, ['sluice-sim']);
});

test('drain_timeout_ms still works, as the deprecated alias of drain.timeout_ms; both at once is an error', () => {
  assert.equal(validateConfig({ drain_timeout_ms: 1_234 }).drain.timeout_ms, 1_234);
  assert.equal(validateConfig({}).drain.timeout_ms, 600_000, 'ten minutes: a long generation finishes');
  assert.throws(() => validateConfig({ drain_timeout_ms: 1, drain: { timeout_ms: 2 } }), (e: unknown) => e instanceof ConfigError && /drain_timeout_ms = 1: deprecated alias of drain\.timeout_ms/.test(e.message));
});
