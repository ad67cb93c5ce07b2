import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { startGateway } from '../src/gateway.ts';
import { gateway, once, sim, fastUpstream } from './helpers/gateway.ts';
import { expectedText, muxText, openSocket, TestSocket, wsUrl } from './helpers/ws.ts';

const messages = (content: string): Array<{ role: string; content: string }> => [{ role: 'user', content }];
const create = (id: string, content: string, simKnobs: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => ({
  type: 'create',
  id,
  body: { model: 'sluice-sim', messages: messages(content), sim: simKnobs, ...extra },
});

test('/v1/ws: concurrent generations on one socket interleave, each complete and in order', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 5, itlMs: 15, tokens: 8 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }] });
  const ws = await openSocket(t, wsUrl(g.url, '/ws'));
  ws.send(create('a', 'first'));
  ws.send(create('b', 'second', { tokens: 10 }));
  ws.send({ type: 'create', id: 'c', endpoint: '/v1/completions', body: { model: 'sluice-sim', prompt: 'third', sim: { tokens: 6 } } });
  for (const id of ['a', 'b', 'c']) await ws.waitFor((m) => m['id'] === id && m['type'] === 'done');

  assert.equal(muxText(ws.of('a')), expectedText(JSON.stringify(messages('first')), 8));
  assert.equal(muxText(ws.of('b')), expectedText(JSON.stringify(messages('second')), 10));
  assert.equal(muxText(ws.of('c')), expectedText(JSON.stringify('third'), 6));
  for (const id of ['a', 'b', 'c']) {
    const types = ws.of(id).map((r) => r.msg['type']);
    assert.equal(types.at(-1), 'done');
    assert.ok(types.slice(0, -1).every((ty) => ty === 'chunk'), `${id}: chunks then done`);
    const first = ws.of(id)[0]!.msg['data'] as { object: string };
    assert.equal(first.object, id === 'c' ? 'text_completion' : 'chat.completion.chunk', 'chunks are the SSE stream objects');
  }
  // Interleaved, not one generation after another: b's first chunk arrives before a's last.
  const order = ws.received.map((r) => r.msg['id']);
  assert.ok(order.indexOf('b') < order.lastIndexOf('a'), `interleaved: ${order.join('')}`);
  // Token by token: a's chunks are spread over time, not one burst.
  const times = ws.of('a').map((r) => r.at);
  assert.ok(times.at(-1)! - times[0]! > 60, `a's chunks spread over ${Math.round(times.at(-1)! - times[0]!)} ms`);
  assert.equal(g.logs.length, 3);
  assert.ok(g.logs.every((l) => l.method === 'WS' && l.outcome === 'completed' && l.tokens_out !== undefined));
});

test('/v1/ws: usage chunk only when asked; in-band upstream errors end a generation with an error message', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 2, tokens: 4 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }] });
  const ws = await openSocket(t, wsUrl(g.url, '/ws'));
  ws.send(create('u', 'x', {}, { stream_options: { include_usage: true } }));
  ws.send(create('n', 'x'));
  ws.send(create('e', 'x', { fail: 'error_frame', fail_after: 2, tokens: 10 }));
  ws.send(create('d', 'x', { fail: 'drop', fail_after: 2, tokens: 10 }));
  for (const id of ['u', 'n']) await ws.waitFor((m) => m['id'] === id && m['type'] === 'done');
  const usage = ws.of('u').find((r) => (r.msg['data'] as { usage?: unknown } | undefined)?.usage);
  assert.equal((usage?.msg['data'] as { usage: { completion_tokens: number } }).usage.completion_tokens, 4);
  assert.ok(!ws.of('n').some((r) => (r.msg['data'] as { usage?: unknown } | undefined)?.usage), 'no usage unless asked');

  const e = await ws.waitFor((m) => m['id'] === 'e' && m['type'] === 'error');
  assert.equal((e['error'] as { message: string }).message, 'simulated engine failure');
  const d = await ws.waitFor((m) => m['id'] === 'd' && m['type'] === 'error');
  assert.equal((d['error'] as { code: string }).code, 'sluice_upstream_truncated');
  await new Promise((r) => setTimeout(r, 50));
  for (const id of ['e', 'd']) assert.ok(!ws.of(id).some((r) => r.msg['type'] === 'done'), `${id}: a failed stream never ends with done`);
  assert.equal(ws.ws.readyState, WebSocket.OPEN, 'the connection outlives a failed generation');
});

test('/v1/ws: cancel aborts only its own upstream; closing the socket aborts every upstream it owns', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 20, tokens: 500 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }] });
  const ws = await openSocket(t, wsUrl(g.url, '/ws'));
  ws.send(create('keep', 'one', { tokens: 12, itl_ms: 10 }));
  ws.send(create('stop', 'two'));
  await ws.waitFor((m) => m['id'] === 'stop' && m['type'] === 'chunk');
  const aborted = once<{ tokensSent: number }>(s.events, 'aborted');
  ws.send({ type: 'cancel', id: 'stop' });
  await aborted;
  await ws.waitFor((m) => m['id'] === 'stop' && m['type'] === 'cancelled');
  await ws.waitFor((m) => m['id'] === 'keep' && m['type'] === 'done');
  assert.equal(muxText(ws.of('keep')), expectedText(JSON.stringify(messages('one')), 12), 'the other generation ran to its end');
  assert.equal(s.stats.aborted, 1);
  const cancelAgain = ws.received.length;
  ws.send({ type: 'cancel', id: 'stop' });
  const late = await ws.waitFor((m) => m['type'] === 'error' && ws.received.length > cancelAgain);
  assert.equal((late['error'] as { code: string }).code, 'sluice_ws_unknown_id');

  // Three more, then the client goes away: all three upstreams are aborted.
  for (const id of ['x', 'y', 'z']) ws.send(create(id, id));
  for (const id of ['x', 'y', 'z']) await ws.waitFor((m) => m['id'] === id && m['type'] === 'chunk');
  let abortedCount = 0;
  const all = new Promise<void>((resolve) => s.events.on('aborted', () => ++abortedCount === 3 && resolve()));
  ws.ws.close();
  await all;
  assert.equal(s.stats.aborted, 4);
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(g.logs.map((l) => l.outcome).sort(), ['client_aborted', 'client_aborted', 'client_aborted', 'client_aborted', 'completed']);
});

test('/v1/ws: bad messages get a clear error; malformed ones also a close code', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 1, tokens: 3 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }], websocket: { max_concurrent_per_connection: 2 } });
  const ws = await openSocket(t, wsUrl(g.url, '/ws'));
  const errorFor = async (msg: unknown): Promise<{ id?: string; status: number; error: { code: string; message: string; param: string | null } }> => {
    const n = ws.received.length;
    ws.send(msg);
    await ws.waitFor(() => ws.received.length > n);
    const m = ws.received[n]!.msg;
    assert.equal(m['type'], 'error', JSON.stringify(m));
    return m as never;
  };
  assert.equal((await errorFor({ type: 'launch' })).error.code, 'sluice_ws_unknown_message_type');
  assert.equal((await errorFor({ type: 'create', body: {} })).error.param, 'id');
  const noMessages = await errorFor({ type: 'create', id: 'm', body: { model: 'sluice-sim' } });
  assert.deepEqual([noMessages.id, noMessages.status, noMessages.error.param], ['m', 400, 'messages']);
  const badModel = await errorFor({ type: 'create', id: 'q', body: { model: 'nope', messages: messages('x') } });
  assert.deepEqual([badModel.status, badModel.error.code], [404, 'model_not_found']);
  assert.equal((await errorFor({ type: 'create', id: 'r', endpoint: '/v1/embeddings', body: {} })).error.param, 'endpoint');
  // The per-connection limit, and a duplicate id.
  ws.send(create('l1', 'x', { tokens: 200, itl_ms: 10 }));
  ws.send(create('l2', 'x', { tokens: 200, itl_ms: 10 }));
  assert.equal((await errorFor(create('l1', 'x'))).error.code, 'sluice_ws_duplicate_id');
  const limit = await errorFor(create('l3', 'x'));
  assert.deepEqual([limit.id, limit.status, limit.error.code], ['l3', 429, 'sluice_ws_too_many_generations']);
  const n = ws.received.length;
  ws.send({ type: 'ping' });
  await ws.waitFor(() => ws.received.slice(n).some((r) => r.msg['type'] === 'pong'));
  assert.equal(ws.ws.readyState, WebSocket.OPEN, 'request errors leave the connection open');

  // Not JSON: an error message, then close 1007; the generations it owned are aborted.
  const aborted = new Promise<void>((resolve) => {
    let k = 0;
    s.events.on('aborted', () => ++k === 2 && resolve());
  });
  ws.send('{"type": "create", ');
  const closed = await ws.closed;
  assert.equal(closed.code, 1007);
  assert.equal((ws.received.at(-1)!.msg['error'] as { code: string }).code, 'sluice_ws_invalid_message');
  await aborted;

  // Binary: an error message, then close 1003.
  const bin = await openSocket(t, wsUrl(g.url, '/ws'));
  bin.ws.send(Buffer.from([1, 2, 3]));
  assert.equal((await bin.closed).code, 1003);
  assert.equal((bin.received[0]!.msg['error'] as { code: string }).code, 'sluice_ws_invalid_message');
});

test('/v1/ws: an oversized message is refused with an error message and close 1009', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url }], websocket: { max_message_bytes: 4096 } });
  const ws = await openSocket(t, wsUrl(g.url, '/ws'));
  ws.send(create('big', 'x'.repeat(8_000)));
  const closed = await ws.closed;
  assert.equal(closed.code, 1009);
  assert.match(closed.reason, /4096/);
  const err = ws.received[0]?.msg['error'] as { code: string; message: string };
  assert.equal(err.code, 'sluice_ws_message_too_big');
  assert.equal(s.stats.started, 0, 'nothing reached the upstream');
});

test('/v1/ws: keys by header or browser subprotocol, an Origin allowlist, refusals as HTTP errors', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 1, tokens: 2 } });
  const key = 'sk-test-0123456789';
  const g = await gateway(t, { upstreams: [{ url: s.url }], api_keys: [key], cors: { origins: ['https://app.example'] } });
  const url = wsUrl(g.url, '/ws');
  const refused = async (protocols: string[], headers: Record<string, string>): Promise<{ status: number; body: string }> => {
    const sock = new TestSocket(url, protocols, { headers });
    t.after(() => sock.ws.terminate());
    return (await sock.opened.then(() => assert.fail('handshake accepted'), (e: unknown) => e)) as { status: number; body: string };
  };
  const missing = await refused([], {});
  assert.equal(missing.status, 401);
  assert.equal((JSON.parse(missing.body) as { error: { code: string } }).error.code, 'invalid_api_key');
  assert.equal((await refused([], { authorization: 'Bearer wrong-key-123' })).status, 401);
  assert.equal((await refused(['sluice.v1', 'sluice-api-key.wrong-key-123'], {})).status, 401);
  const origin = await refused([], { authorization: `Bearer ${key}`, origin: 'https://evil.example' });
  assert.equal(origin.status, 403);
  assert.equal((JSON.parse(origin.body) as { error: { code: string } }).error.code, 'origin_not_allowed');

  const viaHeader = await openSocket(t, url, [], { headers: { authorization: `Bearer ${key}` } });
  viaHeader.send(create('h', 'x'));
  await viaHeader.waitFor((m) => m['type'] === 'done');
  // A browser: the key in a subprotocol, an allowed Origin; the key-free protocol is the one selected.
  const viaProtocol = await openSocket(t, url, ['sluice.v1', `sluice-api-key.${key}`], { headers: { origin: 'https://app.example' } });
  assert.equal(viaProtocol.ws.protocol, 'sluice.v1');
  viaProtocol.send(create('p', 'x'));
  await viaProtocol.waitFor((m) => m['type'] === 'done');
  // OpenAI Realtime's own subprotocol prefix works too.
  const openaiStyle = await openSocket(t, url, ['realtime', `openai-insecure-api-key.${key}`]);
  assert.equal(openaiStyle.ws.protocol, 'realtime');

  const nowhere = new TestSocket(wsUrl(g.url, '/nowhere'), [], { headers: { authorization: `Bearer ${key}` } });
  t.after(() => nowhere.ws.terminate());
  assert.equal(((await nowhere.opened.catch((e: unknown) => e)) as { status: number }).status, 404);

  const off = await gateway(t, { upstreams: [{ url: s.url }], websocket: { enabled: false } });
  const disabled = new TestSocket(wsUrl(off.url, '/ws'));
  t.after(() => disabled.ws.terminate());
  const refusal = (await disabled.opened.catch((e: unknown) => e)) as { status: number; body: string };
  assert.equal(refusal.status, 404);
  assert.match(refusal.body, /websocket\.enabled/);
});

test('/v1/ws: ping frames keep the connection alive; a peer that stops answering is dropped and its upstream aborted', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 20, tokens: 500 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }], websocket: { ping_interval_ms: 100 } });
  const alive = await openSocket(t, wsUrl(g.url, '/ws'));
  let pings = 0;
  alive.ws.on('ping', () => pings++);
  const silent = await openSocket(t, wsUrl(g.url, '/ws'), [], { autoPong: false });
  silent.send(create('s', 'x'));
  await silent.waitFor((m) => m['type'] === 'chunk');
  const aborted = once(s.events, 'aborted', 3_000);
  const closed = await silent.closed;
  await aborted;
  assert.equal(closed.code, 1006, 'dropped without a closing handshake');
  assert.ok(pings >= 2, `the live client got ${pings} pings`);
  assert.equal(alive.ws.readyState, WebSocket.OPEN, 'a client that answers stays connected');
});


test('/v1/ws: a slow reader pauses the upstream with bounded buffering, then gets everything', async (t) => {
  const total = 30_000; // ~30 MB if nothing pushed back
  const up = await fastUpstream(t, total);
  const g = await gateway(t, { upstreams: [{ url: up.url }], websocket: { max_buffered_bytes: 256 * 1024 } });
  const ws = await openSocket(t, wsUrl(g.url, '/ws'));
  ws.ws.pause(); // reads nothing from here on
  ws.send({ type: 'create', id: 'f', body: { model: 'm', messages: messages('x') } });
  await new Promise((r) => setTimeout(r, 800));
  const early = up.state.written;
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(up.state.written, early, 'the upstream stopped while the client read nothing');
  assert.ok(early < 16 * 1024 * 1024, `upstream wrote ${early} bytes while the client read none`);
  ws.ws.resume();
  await ws.waitFor((m) => m['type'] === 'done', 30_000);
  assert.equal(up.state.sent, total);
  assert.equal(ws.of('f').filter((r) => r.msg['type'] === 'chunk').length, total + 1);
});

test('/v1/ws: a reader stalled past client_stall_ms is dropped and its upstream aborted', async (t) => {
  const up = await fastUpstream(t, 1_000_000);
  const g = await gateway(t, { upstreams: [{ url: up.url }], timeouts: { client_stall_ms: 300 }, websocket: { max_buffered_bytes: 64 * 1024 } });
  const ws = await openSocket(t, wsUrl(g.url, '/ws'));
  ws.ws.pause();
  ws.send({ type: 'create', id: 'f', body: { model: 'm', messages: messages('x') } });
  await up.state.closed;
  assert.ok(up.state.closedEarly, 'upstream connection closed before its end');
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(g.logs[0]?.outcome, 'client_stalled');
});

test('/v1/ws: on shutdown, running generations finish, new ones are refused, then the socket closes with 1001', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 20, tokens: 10 } });
  const g = await startGateway({ port: 0, upstreams: [{ url: s.url }], drain: { timeout_ms: 5_000 }, logger: () => {} });
  t.after(() => g.close());
  const ws = await openSocket(t, wsUrl(g.url, '/ws'));
  ws.send(create('a', 'x'));
  await ws.waitFor((m) => m['type'] === 'chunk');
  const closing = g.close();
  ws.send(create('b', 'x'));
  const refused = await ws.waitFor((m) => m['id'] === 'b');
  assert.equal((refused['error'] as { code: string }).code, 'sluice_shutting_down');
  await ws.waitFor((m) => m['id'] === 'a' && m['type'] === 'done');
  assert.equal((await ws.closed).code, 1001);
  await closing;

  // Past drain.timeout_ms, a generation still running ends with the shutdown error.
  const g2 = await startGateway({ port: 0, upstreams: [{ url: s.url }], drain: { timeout_ms: 100 }, logger: () => {} });
  const ws2 = await openSocket(t, wsUrl(g2.url, '/ws'));
  ws2.send(create('long', 'x', { tokens: 1_000 }));
  await ws2.waitFor((m) => m['type'] === 'chunk');
  await g2.close();
  const err = await ws2.waitFor((m) => m['type'] === 'error');
  assert.equal((err['error'] as { code: string }).code, 'sluice_shutting_down');
  assert.equal((await ws2.closed).code, 1001);
});
