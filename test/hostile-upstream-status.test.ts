import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Pool } from 'undici';
import { dispatchRequest } from '../src/upstream/upstream-body.ts';
import { isBrokenHttp } from '../src/upstream/protocol-failure.ts';
import { upstreamFailure } from '../src/openai/upstream-failure.ts';
import { clientStatus, isErrorBody, safeRetryAfter, safeContentType, type OpenAIErrorObject, type UpstreamIdentity } from '../src/openai/upstream-error.ts';
import type { IncomingHttpHeaders } from 'node:http';

/** The factory's two upstream-answer kinds, as these tests call them. */
const upstreamAnswerError = (who: UpstreamIdentity, status: number, headers: IncomingHttpHeaders, body: string) => upstreamFailure({ kind: 'answer', upstream: who, status, headers, body });
const inBandError = (who: UpstreamIdentity, error: OpenAIErrorObject) => upstreamFailure({ kind: 'in_band', upstream: who, error });
import { redactSecrets } from '../src/openai/redact.ts';
import { gateway, post, httpServer } from './helpers/gateway.ts';
import { rawUpstream, writeJson } from './helpers/raw-upstream.ts';

/**
 * Issue 12: interim 1xx answers, redirects, the upstream refusing the gateway's own credentials, and a 200 whose body
 * is an error: each gets a defined outcome — the final answer, or an OpenAI-shaped 502 — never raw bytes or a bare
 * status. Upstreams are raw TCP servers writing the bytes by hand.
 */

const ANSWER = JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion', created: 1, model: 'm', choices: [{ index: 0, message: { role: 'assistant', content: 'Hello' }, finish_reason: 'stop' }] });
const STREAM = 'data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n';
const chat = (stream: boolean): Record<string, unknown> => ({ model: 'm', stream, messages: [{ role: 'user', content: 'Hi' }] });
const who = { name: 'gpu1', redact: (s: string) => redactSecrets(s, ['sk-up-secret']) };

type ErrorBody = { error?: { code?: string | null; type?: string; message?: string } };

/** The final answer for a request: JSON or an SSE stream, on a keep-alive connection. */
function finalAnswer(stream: boolean): string {
  return stream
    ? `HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: ${Buffer.byteLength(STREAM)}\r\n\r\n${STREAM}`
    : `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(ANSWER)}\r\n\r\n${ANSWER}`;
}

test('103 Early Hints and 102 Processing before the final answer are skipped: the client gets the answer', async (t) => {
  const up = await rawUpstream(t, ({ socket, body }) => {
    const stream = JSON.parse(body).stream === true;
    socket.write('HTTP/1.1 102 Processing\r\n\r\n');
    socket.write('HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n');
    setTimeout(() => socket.write(finalAnswer(stream)), 10);
  });
  const g = await gateway(t, { upstreams: [{ url: up.url, models: ['m'] }] });
  const res = await post(`${g.url}/chat/completions`, chat(false));
  assert.equal(res.status, 200);
  assert.equal(await res.text(), ANSWER);
  const s = await post(`${g.url}/chat/completions`, chat(true));
  assert.equal(s.status, 200);
  assert.match(await s.text(), /"content":"hi"[\s\S]*data: \[DONE\]\n\n$/);
});

test('undici 8 fails an unsolicited 100 Continue (bad response) and a bare 101 (assertion): isBrokenHttp classifies both', async (t) => {
  const answers = ['HTTP/1.1 100 Continue\r\n\r\n', 'HTTP/1.1 101 Switching Protocols\r\n\r\n', 'HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n'];
  let i = 0;
  const up = await rawUpstream(t, ({ socket }) => socket.write(answers[i++ % answers.length] + finalAnswer(false)));
  for (const expected of ['bad response', 'falsy', 'bad upgrade']) {
    const pool = new Pool(`http://127.0.0.1:${up.port}`);
    t.after(() => pool.destroy());
    const err = await dispatchRequest(pool, { method: 'POST', path: '/v1/chat/completions', body: '{}' }, new AbortController().signal).then(
      () => assert.fail('undici accepted it'),
      (e: unknown) => e,
    );
    assert.match((err as Error).message, new RegExp(expected));
    assert.ok(isBrokenHttp(err));
    const bad = upstreamFailure({ kind: 'broken_http', upstream: 'gpu1', cause: err });
    assert.equal(bad?.code, 'SLUICE_UPSTREAM_BAD_RESPONSE');
    assert.equal(bad?.status, 502);
    assert.match(bad?.message ?? '', /^upstream gpu1 broke HTTP\/1\.1/);
  }
  const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
  assert.equal(isBrokenHttp(refused), false, 'connect failures are the caller\'s own classification');
  const closed = Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' });
  assert.equal(isBrokenHttp(closed), false);
});

test('an unsolicited 100 Continue reaches the client as an OpenAI-shaped 5xx, not a hang or an empty answer', async (t) => {
  const up = await rawUpstream(t, ({ socket }) => socket.write(`HTTP/1.1 100 Continue\r\n\r\n${finalAnswer(false)}`));
  const g = await gateway(t, { upstreams: [{ url: up.url, models: ['m'] }] });
  const res = await post(`${g.url}/chat/completions`, chat(false));
  assert.ok(res.status >= 500, String(res.status));
  const body = (await res.json()) as ErrorBody;
  assert.equal(typeof body.error?.message, 'string');
  assert.equal(body.error?.type, 'server_error');
});

test('an unsolicited 100 Continue is a 502 SLUICE_UPSTREAM_BAD_RESPONSE naming what the upstream did', async (t) => {
  const up = await rawUpstream(t, ({ socket }) => socket.write(`HTTP/1.1 100 Continue\r\n\r\n${finalAnswer(false)}`));
  const g = await gateway(t, { upstreams: [{ url: up.url, models: ['m'] }] });
  const res = await post(`${g.url}/chat/completions`, chat(false));
  const body = (await res.json()) as ErrorBody;
  assert.equal(res.status, 502);
  assert.equal(body.error?.code, 'sluice_upstream_bad_response');
  assert.match(body.error?.message ?? '', /100 Continue/);
});

test('a redirect is not followed: nothing reaches the Location, and a streamed request gets a 502', async (t) => {
  let followed = 0;
  const elsewhere = await httpServer(t, (_req, res) => {
    followed++;
    res.end(ANSWER);
  });
  const up = await rawUpstream(t, ({ socket }) => {
    socket.write(`HTTP/1.1 307 Temporary Redirect\r\nlocation: http://user:pw@127.0.0.1:${elsewhere.port}/v1/chat/completions\r\ncontent-length: 0\r\n\r\n`);
  });
  const g = await gateway(t, { upstreams: [{ url: up.url, models: ['m'] }] });
  const s = await post(`${g.url}/chat/completions`, chat(true));
  assert.equal(s.status, 502);
  assert.equal(((await s.json()) as ErrorBody).error?.type, 'server_error');
  await (await post(`${g.url}/chat/completions`, chat(false))).arrayBuffer();
  assert.equal(followed, 0);
});

test('a redirect is an OpenAI-shaped 502 SLUICE_UPSTREAM_BAD_RESPONSE, streamed or not, with the target but not its userinfo', async (t) => {
  const up = await rawUpstream(t, ({ socket }) => {
    socket.write('HTTP/1.1 302 Found\r\nlocation: http://user:pw@elsewhere.example/v1/chat/completions\r\ncontent-length: 0\r\n\r\n');
  });
  const g = await gateway(t, { upstreams: [{ url: up.url, models: ['m'] }] });
  for (const stream of [false, true]) {
    const res = await post(`${g.url}/chat/completions`, chat(stream));
    const text = await res.text();
    assert.equal(res.status, 502, text);
    const body = JSON.parse(text) as ErrorBody;
    assert.equal(body.error?.code, 'sluice_upstream_bad_response');
    assert.match(body.error?.message ?? '', /redirect \(HTTP 302\) to http:\/\/elsewhere\.example\/v1\/chat\/completions/);
    assert.doesNotMatch(text, /user:pw/);
  }
});

for (const status of [401, 403]) {
  test(`an upstream ${status} (the gateway's credentials refused) is a 502 for the client, not a ${status}`, async (t) => {
    const up = await rawUpstream(t, ({ socket }) => writeJson(socket, status, { error: { message: 'Invalid API key', type: 'authentication_error', code: 'invalid_api_key' } }));
    const g = await gateway(t, { upstreams: [{ url: up.url, models: ['m'] }] });
    for (const stream of [false, true]) {
      const res = await post(`${g.url}/chat/completions`, chat(stream));
      assert.equal(res.status, 502, `stream: ${stream}`);
      assert.equal(res.headers.get('www-authenticate'), null);
      assert.equal(((await res.json()) as ErrorBody).error?.type !== undefined, true);
    }
  });

  test(`an upstream ${status} says the gateway's upstream credentials were refused (SLUICE_UPSTREAM_AUTH_FAILED)`, async (t) => {
    const up = await rawUpstream(t, ({ socket }) => writeJson(socket, status, { error: { message: 'Invalid API key', type: 'authentication_error', code: 'invalid_api_key' } }));
    const g = await gateway(t, { upstreams: [{ url: up.url, models: ['m'], api_key: 'sk-up-secret' }] });
    for (const stream of [false, true]) {
      const res = await post(`${g.url}/chat/completions`, chat(stream));
      const body = (await res.json()) as ErrorBody;
      assert.equal(res.status, 502);
      assert.equal(body.error?.code, 'sluice_upstream_auth_failed');
      assert.equal(body.error?.type, 'server_error');
      assert.match(body.error?.message ?? '', new RegExp(`refused the gateway's credentials \\(HTTP ${status}: Invalid API key\\); check upstreams\\[\\]\\.api_key`));
    }
  });
}

test('a 200 whose body is {"error":…} is an error for the client, with the engine\'s message', async (t) => {
  const up = await rawUpstream(t, ({ socket }) => writeJson(socket, 200, { object: 'error', message: "This model's maximum context length is 4096 tokens", type: 'BadRequestError', param: null, code: 400 }));
  const g = await gateway(t, { upstreams: [{ url: up.url, models: ['m'] }] });
  for (const stream of [false, true]) {
    const res = await post(`${g.url}/chat/completions`, chat(stream));
    const body = (await res.json()) as ErrorBody;
    assert.equal(res.status, 400, `stream: ${stream}`);
    assert.equal(body.error?.code, 'context_length_exceeded');
    assert.match(body.error?.message ?? '', /maximum context length/);
  }
});

test('clientStatus: statuses about the gateway–engine hop become 502; the client\'s own pass through', () => {
  const cases: Array<[number, number]> = [
    [100, 502], [103, 502], [200, 502], [204, 502], [301, 502], [302, 502], [304, 502], [307, 502], [308, 502],
    [400, 400], [401, 502], [403, 502], [404, 404], [407, 502], [413, 413], [422, 400], [424, 502], [429, 429],
    [500, 500], [502, 502], [503, 503], [504, 504], [600, 502], [0, 502],
  ];
  for (const [upstream, client] of cases) assert.equal(clientStatus(upstream), client, `HTTP ${upstream}`);
});

test('isErrorBody: every engine error shape with a 200; answers (Responses objects with error:null included) are not', () => {
  assert.equal(isErrorBody(ANSWER), null);
  assert.equal(isErrorBody('{"id":"resp_1","object":"response","status":"completed","error":null,"output":[]}'), null);
  assert.equal(isErrorBody('{"id":"resp_1","object":"response","status":"failed","error":{"code":"server_error","message":"x"}}'), null, 'a failed Responses object is that API\'s answer');
  assert.equal(isErrorBody('{"id":"x","choices":[{"message":{"content":"the word \\"error\\" in text"}}]}'), null);
  assert.equal(isErrorBody('{"error":null}'), null);
  assert.equal(isErrorBody('not json "error"'), null);
  assert.deepEqual(isErrorBody('{"error":{"message":"boom","type":"BadRequestError","param":null,"code":400}}'), { message: 'boom', type: 'invalid_request_error', param: null, code: 400 });
  assert.equal(isErrorBody('{\n  "error": {\n    "message": "pretty"\n  }\n}')?.message, 'pretty');
  assert.equal(isErrorBody('{"object":"error","message":"old vllm","type":"BadRequestError","code":400}')?.message, 'old vllm');
  assert.equal(isErrorBody('{"error":"Input validation error","error_type":"validation"}')?.message, 'Input validation error');
});

test('upstreamFailure({ kind: answer }): one error per kind of bad final answer, every message redacted', () => {
  const auth = upstreamAnswerError(who, 401, {}, '{"detail":"bad key sk-up-secret"}');
  assert.equal(auth.code, 'SLUICE_UPSTREAM_AUTH_FAILED');
  assert.equal(auth.status, 502);
  assert.equal(auth.message, "upstream gpu1 refused the gateway's credentials (HTTP 401: bad key [redacted]); check upstreams[].api_key (or the URL's user:password) in the gateway's config");
  assert.match(upstreamAnswerError(who, 403, {}, '').message, /\(HTTP 403\); check/);
  assert.match(upstreamAnswerError(who, 407, {}, '').message, /a proxy in front of it requires authentication \(HTTP 407\)/);

  const redirect = upstreamAnswerError(who, 301, { location: 'https://u:p@new.example/v1/chat/completions' }, '');
  assert.equal(redirect.code, 'SLUICE_UPSTREAM_BAD_RESPONSE');
  assert.equal(redirect.status, 502);
  assert.match(redirect.message, /to https:\/\/new\.example\/v1\/chat\/completions; the gateway does not follow upstream redirects/);
  assert.match(upstreamAnswerError(who, 101, {}, '').message, /interim HTTP 101 as its final answer/);

  const inBody = upstreamAnswerError(who, 200, {}, '{"error":{"message":"queue full","type":"rate_limit_error","code":429}}');
  assert.equal(inBody.code, 'SLUICE_UPSTREAM_ERROR');
  assert.equal(inBody.status, 429);
  const ctx = upstreamAnswerError(who, 200, {}, '{"object":"error","message":"This model\'s maximum context length is 10","code":"x"}');
  assert.equal(ctx.status, 400);
  assert.equal(ctx.wireCode, 'context_length_exceeded');
  assert.equal(upstreamAnswerError(who, 200, {}, '{"error":"boom"}').status, 502);

  const tgi = upstreamAnswerError(who, 422, {}, '{"error":"Input validation error","error_type":"validation"}');
  assert.equal(tgi.status, 400);
  const busy = upstreamAnswerError(who, 503, { 'retry-after': '7' }, 'overloaded');
  assert.equal(busy.status, 503);
  assert.deepEqual(busy.headers, { 'retry-after': '7' });
  assert.deepEqual(upstreamAnswerError(who, 429, { 'retry-after': 'soon\r\nx: y' }, '').headers, {}, 'a retry-after that is none is dropped');
  assert.equal(upstreamAnswerError(who, 400, {}, '{"error":{"message":"key sk-up-secret is bad","param":"sk-up-secret"}}').message, 'key [redacted] is bad');

  const frame = inBandError(who, { message: 'bad sk-up-secret', type: 'authentication_error', param: null, code: 401 });
  assert.equal(frame.status, 502);
  assert.equal(frame.message, 'bad [redacted]');
});

test('headers relayed from an upstream are values of their kind or dropped', () => {
  assert.equal(safeRetryAfter('120'), '120');
  assert.equal(safeRetryAfter('Wed, 21 Oct 2015 07:28:00 GMT'), 'Wed, 21 Oct 2015 07:28:00 GMT');
  assert.equal(safeRetryAfter('Bearer sk-x'), undefined);
  assert.equal(safeRetryAfter(undefined), undefined);
  assert.equal(safeContentType('application/json; charset=utf-8'), 'application/json; charset=utf-8');
  assert.equal(safeContentType('application/json; key=Bearer sk-x'), 'application/json');
  assert.equal(safeContentType(undefined), 'application/json');
});
