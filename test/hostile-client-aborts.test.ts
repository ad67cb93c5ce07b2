import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { connect as h2connect, constants, type ClientHttp2Session } from 'node:http2';
import { gateway } from './helpers/gateway.ts';
import { countingUpstream, head, MODEL, RawClient, waitFor, type CountingUpstream } from './helpers/hostile.ts';
import { FLAG, FRAME, frame, postHeaders, RawH2, rstStream } from './helpers/h2-raw.ts';
import { testCert } from './helpers/tls.ts';

/**
 * Clients that leave, and the generations that must stop with them (issue 12, "GPU work that runs on for nobody"):
 * each test counts the requests still open on a scripted engine that generates slowly, and expects none shortly
 * after the client is gone. The aborts themselves belong to the generation layer (src/http/generate.ts and its
 * successor); these tests describe the behaviour it must have. At 7361523 the HTTP/1.1 pipelining cases fail: Node
 * emits no event at all on a queued (pipelined) response when its connection closes, and the request's own 'close'
 * came long before, when its body was read; only the connection's 'close' tells.
 */

const ABORT_WITHIN_MS = 1_500;

const chat = (stream: boolean): string => JSON.stringify({ model: MODEL, stream, messages: [{ role: 'user', content: 'Hello' }] });

/** Waits for the engine to see no open request, and says how many were left when the wait ended. */
async function drained(up: CountingUpstream, ms = ABORT_WITHIN_MS): Promise<number> {
  await waitFor(() => up.open === 0, ms);
  return up.open;
}

async function h2Session(t: TestContext, origin: string, ca?: Buffer): Promise<ClientHttp2Session> {
  const session = h2connect(origin, ca ? { ca } : {});
  session.on('error', () => {});
  t.after(() => session.destroy());
  await new Promise((r) => session.once('connect', r));
  return session;
}

const KINDS = [
  { name: 'streamed requests reset mid-stream', stream: true, ttftMs: 0 },
  { name: 'streamed requests reset during prefill (before upstream headers)', stream: true, ttftMs: 5_000 },
  { name: 'non-streamed requests reset while generating', stream: false, ttftMs: 0 },
] as const;

for (const transport of ['h2c', 'TLS'] as const) {
  for (const { name, stream, ttftMs } of KINDS) {
    test(`HTTP/2 (${transport}): 100 ${name} by the client (RST_STREAM CANCEL) leave nothing open upstream`, async (t) => {
      const up = await countingUpstream(t, { itlMs: 100, tokens: 600, ttftMs });
      const cert = transport === 'TLS' ? await testCert() : undefined;
      const g = await gateway(t, { upstreams: [{ url: up.url, models: [MODEL] }], ...(cert ? { tls: { cert_file: cert.certFile, key_file: cert.keyFile } } : { h2c: true }) });
      const session = await h2Session(t, new URL(g.url).origin, cert?.cert);
      const streams = Array.from({ length: 100 }, () => {
        const s = session.request({ ':method': 'POST', ':path': '/v1/chat/completions', 'content-type': 'application/json' });
        s.on('error', () => {});
        s.resume();
        s.end(chat(stream));
        return s;
      });
      assert.ok(await waitFor(() => up.open === 100, 10_000), `all 100 reached the engine (${up.open})`);
      for (const s of streams) s.close(constants.NGHTTP2_CANCEL);
      const left = await drained(up);
      t.diagnostic(`${left} of 100 still generating ${ABORT_WITHIN_MS} ms after the resets`);
      assert.equal(left, 0, `${left} generations run on for clients that reset their streams`);
      // The session itself goes on.
      const next = session.request({ ':path': '/v1/models' });
      next.resume();
      assert.equal(await new Promise<number>((r) => next.on('response', (h) => r(Number(h[':status'])))), 200);
    });
  }
}

test('HTTP/2 rapid reset: 3,000 HEADERS+RST_STREAM on one connection leave at most a handful of generations running, and the connection is closed', async (t) => {
  const up = await countingUpstream(t, { itlMs: 100, tokens: 600 });
  const g = await gateway(t, { upstreams: [{ url: up.url, models: [MODEL] }], h2c: true });
  const c = new RawH2(g.port);
  t.after(() => c.destroy());
  await c.connected;
  c.preface();
  const body = Buffer.from(chat(true));
  // Batches of 50, each reset once its generations have started upstream.
  for (let batch = 0; batch < 60 && c.closedAt === undefined; batch++) {
    const ids = Array.from({ length: 50 }, (_, i) => 1 + 2 * (batch * 50 + i));
    c.write(Buffer.concat(ids.flatMap((id) => [frame(FRAME.HEADERS, FLAG.END_HEADERS, id, postHeaders('/v1/chat/completions', '127.0.0.1', body.length)), frame(FRAME.DATA, FLAG.END_STREAM, id, body)])));
    await waitFor(() => up.started >= (batch + 1) * 50, 500);
    c.write(Buffer.concat(ids.map((id) => rstStream(id, constants.NGHTTP2_CANCEL))));
  }
  assert.ok(await waitFor(() => c.closedAt !== undefined, 3_000), 'the connection was closed');
  const left = await drained(up);
  t.diagnostic(`${up.started} generations started, ${left} still running ${ABORT_WITHIN_MS} ms after the connection closed`);
  assert.ok(left <= 5, `${left} generations run on after a rapid-reset connection was closed`);
});

for (const stream of [true, false]) {
  test(`HTTP/1.1 pipelining: 200 ${stream ? 'streamed' : 'non-streamed'} requests on one connection whose client leaves 100 ms later leave nothing open upstream`, async (t) => {
    const up = await countingUpstream(t, { itlMs: 100, tokens: 600 });
    const g = await gateway(t, { upstreams: [{ url: up.url, models: [MODEL] }] });
    const body = chat(stream);
    const one = head('POST', '/v1/chat/completions', { host: '127.0.0.1', 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }) + body;
    const c = new RawClient(g.port);
    t.after(() => c.socket.destroy());
    await new Promise((r) => c.socket.once('connect', r));
    c.socket.write(one.repeat(200));
    await new Promise((r) => setTimeout(r, 100));
    c.socket.destroy();
    // Requests the gateway had parsed keep reaching the engine for a moment; wait until they stop, then until none is open.
    let started = -1;
    await waitFor(() => {
      const settled = up.started === started;
      started = up.started;
      return settled;
    }, 3_000);
    const left = await drained(up);
    t.diagnostic(`${up.started} generations started, ${left} still running ${ABORT_WITHIN_MS} ms later`);
    assert.ok(up.started > 0, 'the pipelined requests reached the engine');
    assert.equal(left, 0, `${left} generations run on for a client that closed its connection`);
  });
}

test('HTTP/1.1: a non-streamed request whose client disconnects aborts the upstream request', async (t) => {
  const up = await countingUpstream(t, { itlMs: 100, tokens: 600 });
  const g = await gateway(t, { upstreams: [{ url: up.url, models: [MODEL] }] });
  const body = chat(false);
  const c = new RawClient(g.port);
  t.after(() => c.socket.destroy());
  c.socket.write(head('POST', '/v1/chat/completions', { host: '127.0.0.1', 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }) + body);
  assert.ok(await waitFor(() => up.open === 1, 5_000), 'the request reached the engine');
  c.socket.destroy();
  const left = await drained(up);
  assert.equal(left, 0, 'the engine still generates for a client that left');
});
