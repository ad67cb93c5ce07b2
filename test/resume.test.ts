import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chatBody, gateway, once, post, sim } from './helpers/gateway.ts';
import { chatText, dataEvents, events, rawStream } from './helpers/resume.ts';

// Resumable streams (issue 15, docs/resume.md): a real gateway in front of a real simulator, real sockets destroyed
// mid-stream, and the simulator's own report of aborted requests.

const SLOW = (tokens = 40, itl = 25) => ({ sim: { ttft_ms: 0, itl_ms: itl, tokens, jitter_ms: 0 } });
const KEY = 'sk-resume-owner-1';
const OTHER = 'sk-resume-other-2';
const auth = (k: string) => ({ authorization: `Bearer ${k}` });

/** An event with its request's own id and timestamp blanked: two requests of the same body then give the same events. */
const sameRequest = (e: string): string => e.replace(/"id":"chatcmpl-[^"]*"/, '"id":""').replace(/"created":\d+/, '"created":0');

/** The whole stream of a non-resumable request with the same body: what a resumed one must add up to. */
async function baseline(url: string, body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<string[]> {
  const r = await rawStream(`${url}/chat/completions`, { body, headers });
  assert.equal(r.status, 200);
  return events(r.frames);
}

test('a resumable stream carries X-Sluice-Stream-Id and the same frames as any other', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url, dialect: 'vllm' }] });
  const body = chatBody(SLOW(12, 5));
  const plain = await rawStream(`${g.url}/chat/completions`, { body });
  const r = await rawStream(`${g.url}/chat/completions`, { body, headers: { 'x-sluice-resume': '1' } });
  assert.equal(plain.headers['x-sluice-stream-id'], undefined);
  assert.match(String(r.headers['x-sluice-stream-id']), /^strm_[A-Za-z0-9_-]{24}$/);
  assert.equal(r.headers['content-type'], 'text/event-stream; charset=utf-8');
  // No id: lines, the same events (ids and timestamps aside, which differ per request).
  assert.ok(!r.text.includes('\nid:') && !r.text.startsWith('id:'));
  assert.equal(chatText(events(r.frames)), chatText(events(plain.frames)));
  assert.equal(r.frames.at(-1), 'data: [DONE]');
});

test('cut after K events, resumed with after=K: every event exactly once and the whole text', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url, dialect: 'vllm' }] });
  const body = chatBody(SLOW(40, 20));
  const whole = await baseline(g.url, body);
  for (const K of [1, 7, 20]) {
    const first = await rawStream(`${g.url}/chat/completions`, { body, headers: { 'x-sluice-resume': '1' }, cutAfter: K });
    const id = String(first.headers['x-sluice-stream-id']);
    const got = events(first.frames);
    assert.ok(got.length >= K);
    const rest = await rawStream(`${g.url}/streams/${id}?after=${got.length}`);
    assert.equal(rest.status, 200);
    assert.equal(rest.headers['x-sluice-stream-id'], id);
    const all = [...got, ...events(rest.frames)];
    // The chunks' ids and `created` are the request's own; everything else matches the uninterrupted stream.
    assert.equal(all.length, whole.length, `K=${K}: as many events as the uninterrupted stream`);
    assert.equal(chatText(all), chatText(whole), `K=${K}: the whole text`);
    assert.deepEqual(all.map(sameRequest), whole.map(sameRequest), `K=${K}: the same events in the same order`);
    assert.equal(all.at(-1), 'data: [DONE]');
  }
  assert.equal(s.stats.aborted, 0, 'no generation was aborted: each client came back within the grace period');
});

test('the generation finishes while the client is away; the rest is replayable afterwards', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url, dialect: 'vllm' }] });
  const body = chatBody(SLOW(15, 10));
  const whole = await baseline(g.url, body);
  const completed = once(s.events, 'completed');
  const first = await rawStream(`${g.url}/chat/completions`, { body, headers: { 'x-sluice-resume': '1' }, cutAfter: 3 });
  await completed;
  const id = String(first.headers['x-sluice-stream-id']);
  const rest = await rawStream(`${g.url}/streams/${id}?after=${events(first.frames).length}`);
  assert.equal(chatText([...events(first.frames), ...events(rest.frames)]), chatText(whole));
  // Replayable from the start, too, and by Last-Event-ID.
  const again = await rawStream(`${g.url}/streams/${id}`);
  assert.equal(chatText(events(again.frames)), chatText(whole));
  const byHeader = await rawStream(`${g.url}/streams/${id}`, { headers: { 'last-event-id': String(whole.length - 1) } });
  assert.deepEqual(events(byHeader.frames), ['data: [DONE]']);
  assert.equal(s.stats.aborted, 0);
});

test('X-Sluice-Resume: ids writes id: lines; Last-Event-ID resumes after them', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url, dialect: 'vllm' }], heartbeat_ms: 10 });
  const body = chatBody(SLOW(20, 30));
  const first = await rawStream(`${g.url}/chat/completions`, { body, headers: { 'x-sluice-resume': 'ids' }, cutAfter: 5 });
  const ev = first.frames.filter((f) => f.includes('data:'));
  ev.forEach((f, i) => assert.ok(f.includes(`id: ${i + 1}\ndata: `), `event ${i + 1} carries its id: ${JSON.stringify(f.slice(0, 60))}`));
  // Heartbeats in this mode are lone comment lines: no blank line after a comment once ids are on.
  assert.ok(!/(^|\n): keep-alive\n\n/.test(first.text), 'no comment followed by a blank line');
  const id = String(first.headers['x-sluice-stream-id']);
  const rest = await rawStream(`${g.url}/streams/${id}`, { headers: { 'last-event-id': String(ev.length) } });
  assert.ok(rest.text.includes(': keep-alive\nid: '), 'the reader gets heartbeats too, as lone comment lines');
  assert.ok(!/(^|\n): keep-alive\n\n/.test(rest.text));
  const restEv = rest.frames.filter((f) => f.includes('data:'));
  assert.ok(restEv[0]?.includes(`id: ${ev.length + 1}\n`));
  const all = [...events(first.frames), ...events(rest.frames)];
  assert.equal(chatText(all), chatText(await baseline(g.url, body)));
});

test('a dropped resumable stream keeps generating for the grace period, then aborts upstream', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url, dialect: 'vllm' }], resume: { grace_ms: 600 } });
  const aborted = once<{ tokensSent: number }>(s.events, 'aborted', 20_000);
  const first = await rawStream(`${g.url}/chat/completions`, { body: chatBody(SLOW(400, 20)), headers: { 'x-sluice-resume': '1' }, cutAfter: 3 });
  const droppedAt = Date.now();
  const { tokensSent } = await aborted;
  assert.ok(Date.now() - droppedAt >= 550, 'not aborted before the grace period');
  assert.ok(tokensSent > dataEvents(first.frames), 'the engine kept generating while the client was away');
  assert.ok(tokensSent < 400, 'stopped before the end');
  // What was generated meanwhile is in the log, which ends with the grace error, never [DONE].
  const id = String(first.headers['x-sluice-stream-id']);
  const rest = await rawStream(`${g.url}/streams/${id}?after=${dataEvents(first.frames)}`);
  const last = rest.frames.at(-1) ?? '';
  assert.match(last, /"code":"sluice_resume_grace_expired"/);
  assert.ok(!rest.text.includes('[DONE]'));
  const log = g.logs.find((l) => l.outcome === 'client_aborted');
  assert.equal(log?.error_code, 'SLUICE_RESUME_GRACE_EXPIRED');
});

test('a reconnect within the grace period stops the clock; leaving again restarts it', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url, dialect: 'vllm' }], resume: { grace_ms: 400 } });
  const body = chatBody(SLOW(60, 20));
  const first = await rawStream(`${g.url}/chat/completions`, { body, headers: { 'x-sluice-resume': '1' }, cutAfter: 2 });
  const id = String(first.headers['x-sluice-stream-id']);
  let got = events(first.frames);
  // Three reconnects, each cut after a few more events, each within the grace period.
  for (let i = 0; i < 3; i++) {
    const part = await rawStream(`${g.url}/streams/${id}?after=${got.length}`, { cutAfter: 3 });
    got = [...got, ...events(part.frames)];
  }
  const rest = await rawStream(`${g.url}/streams/${id}?after=${got.length}`);
  got = [...got, ...events(rest.frames)];
  assert.equal(chatText(got), chatText(await baseline(g.url, body)));
  assert.equal(got.at(-1), 'data: [DONE]');
  assert.equal(s.stats.aborted, 0);
});

test('POST /v1/streams/{id}/cancel aborts the upstream at once; the client sees an error frame, not [DONE]', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url, dialect: 'vllm' }], api_keys: [KEY, OTHER] });
  const res = await post(`${g.url}/chat/completions`, chatBody(SLOW(400, 20)), { 'x-sluice-resume': '1', ...auth(KEY) });
  const id = String(res.headers.get('x-sluice-stream-id'));
  const reader = res.body!.getReader();
  await reader.read();
  // Another key may neither cancel nor read it: the same 404 as an unknown id.
  const foreign = await post(`${g.url}/streams/${id}/cancel`, {}, auth(OTHER));
  assert.equal(foreign.status, 404);
  assert.equal(((await foreign.json()) as { error: { code: string } }).error.code, 'stream_not_found');
  assert.equal(s.stats.aborted, 0);
  const aborted = once(s.events, 'aborted');
  const c = await post(`${g.url}/streams/${id}/cancel`, {}, auth(KEY));
  assert.equal(c.status, 200);
  assert.equal(((await c.json()) as { status: string }).status, 'cancelled');
  await aborted;
  let text = '';
  const dec = new TextDecoder();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    text += dec.decode(value, { stream: true });
  }
  assert.match(text, /data: \{"error":\{[^\n]*"code":"sluice_stream_cancelled"/);
  assert.ok(!text.includes('[DONE]'));
  // Cancelling again: the stream has ended.
  const again = await post(`${g.url}/streams/${id}/cancel`, {}, auth(KEY));
  assert.equal(((await again.json()) as { status: string }).status, 'ended');
});

test('hostile readers: another key, unknown and guessed ids, bad cursors', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url, dialect: 'vllm' }], api_keys: [KEY, OTHER] });
  const r = await rawStream(`${g.url}/chat/completions`, { body: chatBody(SLOW(5, 1)), headers: { 'x-sluice-resume': '1', ...auth(KEY) } });
  const id = String(r.headers['x-sluice-stream-id']);
  const get = (path: string, k = KEY, headers: Record<string, string> = {}) => fetch(`${g.url}${path}`, { headers: { ...auth(k), ...headers } });
  const mine = await get(`/streams/${id}`);
  assert.equal(mine.status, 200);
  await mine.text();
  for (const [path, k] of [
    [`/streams/${id}`, OTHER],
    [`/streams/strm_${'A'.repeat(24)}`, KEY],
    // One character off (never the id itself: an id ending in B would make this the real one, 1 run in 64).
    [`/streams/${id.slice(0, -1)}${id.endsWith('B') ? 'C' : 'B'}`, KEY],
    [`/streams/..%2F..%2Fetc`, KEY],
    [`/streams/${'x'.repeat(5000)}`, KEY],
  ] as const) {
    const res = await get(path, k);
    assert.equal(res.status, 404, path.slice(0, 60));
    const e = (await res.json()) as { error: { type: string; code: string; message: string } };
    assert.equal(e.error.type, 'invalid_request_error');
  }
  const noKey = await fetch(`${g.url}/streams/${id}`);
  assert.equal(noKey.status, 401);
  await noKey.text();
  for (const after of ['-1', 'abc', '1e3', '99999999999999', '1.5', '']) {
    const res = await get(`/streams/${id}?after=${encodeURIComponent(after)}`);
    if (after === '') {
      assert.equal(res.status, 200); // an empty cursor is the whole stream
      await res.text();
      continue;
    }
    assert.equal(res.status, 400, `after=${after}`);
    assert.equal(((await res.json()) as { error: { param: string } }).error.param, 'after');
  }
  const past = await get(`/streams/${id}?after=500`);
  assert.equal(past.status, 400);
  await past.text();
  // Past the end of a live stream: the reader waits, and at the end is told, never given an empty success.
  const live = await rawStream(`${g.url}/chat/completions`, { body: chatBody(SLOW(5, 20)), headers: { 'x-sluice-resume': '1', ...auth(KEY) }, cutAfter: 1 });
  const ahead = await rawStream(`${g.url}/streams/${String(live.headers['x-sluice-stream-id'])}?after=900`, { headers: auth(KEY) });
  assert.equal(ahead.status, 200);
  assert.match(ahead.frames.at(-1) ?? '', /"param":"after"/);
  const badHeader = await post(`${g.url}/chat/completions`, chatBody(), { 'x-sluice-resume': 'yes please', ...auth(KEY) });
  assert.equal(badHeader.status, 400);
  await badHeader.text();
  const wrongMethod = await post(`${g.url}/streams/${id}`, {}, auth(KEY));
  assert.equal(wrongMethod.status, 405);
  await wrongMethod.text();
});

test('many readers of one stream: each gets every event; past resume.max_readers, 429', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url, dialect: 'vllm' }], resume: { max_readers: 3 } });
  const body = chatBody(SLOW(30, 20));
  const first = await rawStream(`${g.url}/chat/completions`, { body, headers: { 'x-sluice-resume': '1' }, cutAfter: 2 });
  const id = String(first.headers['x-sluice-stream-id']);
  const readers = [0, 1, 2].map(() => rawStream(`${g.url}/streams/${id}`));
  // Wait until the three are attached (their headers are out), then a fourth is refused.
  await new Promise((r) => setTimeout(r, 200));
  const fourth = await fetch(`${g.url}/streams/${id}`);
  assert.equal(fourth.status, 429);
  assert.equal(((await fourth.json()) as { error: { code: string } }).error.code, 'sluice_resume_too_many_readers');
  const whole = chatText(await baseline(g.url, body));
  for (const r of await Promise.all(readers)) {
    assert.equal(chatText(events(r.frames)), whole);
    assert.equal(r.frames.at(-1), 'data: [DONE]');
  }
});

test('storage bounds: a stream past resume.max_stream_bytes ends with SLUICE_RESUME_LOG_FULL and aborts upstream', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url, dialect: 'vllm' }], resume: { max_stream_bytes: 4096 } });
  const aborted = once(s.events, 'aborted');
  const r = await rawStream(`${g.url}/chat/completions`, { body: chatBody(SLOW(400, 2)), headers: { 'x-sluice-resume': '1' } });
  await aborted;
  assert.match(r.frames.at(-1) ?? '', /"code":"sluice_resume_log_full"/);
  assert.ok(!r.text.includes('[DONE]'));
  assert.ok(r.text.length < 4096 + 1024, 'the client got no more than the log holds');
  // The log holds what the client got, error included: a resume from 0 reproduces it.
  const replay = await rawStream(`${g.url}/streams/${String(r.headers['x-sluice-stream-id'])}`);
  assert.deepEqual(events(replay.frames), events(r.frames));
});

test('storage bounds in total: finished logs are dropped oldest first to make room', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url, dialect: 'vllm' }], resume: { max_total_bytes: 8192, max_stream_bytes: 8192 } });
  const ids: string[] = [];
  for (let i = 0; i < 4; i++) {
    const r = await rawStream(`${g.url}/chat/completions`, { body: chatBody(SLOW(10, 1)), headers: { 'x-sluice-resume': '1' } });
    assert.equal(r.frames.at(-1), 'data: [DONE]');
    ids.push(String(r.headers['x-sluice-stream-id']));
  }
  const status = await Promise.all(ids.map(async (id) => (await rawStream(`${g.url}/streams/${id}`)).status));
  assert.equal(status.at(-1), 200, 'the newest is kept');
  assert.ok(status.includes(404), `the oldest made room: ${status.join(',')}`);
});

test('resume.default: true makes streams resumable unless they send X-Sluice-Resume: 0; ttl expires them', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url, dialect: 'vllm' }], resume: { default: true, ttl_ms: 200 } });
  const on = await rawStream(`${g.url}/chat/completions`, { body: chatBody(SLOW(3, 1)) });
  const off = await rawStream(`${g.url}/chat/completions`, { body: chatBody(SLOW(3, 1)), headers: { 'x-sluice-resume': '0' } });
  assert.ok(on.headers['x-sluice-stream-id']);
  assert.equal(off.headers['x-sluice-stream-id'], undefined);
  await new Promise((r) => setTimeout(r, 400));
  const expired = await fetch(`${g.url}/streams/${String(on.headers['x-sluice-stream-id'])}`);
  assert.equal(expired.status, 404);
  await expired.text();
});

test('storage bounds in total: with live logs holding the room, a new resumable request is 503 SLUICE_RESUME_LOG_FULL', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url, dialect: 'vllm' }], resume: { max_total_bytes: 4096, max_stream_bytes: 4096 } });
  const aborted = once(s.events, 'aborted');
  const live = rawStream(`${g.url}/chat/completions`, { body: chatBody(SLOW(400, 20)), headers: { 'x-sluice-resume': '1' } });
  await once(s.events, 'request');
  await new Promise((r) => setTimeout(r, 100));
  const refused = await post(`${g.url}/chat/completions`, chatBody(SLOW(3, 1)), { 'x-sluice-resume': '1' });
  assert.equal(refused.status, 503);
  assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'sluice_resume_log_full');
  // The same request without resume is served.
  const plain = await rawStream(`${g.url}/chat/completions`, { body: chatBody(SLOW(3, 1)) });
  assert.equal(plain.frames.at(-1), 'data: [DONE]');
  // The live one outgrows the total and is stopped, its upstream aborted.
  assert.match((await live).frames.at(-1) ?? '', /sluice_resume_log_full/);
  await aborted;
});

test('over HTTP/2 (h2c): a stream reset by its client is resumed on the same connection', async (t) => {
  const { connect } = await import('node:http2');
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url, dialect: 'vllm' }], h2c: true });
  const body = chatBody(SLOW(30, 20));
  const whole = chatText(await baseline(g.url, body));
  const session = connect(`http://127.0.0.1:${g.port}`);
  t.after(() => session.close());
  const read = (headers: Record<string, string>, payload: string | undefined, cutAfter?: number) =>
    new Promise<{ id: string; frames: string[] }>((resolve, reject) => {
      const req = session.request(headers);
      let text = '';
      let id = '';
      req.on('response', (h) => (id = String(h['x-sluice-stream-id'] ?? '')));
      req.setEncoding('utf8');
      const done = () => resolve({ id, frames: text.slice(0, text.lastIndexOf('\n\n') + 2).split('\n\n').filter((f) => f !== '') });
      req.on('data', (c: string) => {
        text += c;
        if (cutAfter !== undefined && dataEvents(text.slice(0, text.lastIndexOf('\n\n') + 2).split('\n\n')) >= cutAfter) {
          req.close(); // RST_STREAM: the client left this stream
          done();
        }
      });
      req.on('end', done);
      req.on('error', reject);
      req.end(payload);
    });
  const first = await read({ ':method': 'POST', ':path': '/v1/chat/completions', 'content-type': 'application/json', 'x-sluice-resume': '1' }, JSON.stringify(body), 4);
  assert.match(first.id, /^strm_/);
  const got = events(first.frames);
  const rest = await read({ ':method': 'GET', ':path': `/v1/streams/${first.id}?after=${got.length}` }, undefined);
  assert.equal(chatText([...got, ...events(rest.frames)]), whole);
  assert.equal(s.stats.aborted, 0);
});

test('a client that leaves before the response head never learned the id: the generation is aborted at once', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url, dialect: 'vllm' }], heartbeat_ms: 60_000 });
  const ac = new AbortController();
  // The engine sends its headers after 3 s: until then the gateway has not sent its own, with the stream's id.
  const res = post(`${g.url}/chat/completions`, chatBody({ sim: { ttft_ms: 0, headers_delay_ms: 3_000, tokens: 3 } }), { 'x-sluice-resume': '1' }, ac.signal);
  await once(s.events, 'request');
  ac.abort();
  await assert.rejects(res);
  // Ended (and its upstream request aborted) at once: not left running for resume.grace_ms, nor completed after 3 s.
  for (let i = 0; i < 100 && g.logs.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(g.logs[0]?.outcome, 'client_aborted');
  assert.equal(g.logs[0]?.error_code, 'SLUICE_CLIENT_ABORTED');
});

test('a first connection that died without a FIN (its buffer full) does not hold back the client that reconnected', async (t) => {
  const { connect } = await import('node:net');
  const { fastUpstream } = await import('./helpers/gateway.ts');
  const total = 6_000; // ~6 MB: more than the loopback socket buffers hold
  const up = await fastUpstream(t, total);
  const g = await gateway(t, { upstreams: [{ url: up.url, dialect: 'vllm' }], timeouts: { client_stall_ms: 1_000 }, resume: { max_stream_bytes: 32 * 1024 * 1024 } });
  // The first client reads the head (the stream id) and then nothing: a connection gone quiet, never closed.
  const sock = connect(g.port, '127.0.0.1');
  t.after(() => sock.destroy());
  const body = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x' }], stream: true });
  sock.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nx-sluice-resume: 1\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
  const id = await new Promise<string>((resolve) => {
    let head = '';
    const onData = (c: Buffer): void => {
      head += c.toString('latin1');
      const m = /x-sluice-stream-id: (\S+)/i.exec(head);
      if (m) {
        sock.off('data', onData);
        sock.pause();
        resolve(m[1] as string);
      }
    };
    sock.on('data', onData);
  });
  // Long enough for its buffers to fill and the upstream to pause on them, shorter than the stall limit.
  await new Promise((r) => setTimeout(r, 400));
  const rest = await rawStream(`${g.url}/streams/${id}`);
  assert.equal(rest.frames.at(-1), 'data: [DONE]', 'the reconnected client gets the whole stream, not a stall error');
  assert.equal(dataEvents(rest.frames), total + 2);
  assert.equal(up.state.closedEarly, false);
});

test('a reader waiting for live events gets heartbeats in the gaps', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url, dialect: 'vllm' }], heartbeat_ms: 20 });
  const body = chatBody(SLOW(6, 150));
  const first = await rawStream(`${g.url}/chat/completions`, { body, headers: { 'x-sluice-resume': '1' }, cutAfter: 1 });
  const rest = await rawStream(`${g.url}/streams/${String(first.headers['x-sluice-stream-id'])}?after=${events(first.frames).length}`);
  assert.ok(rest.frames.includes(': keep-alive'), 'heartbeats between the events');
  assert.equal(chatText([...events(first.frames), ...events(rest.frames)]), chatText(await baseline(g.url, body)));
});

test('30 concurrent streams, each cut at its own K and resumed: every one whole, exactly once', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url, dialect: 'vllm' }] });
  const N = 30;
  const bodies = Array.from({ length: N }, (_, i) => chatBody({ messages: [{ role: 'user', content: `prompt ${i}` }], ...SLOW(25, 10) }));
  const wholes = await Promise.all(bodies.map((b) => baseline(g.url, b)));
  const results = await Promise.all(
    bodies.map(async (body, i) => {
      const K = 1 + (i % 20);
      const first = await rawStream(`${g.url}/chat/completions`, { body, headers: { 'x-sluice-resume': '1' }, cutAfter: K });
      const got = events(first.frames);
      const rest = await rawStream(`${g.url}/streams/${String(first.headers['x-sluice-stream-id'])}?after=${got.length}`);
      return [...got, ...events(rest.frames)];
    }),
  );
  results.forEach((all, i) => assert.deepEqual(all.map(sameRequest), (wholes[i] as string[]).map(sameRequest), `stream ${i}`));
  assert.equal(s.stats.aborted, 0);
});

test('a client that half-closes (FIN) has left: its response is closed, the generation waits for a resume', async (t) => {
  const { connect } = await import('node:net');
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url, dialect: 'vllm' }] });
  const body = chatBody(SLOW(20, 20));
  const payload = JSON.stringify(body);
  const sock = connect(g.port, '127.0.0.1');
  t.after(() => sock.destroy());
  sock.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nx-sluice-resume: 1\r\ncontent-length: ${payload.length}\r\n\r\n${payload}`);
  let received = '';
  const closed = new Promise<void>((r) => sock.on('close', () => r()));
  const id = await new Promise<string>((resolve) => {
    sock.on('data', (c: Buffer) => {
      received += c.toString('latin1');
      const m = /x-sluice-stream-id: (\S+)/i.exec(received);
      if (m && received.includes('data: ')) resolve(m[1] as string);
    });
  });
  sock.end(); // FIN: the gateway treats the client as gone
  await closed; // and closes its side: no response left hanging
  const rest = await rawStream(`${g.url}/streams/${id}`);
  assert.equal(chatText(events(rest.frames)), chatText(await baseline(g.url, body)));
  assert.equal(s.stats.aborted, 0);
});
