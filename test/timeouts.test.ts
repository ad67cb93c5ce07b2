import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { gateway, sim, post, chatBody, frames, once } from './helpers/gateway.ts';

const lastError = (text: string): { code: string; type: string; message: string } =>
  (JSON.parse(frames(text).at(-1)!.slice(6)) as { error: { code: string; type: string; message: string } }).error;

test('first-byte timeout: an upstream that sends headers but no event in time', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 10_000, tokens: 2 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }], timeouts: { first_byte_ms: 300 } });
  const aborted = once(s.events, 'aborted');
  const text = await (await post(`${g.url}/chat/completions`, chatBody())).text();
  assert.equal(lastError(text).code, 'sluice_upstream_first_byte_timeout');
  assert.equal(lastError(text).type, 'timeout_error');
  assert.ok(!text.includes('[DONE]'));
  await aborted; // the hung request is cancelled upstream too
});

test('first-byte timeout before any header: a 504 JSON error', async (t) => {
  const s = await sim(t, { timing: { headersDelayMs: 10_000, tokens: 2 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }], timeouts: { first_byte_ms: 200 }, heartbeat_ms: 60_000 });
  const res = await post(`${g.url}/chat/completions`, chatBody());
  assert.equal(res.status, 504);
  const body = (await res.json()) as { error: { code: string } };
  assert.equal(body.error.code, 'sluice_upstream_first_byte_timeout');
});

test('idle timeout: an engine that hangs mid-stream is cut with its own code', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 1, tokens: 10, fail: 'hang', failAfter: 3 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }], timeouts: { idle_ms: 300 }, heartbeat_ms: 100 });
  const aborted = once(s.events, 'aborted');
  const text = await (await post(`${g.url}/chat/completions`, chatBody())).text();
  assert.equal(lastError(text).code, 'sluice_upstream_idle_timeout');
  assert.ok(text.includes(': keep-alive'), 'heartbeats kept the client connection alive meanwhile');
  await aborted;
  assert.equal(g.logs[0]?.outcome, 'timeout');
});

test('total timeout: a stream longer than total_ms is ended with its own code', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 20, tokens: 1_000 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }], timeouts: { total_ms: 400 } });
  const text = await (await post(`${g.url}/chat/completions`, chatBody())).text();
  assert.equal(lastError(text).code, 'sluice_total_timeout');
  assert.ok(frames(text).length > 3, 'tokens flowed before the limit');
});

test('connect timeout: an upstream that never completes the TCP handshake', async (t) => {
  // A listener with a full accept queue that never accepts: Linux drops further SYNs, so connect() hangs.
  const py = spawn('python3', ['-c', 'import socket,sys,time\ns=socket.socket()\ns.bind(("127.0.0.1",0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(120)'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => py.kill());
  const port = Number((await once<Buffer>(py.stdout!, 'data')).toString().trim());
  const fillers: Socket[] = [];
  t.after(() => fillers.forEach((s) => s.destroy()));
  for (let i = 0; i < 3; i++) fillers.push(connect(port, '127.0.0.1').on('error', () => {}));
  await new Promise((r) => setTimeout(r, 200));
  const g = await gateway(t, {
    upstreams: [{ url: `http://127.0.0.1:${port}/v1`, models: ['sluice-sim'] }],
    timeouts: { connect_ms: 300 },
    heartbeat_ms: 60_000,
  });
  const started = Date.now();
  const res = await post(`${g.url}/chat/completions`, chatBody());
  const body = (await res.json()) as { error: { code: string; message: string } };
  assert.ok(Date.now() - started < 5_000);
  assert.equal(res.status, 504);
  assert.equal(body.error.code, 'sluice_upstream_connect_timeout');
  assert.match(body.error.message, /connect timed out/);
});

test('a quiet period longer than the total timeout does not cut the next stream', async (t) => {
  // Real time: one stream, then a gap with no stream at all (the shared clock's timer is stopped), then another.
  const g = await gateway(t, { timeouts: { total_ms: 600 }, sim: { ttft_ms: 50, itl_ms: 10, tokens: 10 } });
  for (let i = 0; i < 2; i++) {
    if (i === 1) await new Promise((r) => setTimeout(r, 1_000));
    const text = await (await post(`${g.url}/chat/completions`, chatBody())).text();
    assert.ok(text.endsWith('data: [DONE]\n\n'), `stream ${i + 1} completed: ${text.slice(-200)}`);
  }
  assert.deepEqual(g.logs.map((l) => l.outcome), ['completed', 'completed']);
});
