import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { startGateway } from '../src/gateway.ts';
import { ConfigError, loadConfig } from '../src/config/load.ts';
import { gateway, httpServer, once, sim, chatBody, frames, post } from './helpers/gateway.ts';
import { testCert } from './helpers/tls.ts';
import { expectedText, openSocket, muxText, wsUrl } from './helpers/ws.ts';

const messages = [{ role: 'user', content: 'Hello' }];

/** An HTTP/2 session to the gateway, closed after the test. */
function h2(t: TestContext, base: string, ca?: Buffer): ClientHttp2Session {
  const session = connect(new URL(base).origin, ca ? { ca } : {});
  session.on('error', () => {});
  t.after(() => session.destroy());
  return session;
}

interface H2Exchange {
  stream: ClientHttp2Stream;
  headers: Promise<IncomingHttpHeaders>;
  /** Each DATA chunk with its arrival time. */
  chunks: Array<{ at: number; text: string }>;
  ended: Promise<string>;
}

function h2Post(session: ClientHttp2Session, path: string, body: unknown, headers: Record<string, string> = {}): H2Exchange {
  const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/json', ...headers });
  stream.on('error', () => {});
  const chunks: Array<{ at: number; text: string }> = [];
  stream.on('data', (d: Buffer) => chunks.push({ at: performance.now(), text: d.toString('utf8') }));
  const ended = new Promise<string>((resolve) => stream.on('close', () => resolve(chunks.map((c) => c.text).join(''))));
  stream.end(JSON.stringify(body));
  return { stream, headers: new Promise((resolve) => stream.once('response', resolve)), chunks, ended };
}

function h2Get(session: ClientHttp2Session, path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':path': path, ...headers });
    let body = '';
    let head: IncomingHttpHeaders = {};
    stream.on('response', (h) => (head = h));
    stream.on('data', (d: Buffer) => (body += d.toString('utf8')));
    stream.on('end', () => resolve({ status: Number(head[':status']), headers: head, body }));
    stream.on('error', reject);
    stream.end();
  });
}

/** Content chunks and their arrival times, from an SSE body received in pieces. */
function tokenArrivals(chunks: Array<{ at: number; text: string }>): number[] {
  const at: number[] = [];
  for (const c of chunks) for (const f of frames(c.text)) if (f.includes('"content":"') && !f.includes('"content":""')) at.push(c.at);
  return at;
}

const contentOf = (sse: string): string =>
  frames(sse)
    .filter((f) => f.startsWith('data: {'))
    .map((f) => (JSON.parse(f.slice(6)) as { choices: Array<{ delta: { content?: string } }> }).choices[0]?.delta.content ?? '')
    .join('');

test('HTTP/2 over TLS (ALPN h2): a chat streams token by token with the SSE headers, two streams on one connection', async (t) => {
  const cert = await testCert();
  const s = await sim(t, { timing: { ttftMs: 5, itlMs: 40, tokens: 6 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }], tls: { cert_file: cert.certFile, key_file: cert.keyFile } });
  assert.match(g.url, /^https:\/\//);
  const session = h2(t, g.url, cert.cert);
  const a = h2Post(session, '/v1/chat/completions', chatBody());
  const b = h2Post(session, '/v1/chat/completions', chatBody({ messages: [{ role: 'user', content: 'Other' }] }));
  const head = await a.headers;
  assert.equal(head[':status'], 200);
  assert.equal(head['content-type'], 'text/event-stream; charset=utf-8');
  assert.equal(head['cache-control'], 'no-cache, no-transform');
  assert.equal(head['x-accel-buffering'], 'no');
  assert.match(String(head['x-request-id']), /^req_/);
  for (const h of ['content-length', 'content-encoding', 'connection', 'transfer-encoding', 'keep-alive']) assert.equal(head[h], undefined, h);
  const [textA, textB] = await Promise.all([a.ended, b.ended]);
  assert.equal(contentOf(textA), expectedText(JSON.stringify(messages), 6));
  assert.equal(contentOf(textB), expectedText(JSON.stringify([{ role: 'user', content: 'Other' }]), 6));
  assert.ok(textA.endsWith('data: [DONE]\n\n'));
  const at = tokenArrivals(a.chunks);
  assert.equal(at.length, 6);
  assert.ok(at.at(-1)! - at[0]! > 150, `tokens spread over ${Math.round(at.at(-1)! - at[0]!)} ms, not one burst`);
  assert.equal(new Set(at).size, 6, 'each token in its own DATA frame read');
});

test('HTTP/2 over TLS: every endpoint answers as over HTTP/1.1, which the same port still speaks', async (t) => {
  const cert = await testCert();
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 1, tokens: 3 } });
  const key = 'sk-test-h2-endpoints';
  const g = await gateway(t, { upstreams: [{ url: s.url }], tls: { cert_file: cert.certFile, key_file: cert.keyFile }, api_keys: [key], cors: { origins: ['https://app.example'] } });
  const session = h2(t, g.url, cert.cert);
  const auth = { authorization: `Bearer ${key}` };
  assert.equal((await h2Get(session, '/health')).status, 200);
  const models = await h2Get(session, '/v1/models', auth);
  assert.equal((JSON.parse(models.body) as { data: Array<{ id: string }> }).data[0]?.id, 'sluice-sim');
  const denied = await h2Get(session, '/v1/models');
  assert.equal(denied.status, 401);
  assert.equal((JSON.parse(denied.body) as { error: { code: string } }).error.code, 'invalid_api_key');
  assert.equal((await h2Get(session, '/v1/nope', auth)).status, 404);
  const preflight = await h2Get(session, '/v1/chat/completions', { ':method': 'OPTIONS', origin: 'https://app.example', 'access-control-request-method': 'POST' });
  assert.equal(preflight.status, 204);
  assert.equal(preflight.headers['access-control-allow-origin'], 'https://app.example');

  const whole = h2Post(session, '/v1/chat/completions', chatBody({ stream: false }), auth);
  assert.equal((await whole.headers)['content-type'], 'application/json');
  assert.equal((JSON.parse(await whole.ended) as { choices: Array<{ message: { content: string } }> }).choices[0]?.message.content, expectedText(JSON.stringify(messages), 3));
  const bad = h2Post(session, '/v1/chat/completions', { model: 'sluice-sim' }, auth);
  assert.equal((await bad.headers)[':status'], 400);
  const responses = h2Post(session, '/v1/responses', { model: 'sluice-sim', input: 'Hi', stream: true }, auth);
  const rtext = await responses.ended;
  assert.ok(rtext.includes('event: response.output_text.delta\ndata: '), 'responses keep event: framing over h2');
  assert.ok(rtext.includes('event: response.completed\n'));

  // HTTP/1.1 by ALPN on the same port.
  const http1 = await new Promise<{ version: string; alpn: string | false | null; body: string }>((resolve, reject) => {
    const req = httpsRequest(`${g.url}/models`, { headers: auth, agent: new HttpsAgent({ ca: cert.cert, ALPNProtocols: ['http/1.1'] }) }, (res) => {
      const alpn = (res.socket as import('node:tls').TLSSocket).alpnProtocol;
      let body = '';
      res.on('data', (d: Buffer) => (body += d));
      res.on('end', () => resolve({ version: res.httpVersion, alpn, body }));
    });
    req.on('error', reject);
    req.end();
  });
  assert.equal(http1.version, '1.1');
  assert.equal(http1.alpn, 'http/1.1');
  assert.ok(http1.body.includes('sluice-sim'));
  // And WebSocket (wss) on the same port, over HTTP/1.1.
  const ws = await openSocket(t, wsUrl(g.url, '/ws'), [], { ca: cert.cert, headers: auth });
  ws.send({ type: 'create', id: 'w', body: { model: 'sluice-sim', messages } });
  await ws.waitFor((m) => m['type'] === 'done');
  assert.equal(muxText(ws.of('w')), expectedText(JSON.stringify(messages), 3));
});

test('HTTP/2: a reset stream aborts the upstream; the connection serves on', async (t) => {
  const cert = await testCert();
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 20, tokens: 1_000 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }], tls: { cert_file: cert.certFile, key_file: cert.keyFile } });
  const session = h2(t, g.url, cert.cert);
  const ex = h2Post(session, '/v1/chat/completions', chatBody());
  while (tokenArrivals(ex.chunks).length < 2) await new Promise((r) => setTimeout(r, 5));
  const aborted = once<{ tokensSent: number }>(s.events, 'aborted', 5_000);
  ex.stream.close(constants.NGHTTP2_CANCEL); // RST_STREAM
  const info = await aborted;
  assert.ok(info.tokensSent < 1_000);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(g.logs[0]?.outcome, 'client_aborted');
  const next = h2Post(session, '/v1/chat/completions', chatBody({ sim: { tokens: 2, itl_ms: 1 } }));
  assert.ok((await next.ended).endsWith('data: [DONE]\n\n'), 'the same session goes on');
});

test('HTTP/2: flow control is respected: a client that stops reading pauses the upstream, then gets everything', async (t) => {
  const cert = await testCert();
  const total = 20_000;
  const chunk = `data: {"id":"x","choices":[{"index":0,"delta":{"content":"${'z'.repeat(1000)}"},"finish_reason":null}]}\n\n`;
  let sent = 0;
  const up = await httpServer(t, (req, res) => {
    if (req.url === '/v1/models') return void res.end(JSON.stringify({ data: [{ id: 'm' }] }));
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const pump = (): void => {
      while (sent < total && !res.destroyed) {
        sent++;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
      res.end('data: {"id":"x","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n');
    };
    pump();
  });
  const g = await gateway(t, { upstreams: [{ url: up.url }], tls: { cert_file: cert.certFile, key_file: cert.keyFile } });
  const session = h2(t, g.url, cert.cert);
  const stream = session.request({ ':method': 'POST', ':path': '/v1/chat/completions', 'content-type': 'application/json' });
  stream.end(JSON.stringify({ model: 'm', messages, stream: true }));
  stream.pause(); // reads nothing: no WINDOW_UPDATE goes back
  await new Promise((r) => setTimeout(r, 800));
  const early = sent;
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(sent, early, 'the upstream stopped while the client read nothing');
  assert.ok(early < total / 2, `the upstream wrote ${early} of ${total} chunks while the client read none`);
  let received = 0;
  let tail = '';
  stream.on('data', (d: Buffer) => {
    received += d.length;
    tail = (tail + d.toString('latin1')).slice(-32);
  });
  stream.resume();
  await once(stream, 'end', 30_000);
  assert.equal(sent, total);
  assert.ok(received >= total * chunk.length);
  assert.ok(tail.endsWith('data: [DONE]\n\n'));
});

/** Runs curl and records when each piece of its output arrived. */
function curl(args: string[]): Promise<{ chunks: Array<{ at: number; text: string }>; code: number | null }> {
  return new Promise((resolve, reject) => {
    const p = spawn('curl', ['-sSN', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    const chunks: Array<{ at: number; text: string }> = [];
    p.stdout.on('data', (d: Buffer) => chunks.push({ at: performance.now(), text: d.toString('utf8') }));
    p.on('error', reject);
    p.on('close', (code) => resolve({ chunks, code }));
  });
}

test('curl --http2 (TLS, ALPN) and --http2-prior-knowledge (h2c) receive the stream token by token', async (t) => {
  const cert = await testCert();
  const s = await sim(t, { timing: { ttftMs: 5, itlMs: 40, tokens: 6 } });
  const tlsGw = await gateway(t, { upstreams: [{ url: s.url }], tls: { cert_file: cert.certFile, key_file: cert.keyFile } });
  const h2cGw = await gateway(t, { upstreams: [{ url: s.url }], h2c: true });
  const body = JSON.stringify(chatBody());
  const common = ['-H', 'content-type: application/json', '-d', body, '-w', '\nversion=%{http_version}'];
  const runs = await Promise.all([
    curl(['--http2', '--cacert', cert.certFile, `${tlsGw.url}/chat/completions`, ...common]),
    curl(['--http2-prior-knowledge', `${h2cGw.url}/chat/completions`, ...common]),
  ]);
  for (const [i, r] of runs.entries()) {
    const text = r.chunks.map((c) => c.text).join('');
    assert.equal(r.code, 0);
    assert.ok(text.endsWith('data: [DONE]\n\n\nversion=2'), `run ${i} spoke HTTP/2 and ended with [DONE]: ${text.slice(-60)}`);
    assert.equal(contentOf(text.slice(0, text.lastIndexOf('\nversion='))), expectedText(JSON.stringify(messages), 6));
    const at = tokenArrivals(r.chunks);
    assert.ok(at.length === 6 && at.at(-1)! - at[0]! > 150, `run ${i}: tokens arrived over ${Math.round(at.at(-1)! - at[0]!)} ms in ${new Set(at).size} reads`);
  }
});

test('h2c: one cleartext port serves prior-knowledge HTTP/2, HTTP/1.1 and WebSocket; a reset stream aborts the upstream', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 10, tokens: 4 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }], h2c: true });
  const session = h2(t, g.url);
  const ex = h2Post(session, '/v1/chat/completions', chatBody());
  assert.equal((await ex.headers)['content-type'], 'text/event-stream; charset=utf-8');
  assert.equal(contentOf(await ex.ended), expectedText(JSON.stringify(messages), 4));

  const http1 = await post(`${g.url}/chat/completions`, chatBody());
  assert.equal(contentOf(await http1.text()), expectedText(JSON.stringify(messages), 4));

  const ws = await openSocket(t, wsUrl(g.url, '/ws'));
  ws.send({ type: 'create', id: 'w', body: { model: 'sluice-sim', messages } });
  await ws.waitFor((m) => m['type'] === 'done');
  assert.equal(muxText(ws.of('w')), expectedText(JSON.stringify(messages), 4));

  const long = h2Post(session, '/v1/chat/completions', chatBody({ sim: { tokens: 1_000, itl_ms: 20 } }));
  while (tokenArrivals(long.chunks).length < 1) await new Promise((r) => setTimeout(r, 5));
  const aborted = once(s.events, 'aborted', 5_000);
  long.stream.close(constants.NGHTTP2_CANCEL);
  await aborted;
});

test('HTTP/2: on shutdown an in-flight stream finishes (GOAWAY lets it), then the gateway stops', async (t) => {
  const cert = await testCert();
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 20, tokens: 10 } });
  const g = await startGateway({ port: 0, upstreams: [{ url: s.url }], tls: { cert_file: cert.certFile, key_file: cert.keyFile }, drain: { timeout_ms: 5_000 }, logger: () => {} });
  t.after(() => g.close());
  const session = h2(t, g.url, cert.cert);
  const ex = h2Post(session, '/v1/chat/completions', chatBody());
  while (tokenArrivals(ex.chunks).length < 1) await new Promise((r) => setTimeout(r, 5));
  const goaway = once(session, 'goaway', 2_000);
  const closing = g.close();
  await goaway;
  const text = await ex.ended;
  assert.ok(text.endsWith('data: [DONE]\n\n'), 'the stream completed during the drain');
  await closing;
});

test('config: tls and h2c from flags and environment; a bad combination or an unreadable file stops start-up with one line', async () => {
  const cert = await testCert();
  const fromFlags = loadConfig(undefined, {}, { tlsCert: cert.certFile, tlsKey: cert.keyFile });
  assert.deepEqual(fromFlags.tls, { cert_file: cert.certFile, key_file: cert.keyFile });
  assert.equal(fromFlags.h2c, false);
  const fromEnv = loadConfig(undefined, { SLUICE_H2C: '1' }, {});
  assert.equal(fromEnv.h2c, true);
  assert.equal(loadConfig(undefined, {}, { h2c: true }).h2c, true);
  assert.throws(() => loadConfig(undefined, { SLUICE_TLS_CERT: cert.certFile, SLUICE_TLS_KEY: cert.keyFile }, { h2c: true }), (e: Error) => e instanceof ConfigError && /h2c/.test(e.message));
  assert.throws(() => loadConfig(undefined, { SLUICE_TLS_CERT: cert.certFile }, {}), (e: Error) => e instanceof ConfigError && /tls\.key_file/.test(e.message));
  await assert.rejects(
    startGateway({ port: 0, tls: { cert_file: '/nonexistent/cert.pem', key_file: cert.keyFile }, logger: () => {} }),
    (e: Error) => e instanceof ConfigError && /tls\.cert_file: cannot read \/nonexistent\/cert\.pem/.test(e.message),
  );
  await assert.rejects(
    startGateway({ port: 0, tls: { cert_file: cert.keyFile, key_file: cert.keyFile }, logger: () => {} }),
    (e: Error) => e instanceof ConfigError && /^tls: /.test(e.message),
  );
});
