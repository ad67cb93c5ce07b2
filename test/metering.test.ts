import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gateway, sim, post, chatBody, once, frames } from './helpers/gateway.ts';

/** Opens a stream, reads until `tokens` content chunks arrived, then leaves; resolves with what the client saw. */
async function readThenLeave(url: string, body: Record<string, unknown>, tokens: number): Promise<string> {
  const ac = new AbortController();
  const res = await post(url, body, {}, ac.signal);
  const reader = res.body!.getReader();
  let text = '';
  while ((text.match(/"content":"[^"]/g) ?? []).length < tokens) {
    const { value, done } = await reader.read();
    if (done) break;
    text += Buffer.from(value).toString('utf8');
  }
  ac.abort();
  await reader.read().catch(() => {});
  return text;
}

async function logged(g: { logs: Array<{ outcome: string }> }, n: number) {
  const deadline = Date.now() + 5_000;
  while (g.logs.length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
}

test('an aborted vLLM stream is metered exactly: the tokens the engine generated, reported on its last chunk', async (t) => {
  // The engine generates 7 tokens, then goes silent (as a long prefill of a tool call would): the client leaves
  // during the silence, so no token is on the wire when the abort lands and the count must match exactly.
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 20, tokens: 40, fail: 'hang', failAfter: 7 } });
  const g = await gateway(t, { upstreams: [{ url: s.url, name: 'vllm1', dialect: 'vllm' }] });
  const aborted = once<{ tokensSent: number }>(s.events, 'aborted');
  const text = await readThenLeave(`${g.url}/chat/completions`, chatBody(), 7);
  assert.ok(!text.includes('"usage"'), 'the client, which asked for no usage, got none');
  const { tokensSent } = await aborted;
  await logged(g, 1);
  const log = g.logs[0]!;
  assert.equal(log.outcome, 'client_aborted');
  assert.equal(log.tokens_source, 'reported');
  assert.equal(tokensSent, 7);
  assert.equal(log.tokens_out, tokensSent, 'exactly what the simulator generated before the client left');
  assert.ok((log.tokens_in ?? 0) > 0, 'the prompt too');
  const m = await (await fetch(g.url.replace(/\/v1$/, '/metrics'))).text();
  assert.match(m, new RegExp(`sluice_tokens_total\\{model="sluice-sim",type="completion",source="reported"\\} ${tokensSent}\\n`));
});

test('a client that asked for usage on every chunk gets it; one that asked for the usage chunk gets only that', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 0, tokens: 4 } });
  const g = await gateway(t, { upstreams: [{ url: s.url, dialect: 'vllm' }] });
  const every = frames(await (await post(`${g.url}/chat/completions`, chatBody({ stream_options: { include_usage: true, continuous_usage_stats: true } }))).text());
  const withUsage = every.filter((f) => f.includes('"usage":{'));
  assert.equal(withUsage.length, every.length - 1, 'every chunk but [DONE] carries usage');
  const last = frames(await (await post(`${g.url}/chat/completions`, chatBody({ stream_options: { include_usage: true } }))).text());
  assert.equal(last.filter((f) => f.includes('"usage"')).length, 1);
  assert.match(last.at(-2) ?? '', /"choices":\[\],"usage":\{"prompt_tokens":\d+,"total_tokens":\d+,"completion_tokens":4\}/);
  // Completions: vLLM writes "usage":null on every chunk without continuous stats; with them the running usage.
  const comp = await (await post(`${g.url}/completions`, { model: 'sluice-sim', prompt: 'hi', stream: true })).text();
  assert.ok(!comp.includes('"usage":{'), comp);
  assert.ok(comp.endsWith('data: [DONE]\n\n'));
  await logged(g, 3);
  assert.deepEqual(g.logs.map((l) => [l.tokens_out, l.tokens_source]), [[4, 'reported'], [4, 'reported'], [4, 'reported']]);
});

test('an engine without usage on every chunk: an aborted stream is metered by the chunks relayed, marked counted', async (t) => {
  const s = await sim(t, { dialect: 'llamacpp', timing: { ttftMs: 0, itlMs: 80, tokens: 40 } });
  const g = await gateway(t, { upstreams: [{ url: s.url, dialect: 'llamacpp' }] });
  const seen = once<{ body: Record<string, unknown> }>(s.events, 'request');
  await readThenLeave(`${g.url}/chat/completions`, chatBody(), 5);
  assert.deepEqual((await seen).body['stream_options'], { include_usage: true }, 'no continuous_usage_stats for an engine that may refuse it');
  await logged(g, 1);
  const log = g.logs[0]!;
  assert.equal(log.tokens_source, 'counted');
  assert.ok((log.tokens_out ?? 0) >= 5, `at least the chunks the client read (${log.tokens_out})`);
  assert.equal(log.tokens_in, undefined, 'the prompt is not known');
});

test('metering.continuous_usage: false asks vLLM for the usage chunk only; a cut stream is then counted', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 80, tokens: 40 } });
  const g = await gateway(t, { upstreams: [{ url: s.url, dialect: 'vllm' }], metering: { continuous_usage: false } });
  const seen = once<{ body: Record<string, unknown> }>(s.events, 'request');
  await readThenLeave(`${g.url}/chat/completions`, chatBody(), 3);
  assert.deepEqual((await seen).body['stream_options'], { include_usage: true });
  await logged(g, 1);
  assert.equal(g.logs[0]?.tokens_source, 'counted');
});

test('usage on every chunk is cut the same when reads split events (the parser path), and metered the same', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 0, tokens: 6 } });
  // Ask the simulator itself for a continuous-usage stream, then replay its bytes 7 at a time through the gateway.
  const raw = await (await post(`${s.url}/chat/completions`, chatBody({ stream_options: { include_usage: true, continuous_usage_stats: true } }))).text();
  assert.ok((raw.match(/"usage":\{/g) ?? []).length >= 7, 'the simulator put usage on every chunk');
  const { httpServer } = await import('./helpers/gateway.ts');
  const up = await httpServer(t, (req, res) => {
    if (req.url === '/v1/models') return void res.end(JSON.stringify({ data: [{ id: 'sluice-sim' }] }));
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    let at = 0;
    const next = (): void => {
      if (at >= raw.length) return void res.end();
      res.write(raw.slice(at, (at += 7)));
      setImmediate(next);
    };
    next();
  });
  const g = await gateway(t, { upstreams: [{ url: up.url, dialect: 'vllm' }] });
  for (const [so, usageFrames] of [[undefined, 0], [{ include_usage: true }, 1]] as const) {
    const text = await (await post(`${g.url}/chat/completions`, chatBody(so ? { stream_options: so } : {}))).text();
    assert.equal(frames(text).filter((f) => f.includes('"usage"')).length, usageFrames, text);
    assert.ok(text.endsWith('data: [DONE]\n\n'));
  }
  await logged(g, 2);
  assert.deepEqual(g.logs.map((l) => [l.tokens_out, l.tokens_source]), [[6, 'reported'], [6, 'reported']]);
});
