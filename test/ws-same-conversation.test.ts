import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, constants } from 'node:http2';
import { gateway, once, post, sim, frames } from './helpers/gateway.ts';
import { expectedText, openSocket, wsUrl } from './helpers/ws.ts';

/**
 * The "done when": one conversation streams token by token over HTTP/1.1 SSE, HTTP/2 SSE (h2c here; TLS is
 * in http2.test.ts), /v1/ws and the Responses WebSocket mode, and cancelling or aborting frees the upstream in each.
 */
const messages = [{ role: 'user', content: 'The same conversation, four ways' }];
const TOKENS = 6;

type Arrivals = { text: string; at: number[] };

function sseText(sse: string, at: number[], stamp: number): Arrivals {
  let text = '';
  for (const f of frames(sse)) {
    if (!f.startsWith('data: {')) continue;
    const c = (JSON.parse(f.slice(6)) as { choices: Array<{ delta: { content?: string } }> }).choices[0]?.delta.content;
    if (c) {
      text += c;
      at.push(stamp);
    }
  }
  return { text, at };
}

test('the same conversation streams token by token over HTTP/1.1 SSE, HTTP/2 SSE, /v1/ws and Responses WebSocket', async (t) => {
  // 100 ms between tokens: the test process runs the simulator, the gateway and four clients, so a stall of its own
  // event loop longer than the gap would merge two tokens into one read (seen at 30 ms on a loaded CI machine).
  const s = await sim(t, { timing: { ttftMs: 5, itlMs: 100, tokens: TOKENS } });
  const g = await gateway(t, { upstreams: [{ url: s.url }], h2c: true });
  const body = { model: 'sluice-sim', messages, stream: true };

  const http1 = async (): Promise<Arrivals> => {
    const res = await post(`${g.url}/chat/completions`, body);
    const reader = res.body!.getReader();
    const out: Arrivals = { text: '', at: [] };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return out;
      const part = sseText(Buffer.from(value).toString('utf8'), out.at, performance.now());
      out.text += part.text;
    }
  };
  const http2 = (): Promise<Arrivals> =>
    new Promise((resolve) => {
      const session = connect(new URL(g.url).origin);
      const stream = session.request({ ':method': 'POST', ':path': '/v1/chat/completions', 'content-type': 'application/json' });
      const out: Arrivals = { text: '', at: [] };
      stream.on('data', (d: Buffer) => (out.text += sseText(d.toString('utf8'), out.at, performance.now()).text));
      stream.on('close', () => {
        session.close();
        resolve(out);
      });
      stream.end(JSON.stringify(body));
    });
  const mux = async (): Promise<Arrivals> => {
    const ws = await openSocket(t, wsUrl(g.url, '/ws'));
    ws.send({ type: 'create', id: 'c', body: { model: 'sluice-sim', messages } });
    await ws.waitFor((m) => m['type'] === 'done');
    const out: Arrivals = { text: '', at: [] };
    for (const r of ws.of('c')) {
      const c = (r.msg['data'] as { choices?: Array<{ delta: { content?: string } }> } | undefined)?.choices?.[0]?.delta.content;
      if (c) {
        out.text += c;
        out.at.push(r.at);
      }
    }
    return out;
  };
  const responses = async (): Promise<Arrivals> => {
    const ws = await openSocket(t, wsUrl(g.url, '/responses'));
    ws.send({ type: 'response.create', model: 'sluice-sim', input: messages });
    await ws.waitFor((m) => m['type'] === 'response.completed');
    const deltas = ws.received.filter((r) => r.msg['type'] === 'response.output_text.delta');
    return { text: deltas.map((r) => r.msg['delta'] as string).join(''), at: deltas.map((r) => r.at) };
  };

  const results = await Promise.all([http1(), http2(), mux(), responses()]);
  const expected = expectedText(JSON.stringify(messages), TOKENS);
  for (const [i, name] of ['HTTP/1.1 SSE', 'HTTP/2 SSE', '/v1/ws', 'Responses WebSocket'].entries()) {
    const r = results[i]!;
    assert.equal(r.text, expected, `${name}: the whole answer`);
    assert.equal(new Set(r.at).size, TOKENS, `${name}: each token arrived on its own`);
    assert.ok(r.at.at(-1)! - r.at[0]! > 100, `${name}: tokens spread over ${Math.round(r.at.at(-1)! - r.at[0]!)} ms`);
  }
});

test('cancel and abort free the upstream on every transport', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 20, tokens: 1_000 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }], h2c: true });
  const body = { model: 'sluice-sim', messages, stream: true };

  const abortedAfter = async (start: () => Promise<() => void>): Promise<number> => {
    const stop = await start();
    const aborted = once<{ tokensSent: number }>(s.events, 'aborted', 5_000);
    stop();
    return (await aborted).tokensSent;
  };
  // HTTP/1.1: the client goes away.
  const h1 = await abortedAfter(async () => {
    const ac = new AbortController();
    const res = await post(`${g.url}/chat/completions`, body, {}, ac.signal);
    await res.body!.getReader().read();
    return () => ac.abort();
  });
  // HTTP/2: RST_STREAM on one stream of a connection.
  const session = connect(new URL(g.url).origin);
  t.after(() => session.destroy());
  const h2 = await abortedAfter(async () => {
    const stream = session.request({ ':method': 'POST', ':path': '/v1/chat/completions', 'content-type': 'application/json' });
    stream.on('error', () => {});
    stream.end(JSON.stringify(body));
    await once(stream, 'data');
    return () => stream.close(constants.NGHTTP2_CANCEL);
  });
  // /v1/ws: a cancel message.
  const mux = await openSocket(t, wsUrl(g.url, '/ws'));
  const ws = await abortedAfter(async () => {
    mux.send({ type: 'create', id: 'c', body: { model: 'sluice-sim', messages } });
    await mux.waitFor((m) => m['type'] === 'chunk');
    return () => mux.send({ type: 'cancel', id: 'c' });
  });
  // Responses WebSocket: the socket closes.
  const rws = await openSocket(t, wsUrl(g.url, '/responses'));
  const resp = await abortedAfter(async () => {
    rws.send({ type: 'response.create', model: 'sluice-sim', input: messages });
    await rws.waitFor((m) => m['type'] === 'response.output_text.delta');
    return () => rws.ws.close();
  });
  for (const sent of [h1, h2, ws, resp]) assert.ok(sent < 1_000, 'stopped long before the end');
  assert.equal(s.stats.aborted, 4);
  await new Promise((r) => setTimeout(r, 30));
  assert.deepEqual(g.logs.map((l) => l.outcome), ['client_aborted', 'client_aborted', 'client_aborted', 'client_aborted']);
});
