import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { gateway, sim, httpServer, post, chatBody, once, frames, fastUpstream } from './helpers/gateway.ts';

test('stream headers go out before the first token, with the SSE wire headers and no length or encoding', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 1_500, tokens: 2 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }] });
  const started = Date.now();
  const res = await post(`${g.url}/chat/completions`, chatBody());
  const headersAfter = Date.now() - started;
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/event-stream; charset=utf-8');
  assert.equal(res.headers.get('cache-control'), 'no-cache, no-transform');
  assert.equal(res.headers.get('x-accel-buffering'), 'no');
  assert.equal(res.headers.get('content-length'), null);
  assert.equal(res.headers.get('content-encoding'), null);
  assert.match(res.headers.get('x-request-id') ?? '', /^req_/);
  assert.ok(headersAfter < 1_500, `headers came after ${headersAfter} ms, before the 1.5 s first token`);
  await res.text();
});

test('frames are bare data: lines with LF, end with [DONE], and the connection ends right after', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 10, itlMs: 5, tokens: 5 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }] });
  const res = await post(`${g.url}/chat/completions`, chatBody());
  const text = await res.text(); // resolves only when the response ends
  assert.ok(!text.includes('\r'), 'no CR');
  assert.ok(!text.startsWith('\uFEFF'), 'no BOM');
  const fs = frames(text);
  for (const f of fs) assert.match(f, /^data: [^\n]+$/, `one data line per frame: ${f}`);
  assert.equal(fs.at(-1), 'data: [DONE]');
  assert.ok(text.endsWith('data: [DONE]\n\n'));
  const content = fs.slice(0, -1).map((f) => JSON.parse(f.slice(6)) as { choices: Array<{ delta: { content?: string } }> });
  assert.equal(content.filter((c) => c.choices[0]?.delta.content).length, 5);
});

test('the request id given by the client is returned and sent upstream', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 0, tokens: 1 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }] });
  const seen = once<{ headers: Record<string, string> }>(s.events, 'request');
  const res = await post(`${g.url}/chat/completions`, chatBody(), { 'x-request-id': 'my-trace-42' });
  await res.text();
  assert.equal(res.headers.get('x-request-id'), 'my-trace-42');
  assert.equal((await seen).headers['x-request-id'], 'my-trace-42');
  assert.equal(g.logs[0]?.id, 'my-trace-42');
});

test('usage is always requested upstream and stripped when the client did not ask for it', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 0, tokens: 3 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }] });
  const seen = once<{ body: Record<string, unknown> }>(s.events, 'request');
  const text = await (await post(`${g.url}/chat/completions`, chatBody())).text();
  // The simulator speaks vLLM, which also puts the running usage on every chunk when asked (issue 13: a stream cut
  // short is metered exactly); the client, which asked for none of it, sees none.
  assert.deepEqual((await seen).body['stream_options'], { include_usage: true, continuous_usage_stats: true });
  assert.ok(!text.includes('"usage"'), 'no usage, on chunks or at the end, for a client that did not ask');
  assert.equal(g.logs[0]?.tokens_out, 3, 'metered all the same');
  assert.ok((g.logs[0]?.tokens_in ?? 0) > 0);

  const withUsage = await (await post(`${g.url}/chat/completions`, chatBody({ stream_options: { include_usage: true } }))).text();
  const usageFrames = frames(withUsage).filter((f) => f.includes('"usage"'));
  assert.equal(usageFrames.length, 1, 'the usage chunk at the end only, not the running usage on every chunk');
  const usageFrame = usageFrames[0];
  assert.ok(usageFrame, 'usage chunk kept when asked');
  assert.equal((JSON.parse(usageFrame.slice(6)) as { usage: { completion_tokens: number } }).usage.completion_tokens, 3);
});

test('no stream_options upstream when the request is not streamed', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 0, tokens: 2 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }] });
  const seen = once<{ body: Record<string, unknown> }>(s.events, 'request');
  const res = await post(`${g.url}/chat/completions`, chatBody({ stream: false, stream_options: { include_usage: true } }));
  assert.equal(res.status, 200, 'the simulator, like vLLM, would answer 400 to stream_options without stream');
  assert.equal((await seen).body['stream_options'], undefined);
  const body = (await res.json()) as { choices: Array<{ message: { content: string } }> };
  assert.ok(body.choices[0]?.message.content.length);
});

test('heartbeats flow from the moment headers are sent, while the upstream prefills', async (t) => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const up = await httpServer(t, (req, res) => {
    if (req.url === '/v1/models') return void res.end(JSON.stringify({ data: [{ id: 'm' }] }));
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.flushHeaders();
    void gate.then(() => {
      res.write('data: {"id":"x","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\n');
      res.end('data: [DONE]\n\n');
    });
  });
  const g = await gateway(t, { upstreams: [{ url: up.url }], heartbeat_ms: 40 });
  const res = await post(`${g.url}/chat/completions`, { model: 'm', messages: [{ role: 'user', content: 'x' }], stream: true });
  const reader = res.body!.getReader();
  let text = '';
  while ((text.match(/: keep-alive\n\n/g) ?? []).length < 2) {
    const { value, done } = await reader.read();
    assert.ok(!done, 'stream ended before two heartbeats');
    text += Buffer.from(value).toString('utf8');
  }
  assert.ok(!text.includes('data:'), 'heartbeats came before any token');
  release();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    text += Buffer.from(value).toString('utf8');
  }
  assert.ok(text.endsWith('data: {"id":"x","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'));
});

test('heartbeats also start while the upstream has not even sent its headers', async (t) => {
  const s = await sim(t, { timing: { headersDelayMs: 400, ttftMs: 0, itlMs: 0, tokens: 2 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }], heartbeat_ms: 50 });
  const started = Date.now();
  const res = await post(`${g.url}/chat/completions`, chatBody());
  assert.ok(Date.now() - started < 400, 'headers committed by the first heartbeat');
  const text = await res.text();
  assert.ok(text.startsWith(': keep-alive\n\n'));
  assert.ok(text.endsWith('data: [DONE]\n\n'));
});

test('an upstream dying mid-stream gives one error frame and no [DONE]', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 1, tokens: 10, fail: 'drop', failAfter: 3 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }] });
  const text = await (await post(`${g.url}/chat/completions`, chatBody())).text();
  const fs = frames(text);
  assert.ok(!text.includes('[DONE]'), 'a cut stream never looks complete');
  const last = JSON.parse(fs.at(-1)!.slice(6)) as { error: { code: string; type: string; message: string } };
  assert.equal(last.error.code, 'sluice_upstream_truncated');
  assert.equal(last.error.type, 'server_error');
  assert.equal(fs.filter((f) => f.includes('"content"')).length, 1 + 3, 'role chunk and three tokens kept');
  assert.equal(g.logs[0]?.outcome, 'truncated');
});

test("an engine's in-band error frame becomes OpenAI's error frame, and vLLM's trailing [DONE] is dropped", async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 1, tokens: 10, fail: 'error_frame', failAfter: 2 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }] });
  const text = await (await post(`${g.url}/chat/completions`, chatBody())).text();
  assert.ok(!text.includes('[DONE]'));
  const last = JSON.parse(frames(text).at(-1)!.slice(6)) as { error: { message: string; type: string } };
  assert.equal(last.error.message, 'simulated engine failure');
  assert.equal(last.error.type, 'server_error');
});

test('a client that disconnects aborts the upstream request at once', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 20, tokens: 1_000 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }] });
  const ac = new AbortController();
  const res = await post(`${g.url}/chat/completions`, chatBody(), {}, ac.signal);
  const reader = res.body!.getReader();
  await reader.read();
  const aborted = once<{ tokensSent: number }>(s.events, 'aborted', 5_000);
  ac.abort();
  const info = await aborted;
  assert.ok(info.tokensSent < 1_000, 'the simulator saw its connection close before the end');
  assert.equal(s.stats.aborted, 1);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(g.logs[0]?.outcome, 'client_aborted');
});


function openStream(url: string): Promise<import('node:http').IncomingMessage> {
  const body = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x' }], stream: true });
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' } }, resolve);
    req.on('error', reject);
    req.end(body);
  });
}

// On both upstream clients: undici, and Sluice's own (src/upstream/h1/), which pauses its socket itself.
for (const client of ['undici', 'sluice'] as const) test(`a slow client pauses the upstream (${client}): bounded buffering, nothing lost`, async (t) => {
  const total = 50_000; // ~50 MB if nothing pushed back
  const up = await fastUpstream(t, total);
  const g = await gateway(t, { upstreams: [{ url: up.url, http_client: client }] });
  const res = await openStream(g.url);
  res.pause(); // the client reads nothing for a while
  await new Promise((r) => setTimeout(r, 1_000));
  const after1s = up.state.written;
  await new Promise((r) => setTimeout(r, 500));
  const after1500ms = up.state.written;
  // What is held is the kernel's socket buffers on two loopback connections plus at most one read and the
  // gateway's 16 KiB high-water mark; the upstream is stopped, not buffered into the gateway's heap.
  assert.equal(after1500ms, after1s, 'the upstream stopped writing while the client read nothing');
  assert.ok(after1s < 24 * 1024 * 1024, `upstream wrote ${after1s} bytes while the client read none`);
  assert.ok(up.state.sent < total, 'the upstream was held back');
  let received = 0;
  let tail = '';
  res.on('data', (d: Buffer) => {
    received += d.length;
    tail = (tail + d.toString('latin1')).slice(-64);
  });
  res.resume();
  await once(res, 'end', 60_000);
  assert.equal(up.state.sent, total);
  assert.ok(tail.endsWith('data: [DONE]\n\n'));
  assert.ok(received >= total * up.state.chunkBytes, 'every byte arrived');
});

test('a client stalled past client_stall_ms is disconnected and its upstream aborted', async (t) => {
  const up = await fastUpstream(t, 1_000_000);
  const g = await gateway(t, { upstreams: [{ url: up.url }], timeouts: { client_stall_ms: 300 } });
  const res = await openStream(g.url);
  res.pause();
  res.on('error', () => {});
  await up.state.closed;
  assert.ok(up.state.closedEarly, 'upstream connection closed before its end');
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(g.logs[0]?.outcome, 'client_stalled');
  assert.equal(g.logs[0]?.error_code, 'SLUICE_CLIENT_STALLED');
});

/** Reads HTTP/1.1 responses off raw bytes, strictly: status line, headers, then chunked framing to the last chunk. */
function readChunkedResponses(raw: Buffer, count: number): Array<{ status: number; body: string }> {
  const out: Array<{ status: number; body: string }> = [];
  let at = 0;
  while (out.length < count) {
    const headEnd = raw.indexOf('\r\n\r\n', at);
    assert.ok(headEnd !== -1, `response ${out.length + 1}: no end of headers`);
    const head = raw.subarray(at, headEnd).toString('latin1');
    assert.match(head, /\r\ntransfer-encoding: chunked/i, `response ${out.length + 1} is chunked`);
    at = headEnd + 4;
    const parts: Buffer[] = [];
    for (;;) {
      const lineEnd = raw.indexOf('\r\n', at);
      const sizeLine = raw.subarray(at, lineEnd).toString('latin1');
      assert.match(sizeLine, /^[0-9a-f]+$/, `chunk size line '${sizeLine}'`);
      const size = parseInt(sizeLine, 16);
      at = lineEnd + 2;
      if (size === 0) {
        assert.equal(raw.subarray(at, at + 2).toString('latin1'), '\r\n', 'no trailers, then CRLF');
        at += 2;
        break;
      }
      parts.push(raw.subarray(at, at + size));
      assert.equal(raw.subarray(at + size, at + size + 2).toString('latin1'), '\r\n', 'CRLF after each chunk');
      at += size + 2;
    }
    out.push({ status: Number(head.slice(9, 12)), body: Buffer.concat(parts).toString('utf8') });
  }
  assert.equal(at, raw.length, 'nothing after the last response');
  return out;
}

test('chunked framing is exact on one kept-alive connection: a stream, a pipelined stream behind it, then another', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 5, itlMs: 2, tokens: 20 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }] });
  const { port } = new URL(g.url);
  const body = JSON.stringify(chatBody({ messages: [{ role: 'user', content: 'héllo ✓' }] }));
  const request = `POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
  const { connect } = await import('node:net');
  const socket = connect(Number(port), '127.0.0.1');
  t.after(() => socket.destroy());
  const received: Buffer[] = [];
  socket.on('data', (c: Buffer) => received.push(c));
  // Two requests in one write: the second response waits for the first and must not be framed on a socket it does
  // not own yet. Then a third on the same connection once both are done.
  socket.write(request + request);
  const bytes = (): Buffer => Buffer.concat(received);
  const countDone = (): number => bytes().toString('latin1').split('data: [DONE]').length - 1;
  const until = async (n: number): Promise<void> => {
    for (let i = 0; i < 500 && !(countDone() >= n && bytes().toString('latin1').endsWith('0\r\n\r\n')); i++) await new Promise((r) => setTimeout(r, 10));
  };
  await until(2);
  socket.write(request);
  await until(3);
  const responses = readChunkedResponses(bytes(), 3);
  for (const r of responses) {
    assert.equal(r.status, 200);
    const fs = frames(r.body);
    assert.equal(fs.at(-1), 'data: [DONE]');
    const pieces = fs.slice(0, -1).map((f) => (JSON.parse(f.slice(6)) as { choices: Array<{ delta: { content?: string } }> }).choices[0]?.delta.content);
    assert.equal(pieces.filter((p) => p).length, 20, 'every token arrived, once');
  }
  assert.equal(g.logs.length, 3);
  assert.ok(g.logs.every((l) => l.outcome === 'completed'));
});
