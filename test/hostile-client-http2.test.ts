import { test, type TestContext } from 'node:test';
import { readFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import { connect as h2connect, constants } from 'node:http2';
import { connect as tlsConnect } from 'node:tls';
import { connect as netConnect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { createListener, type ListenerOptions } from '../src/http/listener.ts';
import { HTTP2_LIMITS } from '../src/http/h2-guard.ts';
import { gateway } from './helpers/gateway.ts';
import { countingUpstream, MODEL, waitFor } from './helpers/hostile.ts';
import { FLAG, FRAME, frame, PREFACE, postHeaders, RawH2, rstStream } from './helpers/h2-raw.ts';
import { testCert } from './helpers/tls.ts';

/** HTTP/2 abuse: too many streams, the rapid-reset pattern, connections that never finish their handshake. */

const body = Buffer.from(JSON.stringify({ model: MODEL, stream: true, messages: [{ role: 'user', content: 'hi' }] }));

/** Whether a fresh HTTP/2 session to `origin` gets a 200 from GET /v1/models. */
async function serves(t: TestContext, origin: string): Promise<boolean> {
  const session = h2connect(origin);
  session.on('error', () => {});
  t.after(() => session.destroy());
  const stream = session.request({ ':path': '/v1/models' });
  stream.on('error', () => {});
  stream.resume();
  const status = await Promise.race([new Promise<number>((r) => stream.on('response', (h) => r(Number(h[':status'])))), new Promise<number>((r) => setTimeout(() => r(0), 3_000))]);
  session.close();
  return status === 200;
}

/** A listener of the gateway's own making with a trivial handler, for bounds too slow to wait for at their defaults. */
async function listener(t: TestContext, options: ListenerOptions): Promise<number> {
  const l = createListener(options, (_req, res) => res.end('ok'), (_req, socket) => socket.destroy());
  await new Promise<void>((r) => l.server.listen(0, '127.0.0.1', () => r()));
  t.after(() => {
    l.destroyAll();
    l.server.close();
  });
  return (l.server.address() as AddressInfo).port;
}

test('HTTP/2 SETTINGS bound concurrent streams to 128; a client that opens more loses its connection (PROTOCOL_ERROR)', async (t) => {
  const up = await countingUpstream(t);
  const g = await gateway(t, { upstreams: [{ url: up.url, models: [MODEL] }], h2c: true });
  const c = new RawH2(g.port);
  t.after(() => c.destroy());
  await c.connected;
  c.preface();
  await waitFor(() => c.frames.some((f) => f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) === 0), 2_000);
  const settings = c.frames.find((f) => f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) === 0);
  const values = new Map<number, number>();
  for (let i = 0; settings && i + 6 <= settings.payload.length; i += 6) values.set(settings.payload.readUInt16BE(i), settings.payload.readUInt32BE(i + 2));
  assert.equal(values.get(0x3), HTTP2_LIMITS.maxConcurrentStreams, 'SETTINGS_MAX_CONCURRENT_STREAMS');
  await new Promise((r) => setTimeout(r, 50)); // our SETTINGS ACK is in: the limit is in force

  // 129 requests whose bodies never come: the 129th is one too many. nghttp2 treats it as a connection error once
  // the client has acknowledged the limit (RFC 9113 §5.1.2 allows PROTOCOL_ERROR).
  const parts: Buffer[] = [];
  for (let i = 0; i < 129; i++) parts.push(frame(FRAME.HEADERS, FLAG.END_HEADERS, 1 + 2 * i, postHeaders('/v1/chat/completions', '127.0.0.1', body.length)));
  c.write(Buffer.concat(parts));
  assert.ok(await waitFor(() => c.closedAt !== undefined, 3_000), 'the connection was closed');
  // nghttp2 reports it as PROTOCOL_ERROR; Node's GOAWAY says INTERNAL_ERROR.
  assert.ok([constants.NGHTTP2_PROTOCOL_ERROR, constants.NGHTTP2_INTERNAL_ERROR].includes(c.goaway()?.code ?? -1), `GOAWAY ${JSON.stringify(c.goaway())}`);
  assert.equal(up.started, 0);
  assert.ok(await serves(t, new URL(g.url).origin), 'the gateway serves new connections');
});

test('rapid reset: HEADERS then RST_STREAM, 3,000 times on one connection, is cut off with GOAWAY ENHANCE_YOUR_CALM', async (t) => {
  const up = await countingUpstream(t, { itlMs: 100 });
  const g = await gateway(t, { upstreams: [{ url: up.url, models: [MODEL] }], h2c: true });
  const c = new RawH2(g.port);
  t.after(() => c.destroy());
  await c.connected;
  c.preface();
  // Batches of 50 requests, each batch reset once its generations have started upstream: what makes the pattern
  // expensive is that every reset stream has started work.
  const sent = performance.now();
  for (let batch = 0; batch < 60 && c.closedAt === undefined; batch++) {
    const ids = Array.from({ length: 50 }, (_, i) => 1 + 2 * (batch * 50 + i));
    c.write(Buffer.concat(ids.flatMap((id) => [frame(FRAME.HEADERS, FLAG.END_HEADERS, id, postHeaders('/v1/chat/completions', '127.0.0.1', body.length)), frame(FRAME.DATA, FLAG.END_STREAM, id, body)])));
    await waitFor(() => up.started >= (batch + 1) * 50, 500);
    c.write(Buffer.concat(ids.map((id) => rstStream(id, constants.NGHTTP2_CANCEL))));
  }
  const closed = await waitFor(() => c.closedAt !== undefined, 3_000);
  await new Promise((r) => setTimeout(r, 100)); // the last log lines
  t.diagnostic(`closed: ${closed}, after ${Math.round((c.closedAt ?? 0) - sent)} ms; GOAWAY ${JSON.stringify(c.goaway())}; ${g.logs.length} requests handled, ${up.started} reached the upstream`);
  assert.ok(closed, 'the gateway closed the connection');
  assert.equal(c.goaway()?.code, constants.NGHTTP2_ENHANCE_YOUR_CALM);
  // Node's own guard (nghttp2's) would have let 1,000 resets through, and kept the connection.
  assert.ok(g.logs.length <= HTTP2_LIMITS.resetBurst + 100, `${g.logs.length} requests handled, not thousands`);
  assert.ok(up.started <= HTTP2_LIMITS.resetBurst + 100, `${up.started} generations started, not thousands`);
  assert.ok(await serves(t, new URL(g.url).origin), 'the gateway serves new connections');
});

test('a stream reset after its whole body but before END_STREAM starts no generation', async (t) => {
  const up = await countingUpstream(t);
  const g = await gateway(t, { upstreams: [{ url: up.url, models: [MODEL] }], h2c: true });
  const c = new RawH2(g.port);
  t.after(() => c.destroy());
  await c.connected;
  c.preface();
  // Node's compatibility layer ends a request whose stream closed as if its body were complete.
  c.write(Buffer.concat([frame(FRAME.HEADERS, FLAG.END_HEADERS, 1, postHeaders('/v1/chat/completions', '127.0.0.1', body.length)), frame(FRAME.DATA, 0, 1, body)]));
  await new Promise((r) => setTimeout(r, 50));
  c.write(rstStream(1, constants.NGHTTP2_CANCEL));
  await waitFor(() => g.logs.length === 1, 2_000);
  assert.equal(g.logs[0]?.error_code, 'SLUICE_CLIENT_ABORTED');
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(up.started, 0, 'no generation for a reset stream');
});

test('an honest burst: 128 streams reset at once leave the connection open', async (t) => {
  const up = await countingUpstream(t, { itlMs: 100 });
  const g = await gateway(t, { upstreams: [{ url: up.url, models: [MODEL] }], h2c: true });
  const session = h2connect(new URL(g.url).origin);
  session.on('error', () => {});
  t.after(() => session.destroy());
  const streams = Array.from({ length: 128 }, () => {
    const s = session.request({ ':method': 'POST', ':path': '/v1/chat/completions', 'content-type': 'application/json' });
    s.on('error', () => {});
    s.end(body);
    return s;
  });
  await waitFor(() => up.started === 128, 5_000);
  for (const s of streams) s.close(constants.NGHTTP2_CANCEL);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(session.closed || session.destroyed, false);
  const next = session.request({ ':path': '/v1/models' });
  next.resume();
  assert.equal(await new Promise<number>((r) => next.on('response', (h) => r(Number(h[':status'])))), 200);
});

test('h2c: a connection that sends the preface and then nothing is closed after the handshake timeout', async (t) => {
  const port = await listener(t, { h2c: true, http2: { handshakeTimeoutMs: 200, idleTimeoutMs: 400 } });
  // The magic string only: no SETTINGS, no HEADERS.
  const silent = new RawH2(port, { ackSettings: false });
  t.after(() => silent.destroy());
  await silent.connected;
  const opened = performance.now();
  silent.write(PREFACE);
  assert.ok(await waitFor(() => silent.closedAt !== undefined, 2_000), 'closed');
  const after = (silent.closedAt ?? 0) - opened;
  t.diagnostic(`preface only: closed after ${Math.round(after)} ms`);
  assert.ok(after >= 150 && after < 1_500, `${after} ms`);

  // A complete preface, then nothing: past the handshake, but closed with GOAWAY once idle.
  const idle = new RawH2(port);
  t.after(() => idle.destroy());
  await idle.connected;
  const start = performance.now();
  idle.preface();
  assert.ok(await waitFor(() => idle.closedAt !== undefined, 2_000), 'closed');
  const idleAfter = (idle.closedAt ?? 0) - start;
  t.diagnostic(`SETTINGS then nothing: closed after ${Math.round(idleAfter)} ms, GOAWAY ${JSON.stringify(idle.goaway())}`);
  assert.ok(idleAfter >= 350, `${idleAfter} ms: the idle timeout, not the handshake one`);
  assert.equal(idle.goaway()?.code, constants.NGHTTP2_NO_ERROR);

  // An HTTP/1.1 client on the same port is not affected by HTTP/2's bounds.
  const res = await fetch(`http://127.0.0.1:${port}/`);
  assert.equal(await res.text(), 'ok');
});

test('TLS: a client that never finishes the TLS handshake, or says nothing after ALPN h2, is closed after the timeout', async (t) => {
  const cert = await testCert();
  const port = await listener(t, { h2c: false, tls: { cert: cert.cert, key: readFileSync(cert.keyFile) }, http2: { handshakeTimeoutMs: 300 } });
  // TCP only, no ClientHello.
  const tcp = netConnect(port, '127.0.0.1');
  tcp.on('error', () => {});
  t.after(() => tcp.destroy());
  const tcpOpened = performance.now();
  const tcpClosed = await Promise.race([new Promise<number>((r) => tcp.once('close', () => r(performance.now() - tcpOpened))), new Promise<number>((r) => setTimeout(() => r(-1), 3_000))]);
  t.diagnostic(`no TLS handshake: closed after ${Math.round(tcpClosed)} ms`);
  assert.ok(tcpClosed >= 250 && tcpClosed < 2_000, `${tcpClosed} ms`);

  // TLS with ALPN h2, then not a byte of HTTP/2.
  const tls = tlsConnect({ port, host: '127.0.0.1', ca: cert.cert, servername: 'localhost', ALPNProtocols: ['h2'] });
  tls.on('error', () => {});
  tls.resume(); // read what comes (the server's SETTINGS, its GOAWAY), so that the close is seen
  t.after(() => tls.destroy());
  await new Promise((r) => tls.once('secureConnect', r));
  assert.equal(tls.alpnProtocol, 'h2');
  const opened = performance.now();
  const closedAfter = await Promise.race([new Promise<number>((r) => tls.once('close', () => r(performance.now() - opened))), new Promise<number>((r) => setTimeout(() => r(-1), 3_000))]);
  t.diagnostic(`ALPN h2 then silence: closed after ${Math.round(closedAfter)} ms`);
  assert.ok(closedAfter >= 250 && closedAfter < 2_000, `${closedAfter} ms`);
});
