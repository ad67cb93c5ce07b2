import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable, pipeline } from 'node:stream';
import { brotliCompressSync, createGzip, deflateRawSync, deflateSync, gzipSync } from 'node:zlib';
import { Pool } from 'undici';
import { dispatchRequest } from '../src/upstream/upstream-body.ts';
import { streamCoding } from '../src/upstream/content-encoding.ts';
import { upstreamFailure } from '../src/openai/upstream-failure.ts';
import { gateway, post } from './helpers/gateway.ts';
import { rawUpstream, type RawRequest } from './helpers/raw-upstream.ts';

/**
 * Issue 12, "Answers that look whole but are not" and "a gzip body with Content-Encoding nobody asked for": upstreams
 * that cut their answers short or compress them anyway, as raw TCP servers writing the bytes by hand.
 */

const ANSWER = JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion', created: 1, model: 'm', choices: [{ index: 0, message: { role: 'assistant', content: 'Hello there' }, finish_reason: 'stop' }], usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } });
const chat = (stream: boolean): Record<string, unknown> => ({ model: 'm', stream, messages: [{ role: 'user', content: 'Hi' }] });

/** The three ways a non-streamed answer is cut short: each writes part of ANSWER and closes. */
const CUTS: Record<string, (req: RawRequest) => void> = {
  'Content-Length body cut by FIN': ({ socket }) => {
    socket.end(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${ANSWER.length}\r\n\r\n${ANSWER.slice(0, 40)}`);
  },
  'Content-Length body cut by RST': ({ socket }) => {
    socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${ANSWER.length}\r\n\r\n${ANSWER.slice(0, 40)}`, () => setTimeout(() => socket.resetAndDestroy(), 20));
  },
  'chunked body without its last chunk': ({ socket }) => {
    const part = ANSWER.slice(0, 40);
    socket.end(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n${part.length.toString(16)}\r\n${part}\r\n`);
  },
};

test('UpstreamBody.text() reports a body that broke off, with what arrived, instead of passing it for whole', async (t) => {
  for (const [name, cut] of Object.entries(CUTS)) {
    await t.test(name, async (t) => {
      const up = await rawUpstream(t, cut);
      const pool = new Pool(`http://127.0.0.1:${up.port}`);
      t.after(() => pool.destroy());
      const res = await dispatchRequest(pool, { method: 'POST', path: '/v1/chat/completions', body: '{}' }, new AbortController().signal);
      assert.equal(res.statusCode, 200);
      const r = await res.body.text(1 << 20);
      assert.equal(r.text, ANSWER.slice(0, 40));
      assert.equal(r.truncated, false, 'not over the limit: cut by the upstream');
      assert.equal(r.failure?.code, 'SLUICE_UPSTREAM_TRUNCATED');
      assert.match(r.failure?.message ?? '', /broke off after 40 bytes/);
      await assert.rejects(
        (async () => {
          const again = await dispatchRequest(pool, { method: 'POST', path: '/v1/chat/completions', body: '{}' }, new AbortController().signal);
          return again.body.wholeText(1 << 20, 'up1');
        })(),
        (e: unknown) => e instanceof Error && 'code' in e && e.code === 'SLUICE_UPSTREAM_TRUNCATED' && /^upstream up1: answer broke off/.test(e.message),
      );
    });
  }
});

// src/generation/attach.ts reads a non-streamed answer with `wholeText`, which reports a body that broke off.
test('a non-streamed answer cut short is a 502 SLUICE_UPSTREAM_TRUNCATED, never a 200 with half a JSON object', async (t) => {
  for (const [name, cut] of Object.entries(CUTS)) {
    await t.test(name, async (t) => {
      const up = await rawUpstream(t, cut);
      const g = await gateway(t, { upstreams: [{ url: up.url, models: ['m'] }] });
      const res = await post(`${g.url}/chat/completions`, chat(false));
      const body = (await res.json()) as { error?: { code?: string; type?: string; message?: string } };
      assert.equal(res.status, 502);
      assert.equal(body.error?.code, 'sluice_upstream_truncated');
      assert.equal(body.error?.type, 'server_error');
      await new Promise((r) => setImmediate(r));
      assert.notEqual(g.logs.at(-1)?.outcome, 'completed');
    });
  }
});

test('every upstream request asks for accept-encoding: identity (discovery, non-streamed and streamed)', async (t) => {
  const up = await rawUpstream(t, ({ socket, body }) => {
    if (JSON.parse(body).stream === true) {
      socket.write('HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n');
      const ev = 'data: {"id":"x","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n';
      socket.write(`${Buffer.byteLength(ev).toString(16)}\r\n${ev}\r\n0\r\n\r\n`);
    } else {
      socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${ANSWER.length}\r\n\r\n${ANSWER}`);
    }
  });
  const g = await gateway(t, { upstreams: [{ url: up.url }] });
  assert.equal((await post(`${g.url}/chat/completions`, chat(false))).status, 200);
  assert.match(await (await post(`${g.url}/chat/completions`, chat(true))).text(), /data: \[DONE\]/);
  const seen = up.requests.map((r) => `${r.method} ${r.path} ${r.headers['accept-encoding']}`);
  assert.ok(seen.includes('GET /v1/models identity'), seen.join('\n'));
  assert.equal(seen.filter((s) => s === 'POST /v1/chat/completions identity').length, 2, seen.join('\n'));
  assert.ok(up.requests.every((r) => r.headers['accept-encoding'] === 'identity'), seen.join('\n'));
});

test('a non-streamed answer compressed anyway is decoded (gzip, deflate both ways, br) before it reaches the client', async (t) => {
  const encodings: Array<[string, Buffer]> = [
    ['gzip', gzipSync(ANSWER)],
    ['x-gzip', gzipSync(ANSWER)],
    ['deflate', deflateSync(ANSWER)],
    ['deflate', deflateRawSync(ANSWER)],
    ['br', brotliCompressSync(ANSWER)],
  ];
  let next = 0;
  const up = await rawUpstream(t, ({ socket }) => {
    const [name, bytes] = encodings[next++ % encodings.length] as [string, Buffer];
    socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: ${name}\r\ncontent-length: ${bytes.length}\r\n\r\n`);
    socket.write(bytes);
  });
  const g = await gateway(t, { upstreams: [{ url: up.url, models: ['m'] }] });
  for (const [name] of encodings) {
    const res = await post(`${g.url}/chat/completions`, chat(false));
    assert.equal(res.status, 200, name);
    assert.equal(res.headers.get('content-encoding'), null, name);
    assert.equal(await res.text(), ANSWER, name);
  }
  assert.equal(g.logs.at(-1)?.tokens_out, 2, 'metered from the decoded answer');
});

test('a gzip bomb as a non-streamed answer stops at limits.max_response_bytes: 502, upstream closed, memory bounded', async (t) => {
  let sent = 0;
  const up = await rawUpstream(t, ({ socket }) => {
    socket.write('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\nconnection: close\r\n\r\n');
    // 512 MiB of zeros, compressed as it is read (about 500 KB on the wire): an unbounded reader would hold it all.
    const zeros = Buffer.alloc(1 << 20);
    let left = 512;
    const source = new Readable({
      read() {
        this.push(left-- > 0 ? zeros : null);
      },
    });
    const gzip = createGzip({ level: 1 });
    gzip.on('data', (c: Buffer) => (sent += c.length));
    pipeline(source, gzip, socket, () => {});
  });
  const g = await gateway(t, { upstreams: [{ url: up.url, models: ['m'] }], limits: { max_response_bytes: 1 << 20 } });
  const closed = up.nextClose();
  const before = process.memoryUsage().rss;
  const res = await post(`${g.url}/chat/completions`, chat(false));
  const body = (await res.json()) as { error?: { code?: string; message?: string } };
  assert.equal(res.status, 502);
  assert.equal(body.error?.code, 'sluice_upstream_bad_response');
  await closed;
  const grown = process.memoryUsage().rss - before;
  assert.ok(grown < 96 * 1024 * 1024, `RSS grew ${Math.round(grown / 1048576)} MiB`);
  assert.ok(sent < 4 * 1024 * 1024, `the gateway stopped reading early (${sent} compressed bytes produced)`);
  assert.equal((await fetch(`${g.url.replace(/\/v1$/, '')}/health`)).status, 200);
});

test('a streamed answer compressed anyway never reaches the client as compressed bytes, and its upstream is closed', async (t) => {
  const stream = gzipSync('data: {"id":"x","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n');
  const up = await rawUpstream(t, ({ socket }) => {
    // Headers, then the compressed events, then nothing: the gateway must close this request itself.
    socket.write(`HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n${stream.length.toString(16)}\r\n`);
    socket.write(stream);
    socket.write('\r\n');
  });
  const g = await gateway(t, { upstreams: [{ url: up.url, models: ['m'] }] });
  const closed = up.nextClose();
  const res = await post(`${g.url}/chat/completions`, chat(true));
  const bytes = Buffer.from(await res.arrayBuffer());
  assert.equal(bytes.indexOf(Buffer.from([0x1f, 0x8b])), -1, 'no gzip magic in what the client got');
  const text = bytes.toString('utf8');
  assert.doesNotMatch(text, /\[DONE\]/);
  assert.match(text, /Content-Encoding: gzip/);
  await closed;
});

// src/generation/attach.ts checks the coding before it attaches (and so commits) the stream.
test('a streamed answer compressed anyway is a 502 SLUICE_UPSTREAM_BAD_RESPONSE before headers', async (t) => {
  const up = await rawUpstream(t, ({ socket }) => {
    const stream = gzipSync('data: {"id":"x","choices":[]}\n\n');
    socket.write(`HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: gzip\r\ncontent-length: ${stream.length}\r\n\r\n`);
    socket.write(stream);
  });
  const g = await gateway(t, { upstreams: [{ url: up.url, models: ['m'] }] });
  const res = await post(`${g.url}/chat/completions`, chat(true));
  assert.equal(res.status, 502);
  const body = (await res.json()) as { error?: { code?: string; message?: string } };
  assert.equal(body.error?.code, 'sluice_upstream_bad_response');
  assert.match(body.error?.message ?? '', /Content-Encoding: gzip/);
});

test('streamCoding: identity passes; any coding, known or not, is refused with a message naming it', () => {
  const refusal = (headers: Record<string, string>) => {
    const coding = streamCoding(headers);
    return coding === undefined ? undefined : upstreamFailure({ kind: 'encoded_stream', upstream: 'gpu1', coding });
  };
  assert.equal(refusal({}), undefined);
  assert.equal(refusal({ 'content-encoding': 'identity' }), undefined);
  assert.match(refusal({ 'content-encoding': 'gzip' })?.message ?? '', /^upstream gpu1 sent its stream with Content-Encoding: gzip/);
  assert.match(refusal({ 'content-encoding': 'zstd' })?.message ?? '', /zstd/);
  assert.equal(refusal({ 'content-encoding': 'br' })?.status, 502);
});

test('a non-streamed answer in a coding the gateway cannot decode is reported, not passed on', async (t) => {
  const up = await rawUpstream(t, ({ socket }) => {
    socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: zstd\r\ncontent-length: 4\r\n\r\n\x28\xb5\x2f\xfd`);
  });
  const pool = new Pool(`http://127.0.0.1:${up.port}`);
  t.after(() => pool.destroy());
  const res = await dispatchRequest(pool, { method: 'POST', path: '/v1/chat/completions', body: '{}' }, new AbortController().signal);
  const r = await res.body.text(1024);
  assert.equal(r.text, '');
  assert.equal(r.failure?.code, 'SLUICE_UPSTREAM_BAD_RESPONSE');
  assert.match(r.failure?.message ?? '', /zstd/);
  const bad = await dispatchRequest(pool, { method: 'POST', path: '/v1/chat/completions', body: '{}' }, new AbortController().signal);
  await assert.rejects(bad.body.wholeText(1024, 'up1'), /upstream up1: answer has Content-Encoding: zstd/);
});

test('a gzip answer whose compressed stream is cut (transport complete) does not decode into a whole answer', async (t) => {
  const gz = gzipSync(ANSWER);
  const cut = gz.subarray(0, gz.length - 12);
  const up = await rawUpstream(t, ({ socket }) => {
    socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\ncontent-length: ${cut.length}\r\n\r\n`);
    socket.write(cut);
  });
  const pool = new Pool(`http://127.0.0.1:${up.port}`);
  t.after(() => pool.destroy());
  const res = await dispatchRequest(pool, { method: 'POST', path: '/v1/chat/completions', body: '{}' }, new AbortController().signal);
  const r = await res.body.text(1 << 20);
  assert.equal(r.failure?.code, 'SLUICE_UPSTREAM_BAD_RESPONSE');
  assert.match(r.failure?.message ?? '', /does not decode \(unexpected end of file\)/);
});
