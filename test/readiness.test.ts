import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startSimulator, type Simulator } from '../src/sim/server.ts';
import { chatBody, gateway, httpServer, post } from './helpers/gateway.ts';

// Issue 13, "Readiness, liveness, drain": /ready is 200 only while some upstream is reachable now, by active checks
// and failed requests, and each change of an upstream's state prints one line.

interface Ready {
  status: string;
  upstreams: Array<{ name: string; healthy: boolean; state: string; last_check: string | null; error?: string }>;
}

async function ready(base: string): Promise<{ status: number; body: Ready }> {
  const res = await fetch(`${base}/ready`);
  return { status: res.status, body: (await res.json()) as Ready };
}

/** Polls /ready until it answers `status`; fails after `ms`. Returns the answer and when it was seen. */
async function readyBecomes(base: string, status: number, ms: number): Promise<{ body: Ready; at: number }> {
  const deadline = Date.now() + ms;
  for (;;) {
    const r = await ready(base);
    if (r.status === status) return { body: r.body, at: Date.now() };
    if (Date.now() > deadline) throw new Error(`/ready still answers ${r.status} after ${ms} ms: ${JSON.stringify(r.body)}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const stateLines = (notices: string[]): string[] => notices.filter((l) => /upstream gpu1 is (down|up)/.test(l));

test('/ready turns 503 within one check interval of the only upstream going down, and 200 when it is back; one line each', async (t) => {
  const INTERVAL = 1_000;
  let s: Simulator = await startSimulator({ port: 0 });
  t.after(() => s.close());
  const port = s.port;
  const g = await gateway(t, { upstreams: [{ url: s.url, name: 'gpu1' }], health: { interval_ms: INTERVAL, timeout_ms: 1_000 } });
  const base = g.url.replace(/\/v1$/, '');
  assert.equal((await ready(base)).status, 200);

  await s.close();
  const stopped = Date.now();
  // One interval for the next check to come, and as much again for a loaded machine's timer lateness.
  const down = await readyBecomes(base, 503, 2 * INTERVAL + 5_000);
  assert.ok(down.at - stopped <= 2 * INTERVAL, `/ready turned 503 ${down.at - stopped} ms after the upstream stopped (interval ${INTERVAL} ms)`);
  assert.equal(down.body.status, 'unavailable');
  const u = down.body.upstreams[0];
  assert.equal(u?.state, 'down');
  assert.equal(u?.healthy, false);
  assert.match(u?.error ?? '', /^health check failed: .*ECONNREFUSED/, 'an active check found it, no request was made');
  assert.ok(Date.parse(u?.last_check ?? '') >= stopped - 10, 'last_check is the check that failed');
  assert.equal((await fetch(`${base}/health`)).status, 200, '/health is liveness: the process runs');
  // The streams a client would send now fail over to nothing: the answer says so.
  const refused = await post(`${g.url}/chat/completions`, chatBody());
  assert.equal(refused.status, 503);
  await refused.text();

  // Several more failed checks while it stays down: no more lines.
  await new Promise((resolve) => setTimeout(resolve, 2 * INTERVAL));
  s = await startSimulator({ port });
  const up = await readyBecomes(base, 200, 2 * INTERVAL + 5_000);
  assert.equal(up.body.status, 'ready');
  assert.equal(up.body.upstreams[0]?.state, 'up');
  assert.equal(up.body.upstreams[0]?.error, undefined);
  const res = await post(`${g.url}/chat/completions`, chatBody());
  assert.ok((await res.text()).endsWith('data: [DONE]\n\n'), 'streams work again');

  // And more successful checks: still no more lines.
  await new Promise((resolve) => setTimeout(resolve, 2 * INTERVAL));
  const lines = stateLines(g.notices);
  assert.equal(lines.length, 2, lines.join('\n'));
  assert.match(lines[0] ?? '', /^upstream gpu1 is down: health check failed: .*ECONNREFUSED/);
  assert.match(lines[1] ?? '', /^upstream gpu1 is up again \(down for \d+\.\d s\)$/);
});

test('a failed request marks its upstream down at once; only a successful check brings it back', async (t) => {
  let failing = true;
  const up = await httpServer(t, (req, res) => {
    if (req.url === '/v1/models') return void res.end(JSON.stringify({ object: 'list', data: [{ id: 'm', object: 'model', owned_by: 'me' }] }));
    req.resume();
    if (failing) {
      res.writeHead(500, { 'content-type': 'application/json' });
      return void res.end('{"error":{"message":"engine crashed"}}');
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.end('data: {"id":"x","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n');
  });
  // Checks far apart: what brings the upstream back below is a check that the test calls for by waiting.
  const INTERVAL = 1_500;
  const g = await gateway(t, { upstreams: [{ url: up.url, name: 'gpu1', dialect: 'openai' }], health: { interval_ms: INTERVAL, timeout_ms: 1_000 } });
  const base = g.url.replace(/\/v1$/, '');
  assert.equal((await ready(base)).status, 200);

  const failed = await post(`${g.url}/chat/completions`, chatBody({ model: 'm' }));
  assert.equal(failed.status, 500);
  await failed.text();
  const down = await ready(base);
  assert.equal(down.status, 503, 'at once: no check was needed');
  assert.equal(down.body.upstreams[0]?.state, 'down');
  assert.equal(down.body.upstreams[0]?.error, 'HTTP 500');
  assert.deepEqual(stateLines(g.notices), ['upstream gpu1 is down: HTTP 500']);

  // A request that succeeds while it is down does not flip it back (a flapping engine would print a line per request).
  failing = false;
  const ok = await post(`${g.url}/chat/completions`, chatBody({ model: 'm' }));
  assert.ok((await ok.text()).endsWith('data: [DONE]\n\n'));
  // The next check does.
  await readyBecomes(base, 200, 2 * INTERVAL + 5_000);
  assert.equal(stateLines(g.notices).length, 2);
  assert.match(stateLines(g.notices)[1] ?? '', /is up again/);
});

test('an upstream down at start prints one line saying why; /ready is 503 until it comes', async (t) => {
  const s = await startSimulator({ port: 0 });
  const port = s.port;
  await s.close();
  const g = await gateway(t, { upstreams: [{ url: `http://127.0.0.1:${port}/v1`, name: 'gpu1' }], health: { interval_ms: 500, timeout_ms: 1_000 } });
  const base = g.url.replace(/\/v1$/, '');
  const first = await ready(base);
  assert.equal(first.status, 503);
  assert.equal(first.body.upstreams[0]?.state, 'down');
  assert.equal(stateLines(g.notices).length, 1);
  assert.match(stateLines(g.notices)[0] ?? '', /^upstream gpu1 is down: model discovery failed: .*ECONNREFUSED/);
  const back = await startSimulator({ port });
  t.after(() => back.close());
  await readyBecomes(base, 200, 10_000);
  assert.deepEqual(g.models(), ['sluice-sim'], 'the check that found it back read its models');
});

test('health.interval_ms 0: no checks; a failed upstream comes back at the next discovery round', async (t) => {
  const up = await httpServer(t, (req, res) => {
    if (req.url === '/v1/models') return void res.end(JSON.stringify({ object: 'list', data: [{ id: 'm', object: 'model' }] }));
    req.resume();
    res.writeHead(503);
    res.end();
  });
  const g = await gateway(t, { upstreams: [{ url: up.url, name: 'gpu1' }], health: { interval_ms: 0 }, discovery_interval_ms: 500 });
  const base = g.url.replace(/\/v1$/, '');
  const failed = await post(`${g.url}/chat/completions`, chatBody({ model: 'm' }));
  await failed.text();
  assert.equal((await ready(base)).status, 503);
  await readyBecomes(base, 200, 10_000);
});
