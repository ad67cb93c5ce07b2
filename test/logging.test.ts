import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chatBody, httpServer, post, sim } from './helpers/gateway.ts';
import { serveOnPort, stop, tmpFile } from './helpers/cli.ts';

// log.level and log.format as an operator sees them: `sluice serve` in its own process, its stdout and stderr read.

const lines = (text: string): string[] => text.split('\n').filter((l) => l.length > 0);

test('log.format json (the default): one JSON object per request with the same fields as always, no level added', async (t) => {
  const g = await serveOnPort(t, []);
  const res = await post(`${g.url}/chat/completions`, chatBody({ stream_options: { include_usage: true } }));
  await res.text();
  await post(`${g.url}/chat/completions`, chatBody({ model: 'no-such-model' })).then((r) => r.text());
  await stop(g);
  const [done, rejected, ...rest] = lines(g.stdout).map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(rest, []);
  assert.deepEqual(Object.keys(done ?? {}), ['ts', 'id', 'method', 'path', 'model', 'upstream', 'status', 'stream', 'ttft_ms', 'tokens_in', 'tokens_out', 'tokens_source', 'duration_ms', 'outcome']);
  assert.equal(done?.['id'], res.headers.get('x-request-id'));
  assert.equal(done?.['outcome'], 'completed');
  assert.deepEqual(Object.keys(rejected ?? {}), ['ts', 'id', 'method', 'path', 'model', 'status', 'stream', 'duration_ms', 'outcome', 'error_code']);
  assert.equal(rejected?.['error_code'], 'SLUICE_MODEL_NOT_FOUND');
});

test('log.format text: one readable line per request, and a model name with a newline cannot forge a second line', async (t) => {
  const g = await serveOnPort(t, ['--log-format', 'text']);
  const res = await post(`${g.url}/chat/completions`, chatBody({ stream_options: { include_usage: true } }));
  await res.text();
  await post(`${g.url}/chat/completions`, chatBody({ model: 'gpt 5\n2026-01-01T00:00:00.000Z error forged' })).then((r) => r.text());
  await stop(g);
  const out = lines(g.stdout);
  assert.equal(out.length, 2, g.stdout);
  const id = res.headers.get('x-request-id') ?? '';
  assert.match(
    out[0] ?? '',
    new RegExp(`^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z info POST /v1/chat/completions 200 completed model=sluice-sim upstream=simulator ttft=[\\d.]+ms tokens=\\d+/32 [\\d.]+ms id=${id}$`),
  );
  assert.match(out[1] ?? '', /^\S+ info POST \/v1\/chat\/completions 404 rejected error=SLUICE_MODEL_NOT_FOUND model="gpt 5\\n2026-01-01T00:00:00\.000Z error forged" [\d.]+ms id=req_\w+$/);
});

test('log.level warn: only the requests the serving side failed, at warn; no banner', async (t) => {
  const s = await sim(t);
  // An upstream that lists the model and answers 500, which the client gets (a failure of the serving side).
  const broken = await httpServer(t, (req, res) => {
    if (req.url === '/v1/models') return void res.end(JSON.stringify({ data: [{ id: 'broken-model' }] }));
    res.writeHead(500, { 'content-type': 'application/json' });
    res.end('{"error":{"message":"engine fell over"}}');
  });
  const g = await serveOnPort(t, ['--upstream', s.url, '--upstream', broken.url], { SLUICE_LOG_LEVEL: 'warn', SLUICE_LOG_FORMAT: 'text' });
  await (await post(`${g.url}/chat/completions`, chatBody())).text(); // completed: info
  await (await post(`${g.url}/chat/completions`, chatBody({ model: 'nope' }))).text(); // the client's mistake: info
  const failed = await post(`${g.url}/chat/completions`, chatBody({ model: 'broken-model' }));
  assert.equal(failed.status, 500);
  await failed.text();
  // Cut after its 200: a 200 in the line, and still a warning.
  await (await post(`${g.url}/chat/completions`, chatBody({ sim: { fail: 'drop', fail_after: 2 } }))).text();
  await stop(g);
  const out = lines(g.stdout);
  assert.equal(out.length, 2, g.stdout);
  assert.match(out[0] ?? '', / warn POST \/v1\/chat\/completions 500 upstream_error error=SLUICE_UPSTREAM_ERROR model=broken-model [\d.]+ms id=req_\w+$/);
  assert.match(out[1] ?? '', / warn POST \/v1\/chat\/completions 200 (truncated|upstream_error) error=SLUICE_UPSTREAM_\w+ model=sluice-sim upstream=127\.0\.0\.1:\d+ /);
  assert.doesNotMatch(g.stderr, /listening on|try: curl/, 'the banner is info');
});

test('log.level debug: where each request went, and why it moved on to another replica', async (t) => {
  const s = await sim(t);
  let refused = 0;
  const flaky = await httpServer(t, (req, res) => {
    if (req.url === '/v1/models') return void res.end(JSON.stringify({ data: [{ id: 'sluice-sim' }] }));
    refused++;
    res.writeHead(503, { 'content-type': 'application/json' });
    res.end('{"error":{"message":"overloaded"}}');
  });
  // least-loaded: the replicas are equal, so the first is tried first (the default reads the engines' /metrics,
  // which the flaky one answers 503, and would start with the steady one).
  const config = tmpFile('sluice.yaml', `routing: least-loaded\nupstreams:\n  - url: ${flaky.url}\n    name: flaky\n  - url: ${s.url}\n    name: steady\n`);
  const g = await serveOnPort(t, ['--config', config, '--log-level', 'debug', '--log-format', 'text']);
  const res = await post(`${g.url}/chat/completions`, chatBody());
  assert.ok((await res.text()).endsWith('data: [DONE]\n\n'));
  assert.equal(refused, 1, 'the first replica was tried first');
  await stop(g);
  const id = res.headers.get('x-request-id') ?? '';
  const events = lines(g.stderr).filter((l) => l.includes(id));
  assert.equal(events.length, 2, g.stderr);
  assert.match(events[0] ?? '', new RegExp(`^\\S+ debug ${id}: POST /v1/chat/completions model=sluice-sim to flaky, steady$`));
  assert.match(events[1] ?? '', new RegExp(`^\\S+ debug ${id}: flaky failed before the first byte \\(status_5xx: .*overloaded.*\\); trying the next replica$`));
  assert.match(lines(g.stdout)[0] ?? '', new RegExp(` info POST /v1/chat/completions 200 completed model=sluice-sim upstream=steady .* id=${id}$`));
});

test('operational events follow the format: an api_key_env that is not set is a JSON warning at start', async (t) => {
  const s = await sim(t);
  const config = tmpFile('sluice.yaml', `upstreams:\n  - url: ${s.url}\n    name: gpu1\n    api_key_env: SLUICE_TEST_KEY_THAT_IS_NOT_SET\n`);
  const g = await serveOnPort(t, ['--config', config]);
  await stop(g);
  const events = lines(g.stderr).filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  for (const e of events) assert.deepEqual(Object.keys(e), ['ts', 'level', 'msg']);
  assert.deepEqual(
    events.slice(0, 2).map((e) => [e['level'], e['msg']]),
    [
      ['warn', 'upstream gpu1: api_key_env names SLUICE_TEST_KEY_THAT_IS_NOT_SET, which is not set: requests to it carry no key'],
      ['info', 'upstream gpu1 speaks vllm (dialect auto: /v1/models owned_by "vllm")'],
    ],
  );
  assert.match(g.stderr, /listening on/, 'the banner stays plain text');
});
