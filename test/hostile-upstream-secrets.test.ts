import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { inspect } from 'node:util';
import { redactSecrets, redactLiteralSecrets, redactUrl, REDACTED } from '../src/openai/redact.ts';
import { Upstream } from '../src/upstream/upstream.ts';
import { validateConfig, ConfigError } from '../src/config/load.ts';
import { gateway, post } from './helpers/gateway.ts';
import { rawUpstream, writeJson, type RawRequest } from './helpers/raw-upstream.ts';

/**
 * Issue 12, "Upstream secrets": an engine that echoes the request headers in its errors must not hand the gateway's
 * upstream key to a client, and an upstream URL's user:password is never printed or logged.
 */

const KEY = 'sk-upstream-0123456789-SECRET';
const chat = (stream: boolean): Record<string, unknown> => ({ model: 'm', stream, messages: [{ role: 'user', content: 'Hi' }] });

function upstreamFor(url: string, extra: Record<string, unknown> = {}): Upstream {
  const [u] = validateConfig({ upstreams: [{ url, ...extra }] }).upstreams;
  return new Upstream(u!, 0, 1_000);
}

/** What engines and proxies echo: FastAPI's validation error with the request headers, a plain message, a dict. */
function echoes(req: RawRequest): string[] {
  const auth = req.headers['authorization'] ?? '';
  return [
    JSON.stringify({ detail: [{ type: 'missing', loc: ['body', 'messages'], msg: 'Field required', input: { headers: req.headers } }] }),
    JSON.stringify({ error: { message: `invalid header Authorization: ${auth}`, type: 'BadRequestError', code: 400 } }),
    JSON.stringify({ error: { message: `headers were {'authorization': '${auth}', 'accept': 'application/json'}`, type: 'BadRequestError' } }),
  ];
}

test('redactSecrets: configured secrets in every spelling, credential headers in every echo shape, bearer tokens, URL userinfo', () => {
  const cases: Array<[string, string]> = [
    [`key ${KEY} refused`, `key ${REDACTED} refused`],
    [`Authorization: Bearer abc.def-ghi`, `Authorization: ${REDACTED}`],
    [`{"authorization":"Bearer abc"}`, `{"authorization":"${REDACTED}"}`],
    [`{\\"Authorization\\": \\"Basic dXNlcjpwdw==\\"}`, `{\\"Authorization\\": \\"${REDACTED}\\"}`],
    [`{'authorization': 'tok', 'accept': 'x'}`, `{'authorization': '${REDACTED}', 'accept': 'x'}`],
    [`PROXY-AUTHORIZATION=abc; next`, `PROXY-AUTHORIZATION=${REDACTED}; next`],
    [`x-api-key: abc123`, `x-api-key: ${REDACTED}`],
    [`[["authorization", "Bearer tok123"]]`, `[["authorization", "Bearer ${REDACTED}"]]`],
    [`token was bearer eyJhbGciOi.J9x_y`, `token was bearer ${REDACTED}`],
    [`fetch http://user:pw@gpu1:8000/v1 failed`, `fetch http://gpu1:8000/v1 failed`],
    ['the authorization failed', 'the authorization failed'],
    ['nothing here', 'nothing here'],
  ];
  for (const [input, output] of cases) assert.equal(redactSecrets(input, [KEY]), output, input);
  const quoted = 'pa"ss/wörd\\1';
  assert.equal(redactSecrets(`echo ${JSON.stringify(quoted)} and ${encodeURIComponent(quoted)}`, [quoted]), `echo "${REDACTED}" and ${REDACTED}`);
  assert.equal(redactSecrets('mask abc in xabcx', ['abc']), 'mask abc in xabcx', 'secrets under 4 characters are left to the header patterns');
  assert.equal(redactLiteralSecrets(`{"content":"Bearer is a word; ${KEY}"}`, [KEY]), `{"content":"Bearer is a word; ${REDACTED}"}`);
  const hostile = ['a'.repeat(64 * 1024), 'authorization='.repeat(5_000), 'Bearer '.repeat(10_000), 'http://'.repeat(10_000), `${'x'.repeat(60_000)}://`];
  for (const text of hostile) {
    const started = performance.now();
    redactSecrets(text, [KEY]);
    assert.ok(performance.now() - started < 200, `linear time on ${text.slice(0, 20)}…`);
  }
  assert.equal(redactUrl('http://user:pw@gpu1:8000/v1'), 'http://gpu1:8000/v1');
  assert.equal(redactUrl('http://gpu1:8000/v1'), 'http://gpu1:8000/v1');
  assert.equal(redactUrl('not a url //u:p@h'), 'not a url //h');
});

test('Upstream keeps its secrets out of inspect, JSON, toString and its printed URL, and redacts with them', () => {
  const u = upstreamFor('http://127.0.0.1:9/v1', { api_key: KEY });
  const shown = [inspect(u, { depth: 1 }), JSON.stringify({ name: u.name, baseUrl: u.baseUrl, lastError: u.lastError }), String(u)].join('\n');
  assert.doesNotMatch(shown, /SECRET/);
  assert.equal(u.headers({ accept: 'x' })['authorization'], `Bearer ${KEY}`);
  assert.equal(u.redact(`bad key ${KEY}`), `bad key ${REDACTED}`);
  u.markFailed(`model discovery failed: Unexpected token 'k', "key ${KEY}" is not valid JSON`);
  assert.doesNotMatch(u.lastError ?? '', /SECRET/);
  void u.close();

  const basic = upstreamFor('http://alice:p%40ss-SECRET@127.0.0.1:9/v1');
  assert.equal(basic.baseUrl, 'http://127.0.0.1:9/v1');
  assert.equal(basic.name, '127.0.0.1:9');
  assert.equal(basic.headers({})['authorization'], `Basic ${Buffer.from('alice:p@ss-SECRET').toString('base64')}`, 'userinfo is HTTP Basic, percent-decoded');
  assert.equal(basic.redact(`got ${Buffer.from('alice:p@ss-SECRET').toString('base64')} and p@ss-SECRET`), `got ${REDACTED} and ${REDACTED}`);
  assert.doesNotMatch(inspect(basic, { depth: 1 }), /SECRET|YWxpY2U6/);
  void basic.close();

  assert.throws(() => upstreamFor('http://alice:pw@127.0.0.1:9/v1', { api_key: KEY }), (e: unknown) => e instanceof ConfigError && /both would be the Authorization header/.test(e.message) && !e.message.includes('pw@'));
});

test('an upstream that echoes the request headers in a 400 body does not hand its key to the client (streamed or not)', async (t) => {
  let next = 0;
  const up = await rawUpstream(t, (req) => {
    const all = echoes(req);
    writeJson(req.socket, 400, all[next++ % all.length]!);
  });
  const g = await gateway(t, { upstreams: [{ url: up.url, models: ['m'], api_key: KEY }] });
  for (let i = 0; i < 6; i++) {
    const res = await post(`${g.url}/chat/completions`, chat(i % 2 === 0));
    const text = await res.text();
    assert.equal(res.status, 400, text);
    assert.doesNotMatch(text, /SECRET|Bearer sk-/, text);
    assert.match(text, /"error":\{"message":/);
  }
  assert.ok(up.requests.some((r) => r.headers['authorization'] === `Bearer ${KEY}`), 'the key did go upstream');
});

test('an in-band error frame that echoes the request headers does not hand the key to the client', async (t) => {
  const up = await rawUpstream(t, (req) => {
    const auth = req.headers['authorization'] ?? '';
    const frame = `data: ${JSON.stringify({ error: { message: `rejected request with authorization: ${auth}`, type: 'BadRequestError', code: 400 } })}\n\ndata: [DONE]\n\n`;
    req.socket.write(`HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: ${Buffer.byteLength(frame)}\r\n\r\n${frame}`);
  });
  const g = await gateway(t, { upstreams: [{ url: up.url, models: ['m'], api_key: KEY }] });
  const res = await post(`${g.url}/chat/completions`, chat(true));
  const text = await res.text();
  assert.match(text, /data: \{"error":/);
  assert.doesNotMatch(text, /SECRET|Bearer sk-/, text);
});

// The relay's Responses path (#onResponsesEvent) reads `error` events itself and relays `response.failed` as is.
test('a Responses stream whose error event echoes the Authorization header does not hand the key to the client', async (t) => {
  const up = await rawUpstream(t, (req) => {
    const auth = req.headers['authorization'] ?? '';
    const events = `event: response.created\ndata: {"type":"response.created","response":{"id":"resp_1","status":"in_progress"}}\n\nevent: error\ndata: ${JSON.stringify({ type: 'error', code: 'bad_header', message: `rejected authorization: ${auth}` })}\n\n`;
    req.socket.write(`HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: ${Buffer.byteLength(events)}\r\n\r\n${events}`);
  });
  const g = await gateway(t, { upstreams: [{ url: up.url, models: ['m'], api_key: KEY }] });
  const text = await (await post(`${g.url}/responses`, { model: 'm', stream: true, input: 'Hi' })).text();
  assert.match(text, /error/);
  assert.doesNotMatch(text, /SECRET|Bearer sk-/, text);
});

test('an engine that quotes the bare key (no header name, no Bearer) in an error does not hand it to the client', async (t) => {
  const up = await rawUpstream(t, (req) => {
    const key = (req.headers['authorization'] ?? '').replace(/^Bearer /, '');
    if (JSON.parse(req.body).stream === true) {
      const frame = `data: ${JSON.stringify({ error: { message: `unknown key ${key}`, type: 'BadRequestError', code: 400 } })}\n\n`;
      req.socket.write(`HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: ${Buffer.byteLength(frame)}\r\n\r\n${frame}`);
    } else {
      writeJson(req.socket, 400, { error: { message: `unknown key ${key}`, type: 'BadRequestError', code: 400 } });
    }
  });
  const g = await gateway(t, { upstreams: [{ url: up.url, models: ['m'], api_key: KEY }] });
  for (const stream of [false, true]) {
    const text = await (await post(`${g.url}/chat/completions`, chat(stream))).text();
    assert.match(text, /unknown key \[redacted\]/, text);
    assert.doesNotMatch(text, /SECRET/, text);
  }
});

test('/ready does not show a discovery failure that quotes the key (V8 JSON errors quote the text)', async (t) => {
  const up = await rawUpstream(
    t,
    (req) => {
      const text = `you sent authorization=${req.headers['authorization']}`;
      req.socket.write(`HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${text.length}\r\n\r\n${text}`);
    },
    { models: false },
  );
  const g = await gateway(t, { upstreams: [{ url: up.url, api_key: KEY }] });
  const ready = await (await fetch(`${g.url.replace(/\/v1$/, '')}/ready`)).text();
  assert.match(ready, /model discovery failed/);
  assert.doesNotMatch(ready, /SECRET|Bearer sk-/, ready);
});

// Fix in src/http/server.ts (the /ready route): when ctx.config.api_keys is non-empty, answer status and each
// upstream's name/health/error, without `models`.
test('/ready does not list the models /v1/models protects when client keys are configured', async (t) => {
  const up = await rawUpstream(t, () => {});
  const g = await gateway(t, { upstreams: [{ url: up.url }], api_keys: ['client-key-0123'] });
  assert.equal((await fetch(`${g.url}/models`)).status, 401);
  const res = await fetch(`${g.url.replace(/\/v1$/, '')}/ready`);
  assert.equal(res.status, 200);
  const body = (await res.json()) as { status: string; upstreams: Array<Record<string, unknown>> };
  assert.equal(body.status, 'ready');
  assert.equal(body.upstreams[0]?.['healthy'], true);
  assert.doesNotMatch(JSON.stringify(body), /"m"/);
  assert.equal(body.upstreams[0]?.['models'], undefined);
});

const BIN = new URL('../bin/sluice.mjs', import.meta.url).pathname;

test('sluice serve with an upstream URL holding user:password never prints it, and sends it as HTTP Basic auth', async (t) => {
  const up = await rawUpstream(t, (req) => {
    if (JSON.parse(req.body).stream === false) writeJson(req.socket, 200, { id: 'x', object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }] });
    else writeJson(req.socket, 500, { error: { message: `boom, your headers: ${JSON.stringify(req.headers)}` } });
  });
  const upstreamUrl = `http://bob:hunter2-SECRET@127.0.0.1:${up.port}/v1`;
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--upstream', upstreamUrl], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      const m = /listening on (http:\/\/\S+\/v1)/.exec(stderr);
      if (m && /try: curl/.test(stderr)) resolve(m[1]!);
    });
    child.once('exit', () => reject(new Error(`serve exited: ${stderr}`)));
  });
  assert.equal((await post(`${url}/chat/completions`, chat(false))).status, 200);
  const failed = await (await post(`${url}/chat/completions`, chat(true))).text();
  const ready = await (await fetch(`${url.replace(/\/v1$/, '')}/ready`)).text();
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));

  const basic = `Basic ${Buffer.from('bob:hunter2-SECRET').toString('base64')}`;
  assert.ok(up.requests.length >= 3 && up.requests.every((r) => r.headers['authorization'] === basic), 'every request carries the URL\'s credentials as Basic auth');
  for (const [where, text] of Object.entries({ stdout, stderr, failed, ready })) {
    assert.doesNotMatch(text, /hunter2|SECRET|Ym9iOmh1bnRlcjIt/, `${where}: ${text}`);
  }
  assert.match(stderr, new RegExp(`upstream 127\\.0\\.0\\.1:${up.port}: http://127\\.0\\.0\\.1:${up.port}/v1 \\(credentials from the URL sent as HTTP Basic auth\\)`));
  assert.match(stdout, /"outcome":"completed"/);
});

// src/config/load.ts describeIssue quotes the bad value: for upstreams[].url it must quote redactUrl(value).
test('a bad upstream URL with user:password is named in the config error without its password', () => {
  assert.throws(
    () => validateConfig({ upstreams: [{ url: 'http://bob:hunter2-SECRET@127.0.0.1:9/api' }] }),
    (e: unknown) => e instanceof ConfigError && /upstreams\[0\]\.url = "http:\/\/127\.0\.0\.1:9\/api"/.test(e.message) && !/hunter2/.test(e.message),
  );
});
