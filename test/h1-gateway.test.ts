import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createTlsServer, getCACertificates, setDefaultCACertificates, Server as TlsServer } from 'node:tls';
import { gateway, sim, post, chatBody, once, frames } from './helpers/gateway.ts';
import { rawUpstream } from './helpers/raw-upstream.ts';
import { loadFixture, replayUpstream } from './helpers/replay.ts';
import { testCert } from './helpers/tls.ts';
import { validateConfig } from '../src/config/load.ts';
import { Upstream } from '../src/upstream/upstream.ts';
import { H1Pool } from '../src/upstream/h1/pool.ts';
import { forward } from '../src/generation/forward.ts';

// The gateway with `http_client: sluice`: streamed generations go through Sluice's own HTTP/1.1 client
// (src/upstream/h1/), everything else through undici. Each behaviour the undici path has, checked on this one.

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** `server` (plain TCP or TLS) relays each connection to `targetPort` on loopback and keeps the accepted sockets, so a
 * test counts the connections the gateway opens. Closed after the test. */
async function countingRelay(t: TestContext, server: NetServer, targetPort: number): Promise<{ sockets: Set<Socket>; port: number }> {
  const sockets = new Set<Socket>();
  server.on(server instanceof TlsServer ? 'secureConnection' : 'connection', (c: Socket) => {
    sockets.add(c);
    const u = connect(targetPort, '127.0.0.1');
    c.pipe(u).pipe(c);
    c.on('error', () => u.destroy());
    u.on('error', () => c.destroy());
    c.on('close', () => u.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.after(() => {
    for (const c of sockets) c.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return { sockets, port: (server.address() as AddressInfo).port };
}


test('vLLM streams pass through byte-identical, whole or written 3 bytes at a time', async (t) => {
  for (const name of ['chat-text', 'chat-tools', 'chat-reasoning', 'completions-text']) {
    const f = loadFixture('vllm', name);
    for (const sliceBytes of [0, 3]) {
      const up = await replayUpstream(t, f, { sliceBytes });
      const g = await gateway(t, { upstreams: [{ url: up.url, dialect: 'vllm', http_client: 'sluice' }] });
      const path = f.endpoint.replace(/^\/v1/, '');
      const text = await (await post(`${g.url}${path}`, f.request)).text();
      assert.equal(text, f.body.toString('utf8'), `${name}, slices of ${sliceBytes}`);
      assert.equal(g.logs[0]?.outcome, 'completed');
    }
  }
});

test('streamed requests take the own client, the rest undici: an unsolicited 100 Continue is skipped only by the former', async (t) => {
  // undici destroys the socket on a 100 nobody asked for (src/upstream/protocol-failure.ts); RFC 9110 §15.2 says a
  // client may ignore it, which the own client does.
  const sse = 'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n';
  const json = '{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}';
  const up = await rawUpstream(t, (req) => {
    const streamed = (JSON.parse(req.body) as { stream?: boolean }).stream === true;
    req.socket.write('HTTP/1.1 100 Continue\r\n\r\n');
    if (streamed) req.socket.write(`HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n${Buffer.byteLength(sse).toString(16)}\r\n${sse}\r\n0\r\n\r\n`);
    else req.socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${json.length}\r\n\r\n${json}`);
  });
  const g = await gateway(t, { upstreams: [{ url: up.url, http_client: 'sluice', dialect: 'openai' }] });
  const streamed = await post(`${g.url}/chat/completions`, chatBody({ model: 'm' }));
  assert.equal(streamed.status, 200);
  assert.ok((await streamed.text()).endsWith('data: [DONE]\n\n'));
  const unary = await post(`${g.url}/chat/completions`, chatBody({ model: 'm', stream: false }));
  assert.equal(unary.status, 502, 'the non-streamed request went through undici');
  assert.equal(((await unary.json()) as { error: { code: string } }).error.code, 'sluice_upstream_bad_response');
});

test('streams on kept-alive connections: ten streams in turn, one connection', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 1, tokens: 5 } });
  // A TCP relay in front of the simulator, to count the connections the gateway opens.
  const { sockets, port } = await countingRelay(t, createServer(), s.port);
  const g = await gateway(t, { upstreams: [{ url: `http://127.0.0.1:${port}/v1`, http_client: 'sluice', models: ['sluice-sim'] }] });
  const before = sockets.size;
  for (let i = 0; i < 10; i++) assert.ok((await (await post(`${g.url}/chat/completions`, chatBody())).text()).endsWith('data: [DONE]\n\n'));
  assert.equal(sockets.size - before, 1, 'one connection carried the ten streams');
  assert.equal(s.stats.completed, 10);
});

test('a client that disconnects aborts the upstream request at once', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 20, tokens: 1_000 } });
  const g = await gateway(t, { upstreams: [{ url: s.url, http_client: 'sluice' }] });
  const ac = new AbortController();
  const res = await post(`${g.url}/chat/completions`, chatBody(), {}, ac.signal);
  const reader = res.body!.getReader();
  await reader.read();
  const aborted = once<{ tokensSent: number }>(s.events, 'aborted', 5_000);
  ac.abort();
  const info = await aborted;
  assert.ok(info.tokensSent < 1_000, 'the simulator saw its connection close before the end');
  assert.equal(s.stats.aborted, 1);
  await sleep(20);
  assert.equal(g.logs[0]?.outcome, 'client_aborted');
});

test('an upstream dying mid-stream gives one error frame, sluice_upstream_truncated, and no [DONE]', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 1, tokens: 10, fail: 'drop', failAfter: 3 } });
  const g = await gateway(t, { upstreams: [{ url: s.url, http_client: 'sluice' }] });
  const text = await (await post(`${g.url}/chat/completions`, chatBody())).text();
  const fs = frames(text);
  assert.ok(!text.includes('[DONE]'));
  const last = JSON.parse(fs.at(-1)!.slice(6)) as { error: { code: string; message: string } };
  assert.equal(last.error.code, 'sluice_upstream_truncated');
  assert.match(last.error.message, /other side closed|ECONNRESET/);
  assert.equal(fs.filter((f) => f.includes('"content"')).length, 1 + 3, 'role chunk and three tokens kept');
  assert.equal(g.logs[0]?.outcome, 'truncated');
});

/** Upstreams as the registry makes them (config validated, `http_client: sluice`), without a gateway: no discovery
 * marks a dead one down before the test can send to it. */
function upstreams(t: TestContext, list: Array<{ url: string; name: string }>, connectMs: number): Upstream[] {
  const config = validateConfig({ upstreams: list.map((u) => ({ ...u, models: ['sluice-sim'], http_client: 'sluice' })) });
  const made = config.upstreams.map((u, i) => new Upstream(u, i, connectMs));
  t.after(() => Promise.all(made.map((u) => u.close())));
  return made;
}

async function forwardStream(replicas: Upstream[]): Promise<{ name: string; text: string; failovers: string[] }> {
  const failovers: string[] = [];
  const f = await forward(replicas, {
    path: '/chat/completions',
    body: () => JSON.stringify(chatBody()),
    headers: { 'content-type': 'application/json' },
    signal: new AbortController().signal,
    streamed: true,
    maxErrorBytes: 4096,
    onFailover: (reason, from) => failovers.push(`${from.name}: ${reason}`),
  });
  const text = await f.response.body.wholeText(1 << 20, f.upstream.name);
  f.release();
  return { name: f.upstream.name, text, failovers };
}

test('connect refused: the next replica takes the stream; alone, the connect error', async (t) => {
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
  const deadPort = (closed.address() as AddressInfo).port;
  await new Promise<void>((r) => closed.close(() => r()));
  const dead = `http://127.0.0.1:${deadPort}/v1`;
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 1, tokens: 3 } });
  const replicas = upstreams(t, [{ url: dead, name: 'dead' }, { url: s.url, name: 'live' }], 2_000);
  assert.ok(replicas.every((u) => u.streamPool instanceof H1Pool), 'streamed requests go through the own client');
  const r = await forwardStream(replicas);
  assert.equal(r.name, 'live');
  assert.ok(r.text.endsWith('data: [DONE]\n\n'));
  assert.deepEqual(r.failovers, ['dead: connect_error']);

  const alone = await gateway(t, { upstreams: [{ url: dead, models: ['sluice-sim'], http_client: 'sluice' }] });
  const res = await post(`${alone.url}/chat/completions`, chatBody());
  const body = (await res.json()) as { error: { code: string; message: string } };
  assert.equal(res.status, 503, 'every replica failed to connect: as with undici');
  assert.equal(body.error.code, 'sluice_no_healthy_upstream');
  assert.match(body.error.message, /ECONNREFUSED/);
});

test('connect timeout: the next replica takes the stream; alone, sluice_upstream_connect_timeout', async (t) => {
  // A listener with a full accept queue that never accepts: Linux drops further SYNs, so connect() hangs.
  const py = spawn('python3', ['-c', 'import socket,sys,time\ns=socket.socket()\ns.bind(("127.0.0.1",0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(120)'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => py.kill());
  const port = Number((await once<Buffer>(py.stdout!, 'data')).toString().trim());
  const fillers: Socket[] = [];
  t.after(() => fillers.forEach((s) => s.destroy()));
  for (let i = 0; i < 3; i++) fillers.push(connect(port, '127.0.0.1').on('error', () => {}));
  await sleep(200);
  const hole = `http://127.0.0.1:${port}/v1`;
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 1, tokens: 3 } });
  const r = await forwardStream(upstreams(t, [{ url: hole, name: 'hole' }, { url: s.url, name: 'live' }], 300));
  assert.equal(r.name, 'live');
  assert.ok(r.text.endsWith('data: [DONE]\n\n'));
  assert.deepEqual(r.failovers, ['hole: connect_timeout']);

  const alone = await gateway(t, { upstreams: [{ url: hole, models: ['sluice-sim'], http_client: 'sluice' }], timeouts: { connect_ms: 300 }, heartbeat_ms: 60_000 });
  const res = await post(`${alone.url}/chat/completions`, chatBody());
  assert.equal(res.status, 504);
  assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'sluice_upstream_connect_timeout');
});

test('a TLS upstream: streams over HTTPS on a kept-alive connection', async (t) => {
  const cert = await testCert();
  // The process trusts the test certificate (undici's discovery and the own client both use the default trust).
  setDefaultCACertificates([...getCACertificates('default'), cert.cert.toString()]);
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 1, tokens: 5 } });
  const { sockets, port } = await countingRelay(t, createTlsServer({ cert: cert.cert, key: readFileSync(cert.keyFile) }), s.port);
  const g = await gateway(t, { upstreams: [{ url: `https://localhost:${port}/v1`, http_client: 'sluice', models: ['sluice-sim'] }] });
  const before = sockets.size;
  for (let i = 0; i < 3; i++) assert.ok((await (await post(`${g.url}/chat/completions`, chatBody())).text()).endsWith('data: [DONE]\n\n'));
  assert.equal(sockets.size - before, 1, 'one TLS connection for the three streams');
  assert.equal(s.stats.completed, 3);
});

test('mid-stream failover continues on another replica through the own client', async (t) => {
  const a = await sim(t, { timing: { ttftMs: 0, itlMs: 2, tokens: 12, fail: 'drop', failAfter: 4 } });
  const b = await sim(t, { timing: { ttftMs: 0, itlMs: 2, tokens: 12 } });
  const g = await gateway(t, {
    upstreams: [{ url: a.url, name: 'a', http_client: 'sluice' }, { url: b.url, name: 'b', http_client: 'sluice' }],
    failover: { mid_stream: true },
  });
  let failedOver = false;
  for (let i = 0; i < 6 && !failedOver; i++) {
    const text = await (await post(`${g.url}/chat/completions`, chatBody())).text();
    assert.ok(text.endsWith('data: [DONE]\n\n'), text.slice(-200));
    failedOver = g.logs.some((l) => (l.failovers?.length ?? 0) > 0);
  }
  assert.ok(failedOver, 'a stream that broke on a went on on b');
});
