import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { connect as h2connect, constants } from 'node:http2';
import type { Socket } from 'node:net';
import { WebSocket } from 'ws';
import { chatBody, gateway, post, sim } from './helpers/gateway.ts';
import { firstJsonBody, head, RawClient, waitFor } from './helpers/hostile.ts';
import { openSocket, wsUrl } from './helpers/ws.ts';

/** Bounds a hostile client can push against: body size, `Expect: 100-continue`, JSON depth, UTF-8. */

const LIMIT = 64 * 1024;

/** The sockets a gateway accepted, to read how many bytes it took from each client (`bytesRead`). */
function acceptedSockets(server: import('node:net').Server): Socket[] {
  const sockets: Socket[] = [];
  server.on('connection', (s: Socket) => sockets.push(s));
  return sockets;
}

async function healthy(t: TestContext, url: string): Promise<void> {
  const res = await post(`${url}/chat/completions`, chatBody({ stream: false }));
  assert.equal(res.status, 200, 'the gateway still serves');
  await res.text();
  t.diagnostic(`healthy after: ${res.status}`);
}

/** Writes `total` bytes of chunked body as fast as the socket takes them, until done or the socket dies. */
async function pumpChunked(c: RawClient, total: number): Promise<number> {
  const chunk = Buffer.concat([Buffer.from('10000\r\n'), Buffer.alloc(0x10000, 0x20), Buffer.from('\r\n')]);
  let written = 0;
  while (written < total && !c.socket.destroyed && c.socket.writable) {
    written += 0x10000;
    if (!c.socket.write(chunk)) {
      const drained = await Promise.race([
        new Promise<boolean>((r) => c.socket.once('drain', () => r(true))),
        c.closed.then(() => false),
        new Promise<boolean>((r) => setTimeout(() => r(false), 3_000)),
      ]);
      if (!drained) break;
    }
  }
  return written;
}

test('a 100 MB chunked upload stops being read at the limit: 413 with Connection: close, then the connection closes', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 0, tokens: 2 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }], limits: { max_body_bytes: LIMIT } });
  const sockets = acceptedSockets(g.server);
  const c = new RawClient(g.port);
  t.after(() => c.socket.destroy());
  c.socket.write(head('POST', '/v1/chat/completions', { host: '127.0.0.1', 'content-type': 'application/json', 'transfer-encoding': 'chunked' }));
  const started = performance.now();
  const written = await pumpChunked(c, 100 * 1024 * 1024);
  await Promise.race([c.closed, new Promise((r) => setTimeout(r, 5_000))]);
  const text = c.text;
  assert.match(text, /^HTTP\/1\.1 413 /);
  assert.match(text, /\r\nconnection: close\r\n/i);
  assert.equal(firstJsonBody(text).error?.code, 'sluice_body_too_large');
  assert.ok(c.socket.destroyed, 'the gateway closed the connection');
  const read = sockets[0]?.bytesRead ?? 0;
  t.diagnostic(`client wrote ${(written / 1048576).toFixed(1)} MiB before the close, the gateway read ${(read / 1024).toFixed(0)} KiB, in ${Math.round(performance.now() - started)} ms`);
  assert.ok(read < LIMIT + 1024 * 1024, `the gateway read ${read} bytes, not the whole upload`);
  assert.ok(written < 32 * 1024 * 1024, `the client could push only ${written} bytes (socket buffers), not 100 MB`);
  await healthy(t, g.url);
});

test('a declared Content-Length over the limit is refused before its body is read; with Expect: 100-continue no 100 is sent', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 0, tokens: 2 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }], limits: { max_body_bytes: LIMIT } });
  const sockets = acceptedSockets(g.server);

  // Content-Length, no Expect: the client sends its body right away; the gateway answers and stops reading.
  const a = new RawClient(g.port);
  t.after(() => a.socket.destroy());
  a.socket.write(head('POST', '/v1/chat/completions', { host: '127.0.0.1', 'content-type': 'application/json', 'content-length': 100 * 1024 * 1024 }));
  const written = await pumpRaw(a, 100 * 1024 * 1024);
  await Promise.race([a.closed, new Promise((r) => setTimeout(r, 5_000))]);
  assert.match(a.text, /^HTTP\/1\.1 413 /);
  assert.match(firstJsonBody(a.text).error?.message ?? '', /104857600 bytes exceeds the limit of 65536 bytes \(limits\.max_body_bytes\)/);
  assert.ok(a.socket.destroyed);
  t.diagnostic(`Content-Length: client wrote ${(written / 1048576).toFixed(1)} MiB, gateway read ${((sockets[0]?.bytesRead ?? 0) / 1024).toFixed(0)} KiB`);
  assert.ok((sockets[0]?.bytesRead ?? 0) < 1024 * 1024);

  // Expect: 100-continue: the client waits; it gets the 413 and never a 100.
  const b = new RawClient(g.port);
  t.after(() => b.socket.destroy());
  b.socket.write(head('POST', '/v1/chat/completions', { host: '127.0.0.1', 'content-type': 'application/json', 'content-length': 100 * 1024 * 1024, expect: '100-continue' }));
  const text = await b.until((x) => x.includes('\r\n\r\n{') && x.endsWith('}'));
  assert.doesNotMatch(text, /HTTP\/1\.1 100/);
  assert.match(text, /^HTTP\/1\.1 413 /);
  assert.match(text, /\r\nconnection: close\r\n/i);
  await Promise.race([b.closed, new Promise((r) => setTimeout(r, 2_000))]);
  assert.ok(b.socket.destroyed, 'closed: the client must not send the body on this connection');

  // Any refusal before the body is read goes without a 100 too (here: the wrong media type).
  const c = new RawClient(g.port);
  t.after(() => c.socket.destroy());
  c.socket.write(head('POST', '/v1/chat/completions', { host: '127.0.0.1', 'content-type': 'text/plain', 'content-length': 100, expect: '100-continue' }));
  const refused = await c.until((x) => x.includes('\r\n\r\n{') && x.endsWith('}'));
  assert.doesNotMatch(refused, /HTTP\/1\.1 100/);
  assert.match(refused, /^HTTP\/1\.1 415 /);
  await healthy(t, g.url);
});

/** Writes `total` raw bytes (a Content-Length body) as fast as the socket takes them. */
async function pumpRaw(c: RawClient, total: number): Promise<number> {
  const chunk = Buffer.alloc(0x10000, 0x20);
  let written = 0;
  while (written < total && !c.socket.destroyed && c.socket.writable) {
    written += chunk.length;
    if (!c.socket.write(chunk)) {
      const drained = await Promise.race([
        new Promise<boolean>((r) => c.socket.once('drain', () => r(true))),
        c.closed.then(() => false),
        new Promise<boolean>((r) => setTimeout(() => r(false), 3_000)),
      ]);
      if (!drained) break;
    }
  }
  return written;
}

test('Expect: 100-continue within the limit gets its 100 Continue, then the answer', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 0, tokens: 2 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }], limits: { max_body_bytes: LIMIT } });
  const body = JSON.stringify(chatBody({ stream: false }));
  const c = new RawClient(g.port);
  t.after(() => c.socket.destroy());
  c.socket.write(head('POST', '/v1/chat/completions', { host: '127.0.0.1', 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), expect: '100-continue' }));
  await c.until((x) => x.includes('\r\n\r\n'));
  assert.match(c.text, /^HTTP\/1\.1 100 Continue\r\n\r\n$/);
  c.socket.write(body);
  const text = await c.until((x) => /HTTP\/1\.1 200[\s\S]*"chat\.completion"[\s\S]*\}$/.test(x));
  assert.match(text, /HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
});

test('after a refusal, an unread body over 64 KiB closes the connection; a small one keeps it', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 0, tokens: 2 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }] });
  const sockets = acceptedSockets(g.server);
  const big = new RawClient(g.port);
  t.after(() => big.socket.destroy());
  big.socket.write(head('POST', '/v1/chat/completions', { host: '127.0.0.1', 'content-type': 'text/plain', 'content-length': 50 * 1024 * 1024 }));
  const written = await pumpRaw(big, 50 * 1024 * 1024);
  await Promise.race([big.closed, new Promise((r) => setTimeout(r, 5_000))]);
  assert.match(big.text, /^HTTP\/1\.1 415 /);
  assert.ok(big.socket.destroyed, 'closed rather than drained');
  t.diagnostic(`415: client wrote ${(written / 1048576).toFixed(1)} MiB, gateway read ${((sockets[0]?.bytesRead ?? 0) / 1024).toFixed(0)} KiB`);
  assert.ok((sockets[0]?.bytesRead ?? 0) < 2 * 1024 * 1024);

  // An honest client that got a refusal for a small body reuses its connection.
  const small = new RawClient(g.port);
  t.after(() => small.socket.destroy());
  const text = '{"model":"sluice-sim"}';
  small.socket.write(head('POST', '/v1/chat/completions', { host: '127.0.0.1', 'content-type': 'text/plain', 'content-length': text.length }) + text);
  await small.until((x) => x.endsWith('}'));
  assert.match(small.text, /^HTTP\/1\.1 415 /);
  small.socket.write(head('GET', '/v1/models', { host: '127.0.0.1' }));
  await small.until((x) => /HTTP\/1\.1 200[\s\S]*sluice-sim/.test(x));
  assert.match(small.text, /HTTP\/1\.1 200 /);
  assert.equal(small.socket.destroyed, false);
});

test('HTTP/2: a body over the limit gets 413, then the stream is reset (NO_ERROR) and the connection serves on', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 0, tokens: 2 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }], h2c: true, limits: { max_body_bytes: LIMIT } });
  const sockets = acceptedSockets(g.server);
  const session = h2connect(new URL(g.url).origin);
  session.on('error', () => {});
  t.after(() => session.destroy());
  const stream = session.request({ ':method': 'POST', ':path': '/v1/chat/completions', 'content-type': 'application/json' });
  stream.on('error', () => {});
  let status = 0;
  let body = '';
  stream.on('response', (h) => (status = Number(h[':status'])));
  stream.on('data', (d: Buffer) => (body += d.toString('utf8')));
  // The client's 'close' event waits for its own unsent writes; `closed` says when the RST_STREAM arrived.
  const closed = waitFor(() => stream.closed, 5_000);
  // 50 MB, written as fast as flow control lets it through.
  const chunk = Buffer.alloc(0x10000, 0x20);
  let written = 0;
  while (written < 50 * 1024 * 1024 && !stream.closed) {
    written += chunk.length;
    if (!stream.write(chunk)) await Promise.race([new Promise((r) => stream.once('drain', r)), closed]);
  }
  await closed;
  assert.equal(status, 413);
  assert.equal((JSON.parse(body) as { error: { code: string } }).error.code, 'sluice_body_too_large');
  assert.ok(stream.closed, 'the stream was closed');
  assert.equal(stream.rstCode, constants.NGHTTP2_NO_ERROR);
  const read = sockets[0]?.bytesRead ?? 0;
  t.diagnostic(`h2: client queued ${(written / 1048576).toFixed(1)} MiB, gateway read ${(read / 1024).toFixed(0)} KiB`);
  assert.ok(read < LIMIT + 2 * 1024 * 1024, `gateway read ${read} bytes`);
  // The same connection goes on.
  const next = session.request({ ':path': '/v1/models' });
  next.on('error', () => {});
  const nextStatus = await new Promise<number>((r) => next.on('response', (h) => r(Number(h[':status']))));
  next.resume();
  assert.equal(nextStatus, 200);
});

/** JSON nested `depth` levels deep inside a request field (arrays) or as a chain of objects. */
const nestedArrays = (depth: number): string => '['.repeat(depth) + ']'.repeat(depth);
const nestedObjects = (depth: number): string => '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);

test('JSON nested 100,000 deep is a 400 sluice_invalid_json on HTTP, not a 500 from a stack overflow; 512 levels pass', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 0, tokens: 2 } });
  // The alias makes the gateway re-serialize the body (JSON.stringify recurses); the simulator stringifies `messages`.
  const g = await gateway(t, { upstreams: [{ url: s.url }], aliases: { alias: 'sluice-sim' } });
  const messages = '[{"role":"user","content":"hi"}]';
  const bodies = {
    'top-level arrays': nestedArrays(100_000),
    'top-level objects': nestedObjects(100_000),
    'a field, aliased model': `{"model":"alias","stream":true,"messages":${messages},"x":${nestedArrays(100_000)}}`,
    'a field, streamed': `{"model":"sluice-sim","stream":true,"messages":${messages},"x":${nestedObjects(100_000)}}`,
    'inside messages': `{"model":"sluice-sim","messages":[{"role":"user","content":${nestedArrays(100_000)}}]}`,
    'one level too deep': `{"model":"alias","messages":${messages},"x":${nestedArrays(512)}}`,
  };
  for (const [name, body] of Object.entries(bodies)) {
    const res = await post(`${g.url}/chat/completions`, body);
    const json = (await res.json()) as { error: { code: string; message: string; type: string } };
    assert.equal(res.status, 400, name);
    assert.equal(json.error.code, 'sluice_invalid_json', name);
    assert.equal(json.error.type, 'invalid_request_error');
    assert.match(json.error.message, /more than 512 levels deep/, name);
  }
  assert.equal(s.stats.started, 0, 'none reached the upstream');
  // Exactly 512 levels (the body object is level 1) is fine, through the re-serializing alias path too.
  const ok = await post(`${g.url}/chat/completions`, `{"model":"alias","messages":${messages},"x":${nestedArrays(511)}}`);
  assert.equal(ok.status, 200);
  await ok.text();
  await healthy(t, g.url);
});

test('WebSocket: a message nested 100,000 deep gets an error and close 1007 on /v1/ws and /v1/responses', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 0, tokens: 2 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }] });
  const deep = nestedArrays(100_000);
  const messages = [
    ['/ws', `{"type":"create","id":"a","body":{"model":"sluice-sim","messages":[{"role":"user","content":"hi"}],"x":${deep}}}`],
    ['/responses', `{"type":"response.create","model":"sluice-sim","input":${deep}}`],
  ] as const;
  for (const [path, text] of messages) {
    const ws = await openSocket(t, wsUrl(g.url, path));
    ws.send(text);
    const err = await ws.waitFor((m) => m['type'] === 'error');
    const e = err['error'] as { code: string; message: string };
    assert.equal(e.code, 'sluice_ws_invalid_message', path);
    assert.match(e.message, /at most 512 levels deep/);
    assert.equal((await ws.closed).code, 1007, path);
  }
  assert.equal(s.stats.started, 0);
  // A text frame that is not UTF-8 is closed by the WebSocket layer itself (RFC 6455 §8.1), with 1007 too.
  const raw = new WebSocket(wsUrl(g.url, '/ws'));
  raw.on('error', () => {});
  await new Promise((r) => raw.once('open', r));
  const closed = new Promise<number>((r) => raw.once('close', (code) => r(code)));
  raw.send(Buffer.from([0x7b, 0x22, 0xc3, 0x28, 0x22, 0x7d]), { binary: false });
  assert.equal(await closed, 1007);
  await healthy(t, g.url);
});

test('invalid UTF-8 inside a JSON string is a 400, not replaced by U+FFFD; valid UTF-8 split across packets passes', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 0, tokens: 2 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }] });
  const seen: unknown[] = [];
  s.events.on('request', (r: { body: unknown }) => seen.push(r.body));
  const bodyWith = (bytes: number[]): Buffer =>
    Buffer.concat([Buffer.from('{"model":"sluice-sim","messages":[{"role":"user","content":"a'), Buffer.from(bytes), Buffer.from('b"}]}')]);
  for (const [name, bytes] of [['C3 28', [0xc3, 0x28]], ['lone FF', [0xff]], ['truncated 4-byte', [0xf0, 0x9f, 0x98]], ['surrogate ED A0 80', [0xed, 0xa0, 0x80]], ['overlong C0 AF', [0xc0, 0xaf]]] as const) {
    const res = await fetch(`${g.url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: bodyWith([...bytes]) });
    const json = (await res.json()) as { error: { code: string; message: string } };
    assert.equal(res.status, 400, name);
    assert.equal(json.error.code, 'sluice_invalid_json');
    assert.match(json.error.message, /not valid UTF-8/);
  }
  assert.equal(seen.length, 0, 'nothing reached the upstream');

  // é and 😀 with every multi-byte character split between two writes of a raw client.
  const body = Buffer.from(JSON.stringify({ model: 'sluice-sim', messages: [{ role: 'user', content: 'é😀' }] }));
  const split = body.indexOf(0xf0) + 2;
  const c = new RawClient(g.port);
  t.after(() => c.socket.destroy());
  c.socket.write(head('POST', '/v1/chat/completions', { host: '127.0.0.1', 'content-type': 'application/json', 'content-length': body.length }));
  c.socket.write(body.subarray(0, split));
  await new Promise((r) => setTimeout(r, 30));
  c.socket.write(body.subarray(split));
  await c.until((x) => x.includes('"chat.completion"') && x.endsWith('}'));
  assert.match(c.text, /^HTTP\/1\.1 200 /);
  await waitFor(() => seen.length === 1, 2_000);
  assert.deepEqual((seen[0] as { messages: Array<{ content: string }> }).messages[0]?.content, 'é😀');
});
