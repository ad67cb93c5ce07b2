import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gateway, httpServer, post, frames } from './helpers/gateway.ts';

/**
 * Issue 12, "answers that look whole but are not": an upstream stream that ends with `[DONE]` (or ends at all) before
 * every choice finished, reports an error in an older shape, or sends data that is not JSON must reach the client as
 * an error frame without `[DONE]`, logged as truncated or upstream_error, never as a complete answer.
 */

const chunk = (content: string, finish: string | null = null, index = 0): string =>
  `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":${index},"delta":{"content":"${content}"},"logprobs":null,"finish_reason":${finish === null ? 'null' : `"${finish}"`}}]}\n\n`;
const USAGE = 'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\n';
const DONE = 'data: [DONE]\n\n';

/** A gateway in front of an upstream that answers every stream request with `body`, as vLLM frames it. */
async function through(t: Parameters<typeof gateway>[0], body: string) {
  const up = await httpServer(t, (req, res) => {
    if (req.url === '/v1/models') return void res.end(JSON.stringify({ data: [{ id: 'm' }] }));
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.end(body);
  });
  return gateway(t, { upstreams: [{ url: up.url, models: ['m'], dialect: 'vllm' }] });
}

async function streamOf(g: Awaited<ReturnType<typeof through>>, extra: Record<string, unknown> = {}) {
  const res = await post(`${g.url}/chat/completions`, { model: 'm', stream: true, messages: [{ role: 'user', content: 'hi' }], ...extra });
  assert.equal(res.status, 200);
  const text = await res.text();
  const last = frames(text).at(-1) ?? '';
  const error = last.startsWith('data: {"error"') ? (JSON.parse(last.slice(6)) as { error: { code: string; message: string } }).error : undefined;
  return { text, error };
}

test('[DONE] before the finish reason: truncated, not complete', async (t) => {
  const g = await through(t, chunk('Hel') + chunk('lo') + DONE);
  const { text, error } = await streamOf(g);
  assert.ok(!text.includes('data: [DONE]'), 'no [DONE] reaches the client');
  assert.equal(error?.code, 'sluice_upstream_truncated');
  assert.ok(text.includes('"content":"lo"'), 'what did arrive was relayed');
  assert.equal(g.logs[0]?.outcome, 'truncated');
});

test('a usage chunk and [DONE] with no finish reason at all: truncated', async (t) => {
  const g = await through(t, chunk('Hel') + USAGE + DONE);
  const { text, error } = await streamOf(g, { stream_options: { include_usage: true } });
  assert.equal(error?.code, 'sluice_upstream_truncated');
  assert.ok(!text.includes('data: [DONE]'));
  assert.equal(g.logs[0]?.outcome, 'truncated');
  assert.equal(g.logs[0]?.tokens_out, 2, 'what the upstream reported is still metered');
});

test('n=2 with one choice finished: truncated; both finished: complete', async (t) => {
  const cut = await through(t, chunk('a', null, 0) + chunk('b', null, 1) + chunk('', 'stop', 0) + DONE);
  assert.equal((await streamOf(cut, { n: 2 })).error?.code, 'sluice_upstream_truncated');
  const whole = await through(t, chunk('a', null, 0) + chunk('b', null, 1) + chunk('', 'stop', 0) + chunk('', 'length', 1) + DONE);
  const { text, error } = await streamOf(whole, { n: 2 });
  assert.equal(error, undefined);
  assert.ok(text.endsWith(DONE));
});

test("old vLLM's {\"object\":\"error\"} frame (with Python's spacing, or behind an id) is an error, and the [DONE] after it is not relayed", async (t) => {
  for (const frame of [
    'data: {"object":"error","message":"The engine died","type":"BadRequestError","param":null,"code":400}\n\n',
    'data: {"object": "error", "message": "The engine died", "type": "BadRequestError", "param": null, "code": 400}\n\n',
    'data: {"id":"c","object":"error","message":"The engine died","type":"BadRequestError","param":null,"code":400}\n\n',
  ]) {
    const g = await through(t, chunk('Hel') + frame + DONE);
    const { text, error } = await streamOf(g);
    assert.equal(error?.message, 'The engine died', frame);
    assert.equal(error?.code, '400');
    assert.ok(!text.includes('data: [DONE]'));
    assert.equal(g.logs[0]?.outcome, 'upstream_error');
  }
});

test('a data line that is not JSON is a bad upstream stream, and is not relayed', async (t) => {
  const g = await through(t, chunk('Hel') + 'data: <html>502 Bad Gateway</html>\n\n' + chunk('', 'stop') + DONE);
  const { text, error } = await streamOf(g);
  assert.equal(error?.code, 'sluice_upstream_bad_response');
  assert.ok(!text.includes('<html>'), 'the non-JSON line never reaches the client');
  assert.ok(!text.includes('data: [DONE]'));
  assert.equal(g.logs[0]?.outcome, 'upstream_error');
});

test('the same checks hold when reads pass through as bytes (one event per read, vLLM framing)', async (t) => {
  // Each event in its own write, so the gateway's byte pass-through (not the parser) sees them.
  const up = await httpServer(t, (req, res) => {
    if (req.url === '/v1/models') return void res.end(JSON.stringify({ data: [{ id: 'm' }] }));
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const parts = [chunk('Hel'), chunk('lo'), DONE];
    const next = (): void => {
      const p = parts.shift();
      if (p === undefined) return void res.end();
      res.write(p);
      setTimeout(next, 20);
    };
    next();
  });
  const g = await gateway(t, { upstreams: [{ url: up.url, models: ['m'], dialect: 'vllm' }] });
  const { text, error } = await streamOf(g);
  assert.equal(error?.code, 'sluice_upstream_truncated');
  assert.ok(text.includes('"content":"lo"'));
});
