import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { ResponsesWS } from 'openai/resources/responses/ws';
import { WebSocket } from 'ws';
import { gateway, once, post, sim } from './helpers/gateway.ts';
import { expectedText, openSocket, wsUrl } from './helpers/ws.ts';

/** The events of a `/v1/responses` SSE stream, as `{type, data}`. */
async function sseEvents(url: string, body: unknown): Promise<Array<Record<string, unknown>>> {
  const text = await (await post(url, body)).text();
  return text
    .split('\n\n')
    .filter((f) => f.startsWith('event: '))
    .map((f) => JSON.parse(f.slice(f.indexOf('\ndata: ') + 7)) as Record<string, unknown>);
}

const deltas = (events: Array<Record<string, unknown>>): string =>
  events.filter((e) => e['type'] === 'response.output_text.delta').map((e) => e['delta'] as string).join('');

test('Responses WebSocket mode: response.create streams the same events as the SSE stream, one message each', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 5, itlMs: 15, tokens: 8 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }] });
  const sse = await sseEvents(`${g.url}/responses`, { model: 'sluice-sim', input: 'Hello there', stream: true });
  const ws = await openSocket(t, wsUrl(g.url, '/responses'));
  ws.send({ type: 'response.create', model: 'sluice-sim', input: 'Hello there' });
  await ws.waitFor((m) => m['type'] === 'response.completed');
  const events = ws.received.map((r) => r.msg);
  assert.deepEqual(events.map((e) => e['type']), sse.map((e) => e['type']), 'the same event types, in the same order');
  assert.equal(deltas(events), expectedText(JSON.stringify('Hello there'), 8));
  assert.equal(deltas(events), deltas(sse));
  const d = ws.received.filter((r) => r.msg['type'] === 'response.output_text.delta').map((r) => r.at);
  assert.ok(d.at(-1)! - d[0]! > 60, 'deltas arrive token by token');
  const upstreamBody = (await new Promise<{ body: Record<string, unknown> }>((resolve) => {
    s.events.once('request', resolve);
    ws.send({ type: 'response.create', model: 'sluice-sim', input: 'again', stream_id: 'lane-1' });
  })).body;
  assert.equal(upstreamBody['stream'], true, 'streamed upstream');
  assert.equal(upstreamBody['type'], undefined, 'the envelope stays on the socket');
  assert.equal(upstreamBody['stream_id'], undefined);
  const second = await ws.waitFor((m) => m['type'] === 'response.completed' && m['stream_id'] === 'lane-1');
  assert.ok(second, 'events of a response created with stream_id echo it');
  assert.equal(ws.ws.readyState, WebSocket.OPEN, 'the connection stays open for the next turn');
});

test("Responses WebSocket mode: the openai client's ResponsesWS works against Sluice unchanged", async (t) => {
  const s = await sim(t, { timing: { ttftMs: 5, itlMs: 5, tokens: 6 } });
  const key = 'sk-test-openai-ws';
  const g = await gateway(t, { upstreams: [{ url: s.url }], api_keys: [key] });
  const client = new OpenAI({ baseURL: g.url, apiKey: key, maxRetries: 0 });
  const rws = new ResponsesWS(client);
  t.after(() => rws.close());
  const errors: Array<{ message: string; status: unknown; code: unknown }> = [];
  rws.on('error', (e) => errors.push({ message: e.message, status: (e.error as { status?: unknown } | undefined)?.status, code: (e.error as { error?: { code?: unknown } } | undefined)?.error?.code }));
  let text = '';
  rws.on('response.output_text.delta', (e) => (text += e.delta));
  const completed = new Promise<OpenAI.Responses.Response>((resolve) => rws.on('response.completed', (e) => resolve(e.response)));
  rws.send({ type: 'response.create', model: 'sluice-sim', input: 'Say hello' });
  const response = await completed;
  assert.equal(text, expectedText(JSON.stringify('Say hello'), 6));
  assert.equal(response.status, 'completed');
  assert.equal(response.usage?.output_tokens, 6);

  // A refused request is OpenAI's error event with the HTTP status; the connection goes on.
  rws.send({ type: 'response.create', model: 'no-such-model', input: 'x' });
  const deadline = Date.now() + 5_000;
  while (errors.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(errors.map((e) => [e.status, e.code]), [[404, 'model_not_found']]);
  assert.match(errors[0]!.message, /no-such-model/);
  text = '';
  const again = new Promise((resolve) => rws.on('response.completed', resolve));
  rws.send({ type: 'response.create', model: 'sluice-sim', input: 'Say hello' });
  await again;
  assert.equal(text, expectedText(JSON.stringify('Say hello'), 6));
});

test('Responses WebSocket mode: responses run one at a time per connection, in order', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 5, itlMs: 5, tokens: 5 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }] });
  const ws = await openSocket(t, wsUrl(g.url, '/responses'));
  let inFlight = 0;
  let most = 0;
  s.events.on('request', () => (most = Math.max(most, ++inFlight)));
  s.events.on('completed', () => inFlight--);
  ws.send({ type: 'response.create', model: 'sluice-sim', input: 'one' });
  ws.send({ type: 'response.create', model: 'sluice-sim', input: 'two' });
  await ws.waitFor(() => ws.received.filter((r) => r.msg['type'] === 'response.completed').length === 2);
  assert.equal(most, 1, 'the second waited for the first');
  const types = ws.received.map((r) => r.msg['type']);
  const firstDone = types.indexOf('response.completed');
  assert.equal(types.indexOf('response.created', 1), firstDone + 1, 'the second starts after the first completed');
  const texts = ws.received.map((r) => r.msg).filter((m) => m['type'] === 'response.output_text.done').map((m) => m['text']);
  assert.deepEqual(texts, [expectedText(JSON.stringify('one'), 5), expectedText(JSON.stringify('two'), 5)]);
});

test("Responses WebSocket mode: OpenAI's error events for bad requests; malformed messages close the socket", async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 1, tokens: 3 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }] });
  const ws = await openSocket(t, wsUrl(g.url, '/responses'));
  const reply = async (msg: unknown): Promise<{ type: string; status: number; error: { type: string; code: string; param: string | null } }> => {
    const n = ws.received.length;
    ws.send(msg);
    await ws.waitFor(() => ws.received.length > n);
    return ws.received[n]!.msg as never;
  };
  const noInput = await reply({ type: 'response.create', model: 'sluice-sim' });
  assert.deepEqual([noInput.type, noInput.status, noInput.error.type, noInput.error.param], ['error', 400, 'invalid_request_error', 'input']);
  assert.equal((await reply({ type: 'response.create', model: 'sluice-sim', input: 'x', background: true })).error.param, 'background');
  assert.equal((await reply({ type: 'response.steer', input: [] })).error.code, 'unsupported_event_type');
  // An in-band failure after the stream started is the SSE stream's own error event.
  ws.send({ type: 'response.create', model: 'sluice-sim', input: 'x', sim: { fail: 'drop', fail_after: 1, tokens: 5 } });
  const cut = (await ws.waitFor((m) => m['type'] === 'error' && m['code'] === 'sluice_upstream_truncated')) as { message: string };
  assert.match(cut.message, /mid-stream/);
  assert.equal(ws.ws.readyState, WebSocket.OPEN);
  ws.send('not json');
  const closed = await ws.closed;
  assert.equal(closed.code, 1007);
  assert.equal((ws.received.at(-1)!.msg['error'] as { code: string }).code, 'sluice_ws_invalid_message');
});

test('Responses WebSocket mode: closing the socket aborts the upstream response', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 20, tokens: 500 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }] });
  const ws = await openSocket(t, wsUrl(g.url, '/responses'));
  ws.send({ type: 'response.create', model: 'sluice-sim', input: 'long' });
  await ws.waitFor((m) => m['type'] === 'response.output_text.delta');
  const aborted = once<{ path: string; tokensSent: number }>(s.events, 'aborted');
  ws.ws.close();
  const info = await aborted;
  assert.equal(info.path, '/v1/responses');
  assert.ok(info.tokensSent < 500);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(g.logs[0]?.outcome, 'client_aborted');
  assert.equal(g.logs[0]?.path, '/v1/responses');
});
