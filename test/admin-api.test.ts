import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chatBody, gateway, post, sim } from './helpers/gateway.ts';
import { startRedis } from './helpers/redis.ts';

// The admin HTTP API (issue 14): the operations of `sluice keys` and `sluice usage` under /admin/, only with
// admin_key and only for it, on SQLite and on a Redis shared by two instances; and a hostile client's inputs.

const ADMIN = 'admin-0123456789abcdef';
const A = { authorization: `Bearer ${ADMIN}` };

const tempState = (): string => `sqlite:${join(mkdtempSync(join(tmpdir(), 'sluice-admin-')), 'state.db')}`;

async function call(base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = A): Promise<{ status: number; json: Record<string, unknown>; headers: Headers }> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, json: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>), headers: res.headers };
}

async function adminGateway(t: TestContext, state: string | undefined, extra: Record<string, unknown> = {}) {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 0, tokens: 3 } });
  const g = await gateway(t, { upstreams: [{ url: s.url, dialect: 'vllm' }], admin_key: ADMIN, ...(state ? { state: { url: state, refresh_ms: 100, ledger_flush_ms: 50 } } : {}), ...extra });
  return { g, root: g.url.replace(/\/v1$/, '') };
}

const errorCode = (r: { json: Record<string, unknown> }): unknown => (r.json['error'] as { code?: unknown } | undefined)?.code;

test('key lifecycle through the admin API: create (the key once), list, get, update, revoke, usage by key and model', async (t) => {
  const { g, root } = await adminGateway(t, tempState());
  const made = await call(root, 'POST', '/admin/keys', { name: 'team-a', rpm: 60, tpm: 10_000, models: ['sluice-sim'], expires: '2099-01-31' });
  assert.equal(made.status, 201);
  const key = made.json['key'] as string;
  assert.match(key, /^sk-sluice-[A-Za-z0-9_-]{43}$/);
  assert.deepEqual({ ...made.json, key: undefined, created_at: undefined }, {
    name: 'team-a', prefix: key.slice(0, 16), rpm: 60, tpm: 10_000, concurrency: null, models: ['sluice-sim'], expires_at: '2099-01-31T00:00:00.000Z',
    created_at: undefined, last_used_at: null, revoked_at: null, status: 'active', key: undefined,
  });
  // Usable at once on this gateway (it refreshes its keys after a change).
  const used = await post(`${g.url}/chat/completions`, chatBody({ stream: false }), { authorization: `Bearer ${key}` });
  assert.equal(used.status, 200);
  assert.equal(used.headers.get('x-ratelimit-remaining-requests'), '59');
  const list = await call(root, 'GET', '/admin/keys');
  assert.equal(list.status, 200);
  assert.equal(list.json['object'], 'list');
  const rows = list.json['data'] as Array<Record<string, unknown>>;
  assert.deepEqual(rows.map((r) => r['name']), ['team-a']);
  assert.ok(!JSON.stringify(list.json).includes(key.slice(16)), 'the key is never shown again');
  assert.equal((await call(root, 'POST', '/admin/keys', { name: 'team-a' })).status, 409);
  const patched = await call(root, 'PATCH', '/admin/keys/team-a', { rpm: null, concurrency: 3 });
  assert.equal(patched.status, 200);
  assert.deepEqual([patched.json['rpm'], patched.json['tpm'], patched.json['concurrency']], [null, 10_000, 3]);
  assert.equal((await call(root, 'GET', '/admin/keys/team-a')).json['concurrency'], 3);
  await new Promise((r) => setTimeout(r, 200));
  const usage = await call(root, 'GET', '/admin/usage?by=model&since=2020-01-01');
  assert.equal(usage.status, 200);
  assert.equal(usage.json['by'], 'model');
  const u = (usage.json['data'] as Array<Record<string, unknown>>)[0];
  assert.deepEqual([u?.['model'], u?.['requests'], u?.['completion_tokens'], u?.['outcomes']], ['sluice-sim', 1, 3, { completed: 1 }]);
  assert.deepEqual((await call(root, 'GET', '/admin/usage?key=nobody')).json['data'], []);
  const revoked = await call(root, 'DELETE', '/admin/keys/team-a');
  assert.equal(revoked.status, 200);
  assert.equal(revoked.json['status'], 'revoked');
  assert.equal((await call(root, 'DELETE', '/admin/keys/team-a')).status, 404, 'no live key of that name');
  assert.equal((await post(`${g.url}/chat/completions`, chatBody(), { authorization: `Bearer ${key}` })).status, 401, 'refused at once here');
});

test('without admin_key there is no /admin/; a client key never opens it, static or stored', async (t) => {
  const state = tempState();
  const s = await sim(t);
  const plain = await gateway(t, { upstreams: [{ url: s.url, dialect: 'vllm' }], state: { url: state } });
  const root = plain.url.replace(/\/v1$/, '');
  const none = await call(root, 'GET', '/admin/keys');
  assert.equal(none.status, 404);
  assert.equal(errorCode(none), 'not_found');
  assert.equal((await call(root, 'GET', '/admin/keys', undefined, {})).status, 404);

  const { root: r2 } = await adminGateway(t, state, { api_keys: ['sk-static-0123456789'] });
  const made = await call(r2, 'POST', '/admin/keys', { name: 'client' });
  const clientKey = made.json['key'] as string;
  for (const headers of [{}, { authorization: `Bearer ${clientKey}` }, { authorization: 'Bearer sk-static-0123456789' }, { authorization: `Bearer ${ADMIN}x` }, { authorization: `Basic ${Buffer.from(`admin:${ADMIN}`).toString('base64')}` }, { authorization: ADMIN }]) {
    for (const [method, path] of [['GET', '/admin/keys'], ['POST', '/admin/keys'], ['GET', '/admin/usage'], ['GET', '/admin/nothing'], ['DELETE', '/admin/keys/client']]) {
      const r = await call(r2, method as string, path as string, method === 'POST' ? { name: 'x' } : undefined, headers);
      assert.equal(r.status, 401, `${method} ${path} with ${JSON.stringify(headers)}`);
      assert.equal(errorCode(r), 'invalid_api_key');
      assert.equal(r.headers.get('www-authenticate'), 'Bearer');
    }
  }
  assert.equal((await call(r2, 'GET', '/admin/keys/client')).json['status'], 'active', 'nothing was revoked');
  // The admin key is not a client key either.
  assert.equal((await post(`${r2}/v1/chat/completions`, chatBody(), A)).status, 401);
});

test('hostile input: bad JSON, wrong types, unknown fields, huge bodies, bad names, path tricks, wrong methods', async (t) => {
  const { root } = await adminGateway(t, tempState());
  const cases: Array<[string, string, unknown, number, string]> = [
    ['POST', '/admin/keys', '{"name": "x"', 400, 'sluice_invalid_json'],
    ['POST', '/admin/keys', '[1,2]', 400, 'sluice_invalid_request'],
    ['POST', '/admin/keys', 'null', 400, 'sluice_invalid_request'],
    ['POST', '/admin/keys', { name: 5 }, 400, 'sluice_invalid_request'],
    ['POST', '/admin/keys', { name: '../etc' }, 400, 'sluice_invalid_request'],
    ['POST', '/admin/keys', { name: 'x'.repeat(65) }, 400, 'sluice_invalid_request'],
    ['POST', '/admin/keys', { name: 'ok', rpm: '10' }, 400, 'sluice_invalid_request'],
    ['POST', '/admin/keys', { name: 'ok', rpm: 1.5 }, 400, 'sluice_invalid_request'],
    ['POST', '/admin/keys', { name: 'ok', rpm: -1 }, 400, 'sluice_invalid_request'],
    ['POST', '/admin/keys', { name: 'ok', rpm: null }, 400, 'sluice_invalid_request'],
    ['POST', '/admin/keys', { name: 'ok', tpm: 1e300 }, 400, 'sluice_invalid_request'],
    ['POST', '/admin/keys', { name: 'ok', models: 'a,b' }, 400, 'sluice_invalid_request'],
    ['POST', '/admin/keys', { name: 'ok', models: [] }, 400, 'sluice_invalid_request'],
    ['POST', '/admin/keys', { name: 'ok', models: [1] }, 400, 'sluice_invalid_request'],
    ['POST', '/admin/keys', { name: 'ok', expires: 'tomorrow' }, 400, 'sluice_invalid_request'],
    ['POST', '/admin/keys', { name: 'ok', __proto__: { rpm: 1 }, hash: 'f'.repeat(64) }, 400, 'sluice_invalid_request'],
    ['POST', '/admin/keys', { name: 'ok', revoked_at: 1 }, 400, 'sluice_invalid_request'],
    ['PATCH', '/admin/keys/nobody', { rpm: 5 }, 404, 'not_found'],
    ['PATCH', '/admin/keys/nobody', {}, 400, 'sluice_invalid_request'],
    ['DELETE', '/admin/keys/nobody', undefined, 404, 'not_found'],
    ['GET', '/admin/keys/nobody', undefined, 404, 'not_found'],
    ['GET', '/admin/keys/..%2F..%2Fetc', undefined, 400, 'sluice_invalid_request'],
    ['GET', '/admin/keys/%E0%A4%A', undefined, 400, 'sluice_invalid_request'],
    ['GET', '/admin/keys/a/b', undefined, 404, 'not_found'],
    ['GET', '/admin/keys/', undefined, 404, 'not_found'],
    ['GET', '/admin/usage?by=week', undefined, 400, 'sluice_invalid_request'],
    ['GET', '/admin/usage?since=yesterday', undefined, 400, 'sluice_invalid_request'],
    ['GET', '/admin/usage?key=a&key=b', undefined, 400, 'sluice_invalid_request'],
    ['GET', '/admin/usage?drop=table', undefined, 400, 'sluice_invalid_request'],
    ['PUT', '/admin/keys', { name: 'x' }, 405, 'sluice_method_not_allowed'],
    ['POST', '/admin/usage', {}, 405, 'sluice_method_not_allowed'],
  ];
  for (const [method, path, body, status, code] of cases) {
    const r = await call(root, method, path, body);
    assert.equal(r.status, status, `${method} ${path} ${JSON.stringify(body)}: ${JSON.stringify(r.json)}`);
    assert.equal(errorCode(r), code, `${method} ${path}`);
    assert.equal(typeof (r.json['error'] as { message: unknown }).message, 'string');
  }
  // Dot segments as sent (fetch would resolve them): the gateway does not resolve them either.
  for (const [path, status] of [['/admin/../v1/models', 404], ['/admin/keys/../keys', 404], ['/admin/%2e%2e/keys', 404], ['/v1/../admin/keys', 404]] as const) {
    const got = await new Promise<number>((resolve, reject) => {
      const req = request(`${root}/`, { path, headers: path.startsWith('/v1') ? {} : A }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(got, status, path);
  }
  // Not JSON by its Content-Type (what a cross-site form would send): 415.
  const form = await fetch(`${root}/admin/keys`, { method: 'POST', headers: { ...A, 'content-type': 'text/plain' }, body: '{"name":"x"}' });
  assert.equal(form.status, 415);
  // A huge body: refused at the limit, without reading it all.
  const huge = await call(root, 'POST', '/admin/keys', { name: 'big', models: Array.from({ length: 20_000 }, (_, i) => `model-${i}`) });
  assert.equal(huge.status, 413);
  const endless = await new Promise<number>((resolve, reject) => {
    const req = request(`${root}/admin/keys`, { method: 'POST', headers: { ...A, 'content-type': 'application/json', 'transfer-encoding': 'chunked' } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    const chunk = Buffer.alloc(16 * 1024, 0x20);
    let sent = 0;
    const pump = (): void => {
      while (sent < 1024 && req.write(chunk)) sent++;
      if (sent < 1024) req.once('drain', pump);
    };
    pump();
  });
  assert.equal(endless, 413);
  // Nothing was created by any of it.
  assert.deepEqual((await call(root, 'GET', '/admin/keys')).json['data'], []);
});

test('on a Redis shared by two instances: a key made through one instance\'s admin API works on the other, and its revocation too', async (t) => {
  const redis = await startRedis(t);
  const one = await adminGateway(t, redis.url);
  const two = await adminGateway(t, redis.url);
  const made = await call(one.root, 'POST', '/admin/keys', { name: 'shared', rpm: 5 });
  assert.equal(made.status, 201);
  const auth = { authorization: `Bearer ${made.json['key'] as string}` };
  const deadline = Date.now() + 1_000;
  let status = 0;
  while (status !== 200 && Date.now() < deadline) status = (await post(`${two.g.url}/chat/completions`, chatBody({ stream: false }), auth)).status;
  assert.equal(status, 200, 'the other instance knows the key within 1 s');
  const listed = await call(two.root, 'GET', '/admin/keys');
  assert.deepEqual((listed.json['data'] as Array<Record<string, unknown>>).map((k) => [k['name'], k['rpm']]), [['shared', 5]]);
  assert.equal((await call(two.root, 'DELETE', '/admin/keys/shared')).status, 200);
  const refusedBy = Date.now() + 1_000;
  while (status !== 401 && Date.now() < refusedBy) status = (await post(`${one.g.url}/chat/completions`, chatBody({ stream: false }), auth)).status;
  assert.equal(status, 401, 'revoked on the other instance within 1 s');
  // Redis gone: the admin API answers 503 at once rather than hanging.
  await redis.kill();
  const started = performance.now();
  const down = await call(one.root, 'GET', '/admin/keys');
  assert.equal(down.status, 503);
  assert.equal(errorCode(down), 'sluice_state_store_unavailable');
  assert.ok(performance.now() - started < 2_000);
  assert.doesNotMatch(JSON.stringify(down.json), /127\.0\.0\.1|ECONNREFUSED/);
});
