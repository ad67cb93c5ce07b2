import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { connect as h2connect, constants, createServer as createH2Server, type ClientHttp2Session, type Http2ServerResponse, type Http2Session, type IncomingHttpHeaders } from 'node:http2';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { Http1SseWriter } from '../src/http/sse-writer-h1.ts';
import { Http2SseWriter } from '../src/http/sse-writer-h2.ts';
import { SSE_HEADERS } from '../src/http/sse-writer.ts';
import { SluiceError } from '../src/errors.ts';
import { errorJson } from '../src/openai/error-wire.ts';
import { watchDrain } from './helpers/drain.ts';
import { httpServer } from './helpers/gateway.ts';

/**
 * Unit tests of the SSE writers (src/http/sse-writer-h1.ts, sse-writer-h2.ts) on real servers: the HTTP/1.1 writer
 * read by a raw TCP client, so the exact bytes and chunk framing are visible, and the HTTP/2 writer read by a real
 * `http2.connect` client.
 */

const upstreamError = (): SluiceError => new SluiceError('SLUICE_UPSTREAM_ERROR', 'x', { status: 503 });
const ERROR_BODY = '{"error":{"message":"x","type":"server_error","param":null,"code":"sluice_upstream_error"}}';

/** Waits until `pred` holds, re-checked whenever `subscribe` signals; fails clearly after `ms`. */
function until(pred: () => boolean, subscribe: (wake: () => void) => () => void, what: string, ms = 10_000): Promise<void> {
  if (pred()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out waiting for ${what}`));
    }, ms);
    const off = subscribe(() => {
      if (!pred()) return;
      clearTimeout(timer);
      off();
      resolve();
    });
  });
}

/** `p`, or a clear failure after `ms`. */
async function within<T>(p: Promise<T>, what: string, ms = 10_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** Hands each request's response to the test, in order. */
class ResponseQueue<R> {
  #ready: R[] = [];
  #waiters: Array<(r: R) => void> = [];
  push(r: R): void {
    const w = this.#waiters.shift();
    if (w) w(r);
    else this.#ready.push(r);
  }
  next(): Promise<R> {
    const r = this.#ready.shift();
    if (r !== undefined) return Promise.resolve(r);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }
}

// ---------------------------------------------------------------- HTTP/1.1

async function h1Server(t: TestContext): Promise<{ port: number; responses: ResponseQueue<ServerResponse> }> {
  const responses = new ResponseQueue<ServerResponse>();
  const { port } = await httpServer(t, (_req, res) => responses.push(res));
  return { port, responses };
}

interface Chunk {
  /** The size line as sent (hex, without CRLF). */
  sizeLine: string;
  payload: string;
}

interface ParsedResponse {
  statusLine: string;
  /** Header names in lower case; repeated headers joined with ", ". */
  headers: Map<string, string>;
  /** Every byte after the head. */
  body: Buffer;
}

/** A raw TCP client: sends request bytes and keeps every byte it receives. */
class RawClient {
  readonly socket: Socket;
  readonly closed: Promise<{ hadError: boolean }>;
  #parts: Buffer[] = [];
  received = 0;
  #waiters = new Set<() => void>();
  isClosed = false;

  constructor(port: number) {
    this.socket = connect(port, '127.0.0.1');
    this.socket.on('error', () => {});
    this.socket.on('data', (d: Buffer) => {
      this.#parts.push(d);
      this.received += d.length;
      this.#wake();
    });
    this.closed = new Promise((resolve) =>
      this.socket.once('close', (hadError) => {
        this.isClosed = true;
        this.#wake();
        resolve({ hadError });
      }),
    );
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }

  get bytes(): Buffer {
    if (this.#parts.length > 1) this.#parts = [Buffer.concat(this.#parts)];
    return this.#parts[0] ?? Buffer.alloc(0);
  }

  get(path = '/v1/chat/completions'): void {
    this.socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
  }

  /** Waits until the bytes received satisfy `pred` (or the connection closed, when `orClose`). */
  until(pred: (bytes: Buffer) => boolean, what: string, orClose = false): Promise<void> {
    return until(
      () => pred(this.bytes) || (orClose && this.isClosed),
      (wake) => {
        this.#waiters.add(wake);
        return () => this.#waiters.delete(wake);
      },
      what,
    );
  }
}

/** Splits a response into its head and the bytes after it; undefined while the head is incomplete. */
function parseResponse(bytes: Buffer): ParsedResponse | undefined {
  const end = bytes.indexOf('\r\n\r\n');
  if (end === -1) return undefined;
  const [statusLine = '', ...lines] = bytes.subarray(0, end).toString('latin1').split('\r\n');
  const headers = new Map<string, string>();
  for (const line of lines) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers.set(name, headers.has(name) ? `${headers.get(name)}, ${value}` : value);
  }
  return { statusLine, headers, body: bytes.subarray(end + 4) };
}

/** Parses a chunked body as far as it is complete: its chunks and whether the last (zero-size) chunk came. */
function parseChunks(body: Buffer): { chunks: Chunk[]; ended: boolean; rest: number } {
  const chunks: Chunk[] = [];
  let at = 0;
  for (;;) {
    const lineEnd = body.indexOf('\r\n', at);
    if (lineEnd === -1) return { chunks, ended: false, rest: body.length - at };
    const sizeLine = body.subarray(at, lineEnd).toString('latin1');
    assert.match(sizeLine, /^[0-9a-f]+$/, `a chunk size line, got ${JSON.stringify(sizeLine)}`);
    const size = parseInt(sizeLine, 16);
    const start = lineEnd + 2;
    if (body.length < start + size + 2) return { chunks, ended: false, rest: body.length - at };
    assert.equal(body.subarray(start + size, start + size + 2).toString('latin1'), '\r\n', 'CRLF after the chunk payload');
    if (size === 0) return { chunks, ended: true, rest: body.length - (start + 2) };
    chunks.push({ sizeLine, payload: body.subarray(start, start + size).toString('utf8') });
    at = start + size + 2;
  }
}

/** One chunk as HTTP/1.1 frames it. */
const chunk = (payload: string): string => `${Buffer.byteLength(payload).toString(16)}\r\n${payload}\r\n`;

/** A raw client's GET answered by a fresh writer; resolves once the head has arrived when `open`. */
async function h1Stream(t: TestContext, extraHeaders: Record<string, string> = {}) {
  const { port, responses } = await h1Server(t);
  const client = new RawClient(port);
  t.after(() => client.socket.destroy());
  client.get();
  const res = await responses.next();
  const writer = new Http1SseWriter(res, extraHeaders);
  const body = (): Buffer => parseResponse(client.bytes)?.body ?? Buffer.alloc(0);
  const headArrived = (): Promise<void> => client.until((b) => parseResponse(b) !== undefined, 'the response head');
  return { client, res, writer, body, headArrived, responses };
}

test('HTTP/1.1: open() sends 200 with the SSE headers, chunked and without Content-Length, before any data', async (t) => {
  const { client, res, writer, body, headArrived } = await h1Stream(t, { 'x-request-id': 'req_1' });
  // Whatever was set before (a content length, an encoding) never goes with a stream.
  res.setHeader('content-length', '123');
  res.setHeader('content-encoding', 'gzip');
  assert.equal(writer.opened, false);
  writer.open();
  assert.equal(writer.opened, true);
  await headArrived();
  const head = parseResponse(client.bytes);
  assert.ok(head);
  assert.equal(head.statusLine, 'HTTP/1.1 200 OK');
  for (const [k, v] of Object.entries(SSE_HEADERS)) assert.equal(head.headers.get(k), v, k);
  assert.equal(head.headers.get('content-type'), 'text/event-stream; charset=utf-8');
  assert.equal(head.headers.get('x-request-id'), 'req_1', 'the adapter’s extra headers go with the stream');
  assert.equal(head.headers.has('content-length'), false);
  assert.equal(head.headers.has('content-encoding'), false);
  assert.equal(head.headers.get('transfer-encoding'), 'chunked');
  assert.equal(body().length, 0, 'the head went out alone, before any data');
  writer.open(); // idempotent: no second head
  writer.heartbeat();
  writer.flush();
  await client.until(() => parseChunks(body()).chunks.length === 1, 'the heartbeat');
  assert.equal(body().toString('latin1'), chunk(': keep-alive\n\n'));
});

test('HTTP/1.1: each flush() is one chunk holding every frame queued since the last; end() sends the last chunk and the connection is reused', async (t) => {
  const { client, writer, body, headArrived, responses } = await h1Stream(t);
  writer.open();
  await headArrived();
  writer.data('{"a":1}');
  writer.named('response.created', '{"b":2}');
  writer.heartbeat();
  assert.equal(body().length, 0, 'queued frames wait for the flush');
  assert.equal(writer.flush(), true);
  const first = 'data: {"a":1}\n\nevent: response.created\ndata: {"b":2}\n\n: keep-alive\n\n';
  await client.until(() => parseChunks(body()).chunks.length === 1, 'the first chunk');
  assert.deepEqual(parseChunks(body()).chunks, [{ sizeLine: Buffer.byteLength(first).toString(16), payload: first }]);
  assert.equal(writer.flush(), true, 'nothing queued: nothing written');
  writer.data('{"é":"ü"}'); // the size line counts bytes, not UTF-16 units
  writer.done();
  writer.flush();
  const second = 'data: {"é":"ü"}\n\ndata: [DONE]\n\n';
  writer.end();
  await client.until(() => parseChunks(body()).ended, 'the last chunk');
  assert.equal(body().toString('utf8'), `${chunk(first)}${chunk(second)}0\r\n\r\n`, 'exactly these bytes, two data chunks and the last chunk');
  assert.equal(writer.closed, true);
  // The direct socket writes kept the response's framing intact: the same connection serves the next request.
  const before = client.bytes.length;
  client.get('/next');
  const next = await responses.next();
  next.end('ok');
  await client.until((b) => b.subarray(before).includes('\r\n\r\nok'), 'the second response');
  assert.match(client.bytes.subarray(before).toString('latin1'), /^HTTP\/1\.1 200 OK\r\n/);
});

test('HTTP/1.1: frames flushed in the tick of open() go out with the head, chunk-framed the same way', async (t) => {
  const { client, writer, body } = await h1Stream(t);
  writer.open();
  writer.data('{"first":true}');
  writer.flush();
  await client.until(() => parseChunks(body()).chunks.length === 1, 'the first chunk');
  const head = parseResponse(client.bytes);
  assert.equal(head?.statusLine, 'HTTP/1.1 200 OK');
  assert.equal(head?.headers.get('content-type'), SSE_HEADERS['content-type']);
  writer.data('{"second":true}');
  writer.flush();
  writer.end();
  await client.until(() => parseChunks(body()).ended, 'the last chunk');
  assert.equal(body().toString('latin1'), `${chunk('data: {"first":true}\n\n')}${chunk('data: {"second":true}\n\n')}0\r\n\r\n`);
});

test('HTTP/1.1: writeRaw() writes the queued frames, then the raw bytes, in one chunk; an empty write sends nothing', async (t) => {
  const { client, writer, body, headArrived } = await h1Stream(t);
  writer.open();
  await headArrived();
  writer.data('{"queued":1}');
  assert.equal(writer.writeRaw(Buffer.from('data: {"raw":1}\n\ndata: {"raw":2}\n\n')), true);
  const payload = 'data: {"queued":1}\n\ndata: {"raw":1}\n\ndata: {"raw":2}\n\n';
  await client.until(() => parseChunks(body()).chunks.length === 1, 'the chunk');
  assert.equal(body().toString('latin1'), chunk(payload));
  // A zero-size chunk would end the body: an empty write with nothing queued must write nothing at all.
  assert.equal(writer.writeRaw(Buffer.alloc(0)), true);
  writer.done();
  writer.writeRaw(Buffer.alloc(0)); // queued frames alone still go out
  writer.end();
  await client.until(() => parseChunks(body()).ended, 'the last chunk');
  assert.equal(body().toString('latin1'), `${chunk(payload)}${chunk('data: [DONE]\n\n')}0\r\n\r\n`);
});

test("HTTP/1.1: fail() before open() answers the error's status with OpenAI's JSON body", async (t) => {
  const { client, writer, body } = await h1Stream(t, { 'access-control-allow-origin': '*' });
  writer.data('{"never":"sent"}');
  let inBand = 0;
  writer.fail(upstreamError(), () => inBand++);
  assert.equal(inBand, 0, 'no in-band event before the stream is open');
  assert.equal(writer.closed, true);
  await client.until((b) => {
    const r = parseResponse(b);
    return r !== undefined && r.body.length >= ERROR_BODY.length;
  }, 'the error response');
  const r = parseResponse(client.bytes);
  assert.ok(r);
  assert.equal(r.statusLine, 'HTTP/1.1 503 Service Unavailable');
  assert.equal(r.headers.get('content-type'), 'application/json');
  assert.equal(r.headers.get('content-length'), String(ERROR_BODY.length));
  assert.equal(r.headers.get('access-control-allow-origin'), '*');
  assert.equal(r.headers.has('transfer-encoding'), false);
  assert.equal(r.headers.has('x-accel-buffering'), false, 'no SSE headers on an error');
  assert.equal(body().toString('utf8'), ERROR_BODY);
  assert.equal(writer.opened, false);
});

test('HTTP/1.1: fail() after open() writes the in-band error event and ends the chunked body', async (t) => {
  const { client, writer, body, headArrived } = await h1Stream(t);
  writer.open();
  await headArrived();
  writer.data('{"a":1}');
  writer.flush();
  writer.data('{"b":2}'); // queued: goes out with the error event
  const err = upstreamError();
  let inBand = 0;
  writer.fail(err, () => {
    inBand++;
    writer.data(errorJson(err));
  });
  assert.equal(inBand, 1);
  await client.until(() => parseChunks(body()).ended, 'the last chunk');
  const tail = `data: {"b":2}\n\ndata: ${ERROR_BODY}\n\n`;
  assert.equal(body().toString('latin1'), `${chunk('data: {"a":1}\n\n')}${chunk(tail)}0\r\n\r\n`);
  assert.equal(parseResponse(client.bytes)?.statusLine, 'HTTP/1.1 200 OK', 'the status was committed at open()');
  assert.equal(writer.closed, true);
  assert.equal(client.isClosed, false, 'a failed stream ends its response, not the connection');
});

test('HTTP/1.1: destroy() cuts the connection mid-body, without the last chunk', async (t) => {
  const { client, writer, body, headArrived } = await h1Stream(t);
  writer.open();
  await headArrived();
  writer.data('{"a":1}');
  writer.flush();
  await client.until(() => parseChunks(body()).chunks.length === 1, 'the first chunk');
  writer.data('{"dropped":1}');
  writer.destroy();
  assert.equal(writer.closed, true);
  await client.closed;
  const parsed = parseChunks(body());
  assert.equal(parsed.ended, false, 'the body was not ended as if complete');
  assert.deepEqual(parsed.chunks.map((c) => c.payload), ['data: {"a":1}\n\n']);
  // Writes after the end are dropped, not thrown.
  writer.data('{"late":1}');
  assert.equal(writer.flush(), true);
  assert.equal(writer.writeRaw(Buffer.from('data: {}\n\n')), true);
});

test('HTTP/1.1: flush() returns false once the client stops reading, and onDrain fires when it reads again', async (t) => {
  const { client, writer, body, headArrived } = await h1Stream(t);
  writer.open();
  await headArrived();
  client.socket.pause();
  const frame = `{"z":"${'z'.repeat(64 * 1024)}"}`;
  const frameBytes = Buffer.byteLength(`data: ${frame}\n\n`);
  let sent = 0;
  let accepted = true;
  while (accepted && sent < 256 * 1024 * 1024) {
    writer.data(frame);
    accepted = writer.flush();
    sent += frameBytes;
  }
  assert.equal(accepted, false, `flush() reported a full buffer (after ${sent} bytes)`);
  const drain = watchDrain(writer);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(drain.count(), 0, 'no drain while the client reads nothing');
  client.socket.resume();
  await within(drain.drained, 'onDrain');
  assert.equal(drain.count(), 1);
  writer.done();
  writer.end();
  await client.until(() => parseChunks(body()).ended, 'the last chunk');
  const { chunks } = parseChunks(body());
  const payload = chunks.reduce((n, c) => n + Buffer.byteLength(c.payload), 0);
  assert.equal(payload, sent + Buffer.byteLength('data: [DONE]\n\n'), 'every byte arrived, in whole chunks');
});

// ---------------------------------------------------------------- HTTP/2

async function h2Pair(t: TestContext): Promise<{ client: ClientHttp2Session; responses: ResponseQueue<Http2ServerResponse> }> {
  const responses = new ResponseQueue<Http2ServerResponse>();
  const server = createH2Server();
  const sessions = new Set<Http2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.on('error', () => {});
  });
  server.on('request', (_req, res) => responses.push(res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const client = h2connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  client.on('error', () => {});
  t.after(
    () =>
      new Promise<void>((r) => {
        client.destroy();
        for (const s of sessions) s.destroy();
        server.close(() => r());
      }),
  );
  return { client, responses };
}

/** A GET on the client session, answered by a fresh Http2SseWriter. */
async function h2Stream(t: TestContext, extraHeaders: Record<string, string> = {}) {
  const { client, responses } = await h2Pair(t);
  const stream = client.request({ ':method': 'GET', ':path': '/v1/chat/completions' });
  stream.on('error', () => {});
  const ex = {
    stream,
    headers: undefined as IncomingHttpHeaders | undefined,
    chunks: [] as string[],
    ended: false,
    closed: false,
    text: (): string => ex.chunks.join(''),
  };
  const waiters = new Set<() => void>();
  const wake = (): void => {
    for (const w of [...waiters]) w();
  };
  stream.on('response', (h) => {
    ex.headers = h;
    wake();
  });
  stream.on('data', (d: Buffer) => {
    ex.chunks.push(d.toString('utf8'));
    wake();
  });
  stream.on('end', () => {
    ex.ended = true;
    wake();
  });
  stream.on('close', () => {
    ex.closed = true;
    wake();
  });
  stream.end();
  const wait = (pred: () => boolean, what: string): Promise<void> =>
    until(pred, (w) => {
      waiters.add(w);
      return () => waiters.delete(w);
    }, what);
  const res = await responses.next();
  return { ex, wait, res, writer: new Http2SseWriter(res, extraHeaders) };
}

test('HTTP/2: open() sends HEADERS with 200 and the SSE headers; each flush() is DATA with the queued frames; end() ends the stream', async (t) => {
  const { ex, wait, res, writer } = await h2Stream(t, { 'x-request-id': 'req_2' });
  res.setHeader('content-length', '123');
  writer.open();
  await wait(() => ex.headers !== undefined, 'HEADERS');
  const h = ex.headers as IncomingHttpHeaders;
  assert.equal(h[':status'], 200);
  for (const [k, v] of Object.entries(SSE_HEADERS)) assert.equal(h[k], v, k);
  assert.equal(h['x-request-id'], 'req_2');
  assert.equal(h['content-length'], undefined);
  assert.equal(ex.chunks.length, 0, 'HEADERS went out before any data');
  writer.data('{"a":1}');
  writer.named('response.created', '{"b":2}');
  writer.heartbeat();
  assert.equal(writer.flush(), true);
  const first = 'data: {"a":1}\n\nevent: response.created\ndata: {"b":2}\n\n: keep-alive\n\n';
  await wait(() => ex.text().length >= first.length, 'the first DATA');
  assert.deepEqual(ex.chunks, [first], 'one flush, one DATA frame');
  writer.data('{"c":3}');
  writer.done();
  writer.flush();
  writer.end();
  await wait(() => ex.ended && ex.closed, 'END_STREAM');
  assert.equal(ex.text(), `${first}data: {"c":3}\n\ndata: [DONE]\n\n`);
  assert.equal(ex.stream.rstCode, constants.NGHTTP2_NO_ERROR);
  assert.equal(writer.closed, true);
});

test('HTTP/2: writeRaw() writes the queued frames, then the raw bytes', async (t) => {
  const { ex, wait, writer } = await h2Stream(t);
  writer.open();
  writer.data('{"queued":1}');
  assert.equal(writer.writeRaw(Buffer.from('data: {"raw":1}\n\n')), true);
  writer.end();
  await wait(() => ex.ended, 'END_STREAM');
  assert.equal(ex.text(), 'data: {"queued":1}\n\ndata: {"raw":1}\n\n');
});

test("HTTP/2: fail() before open() answers the error's status with OpenAI's JSON body", async (t) => {
  const { ex, wait, writer } = await h2Stream(t, { 'access-control-allow-origin': '*' });
  writer.data('{"never":"sent"}');
  let inBand = 0;
  writer.fail(upstreamError(), () => inBand++);
  assert.equal(inBand, 0);
  await wait(() => ex.ended, 'END_STREAM');
  const h = ex.headers as IncomingHttpHeaders;
  assert.equal(h[':status'], 503);
  assert.equal(h['content-type'], 'application/json');
  assert.equal(h['content-length'], String(ERROR_BODY.length));
  assert.equal(h['access-control-allow-origin'], '*');
  assert.equal(h['x-accel-buffering'], undefined);
  assert.equal(ex.text(), ERROR_BODY);
});

test('HTTP/2: fail() after open() writes the in-band error event and ends the stream cleanly', async (t) => {
  const { ex, wait, writer } = await h2Stream(t);
  writer.open();
  writer.data('{"a":1}');
  writer.flush();
  const err = upstreamError();
  let inBand = 0;
  writer.fail(err, () => {
    inBand++;
    writer.data(errorJson(err));
  });
  assert.equal(inBand, 1);
  await wait(() => ex.ended && ex.closed, 'END_STREAM');
  assert.equal((ex.headers as IncomingHttpHeaders)[':status'], 200);
  assert.equal(ex.text(), `data: {"a":1}\n\ndata: ${ERROR_BODY}\n\n`);
  assert.equal(ex.stream.rstCode, constants.NGHTTP2_NO_ERROR);
});

/** One HTTP/2 frame as read off the wire. */
interface H2Frame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4 } as const;
const END_STREAM = 0x1;

/**
 * A raw cleartext HTTP/2 client (prior knowledge) that sends one GET on stream 1 and records every frame the server
 * sends, so a test sees what no client library shows: END_STREAM flags and RST_STREAM frames with their codes.
 */
class RawH2Client {
  readonly socket: Socket;
  readonly frames: H2Frame[] = [];
  #buf = Buffer.alloc(0);
  #waiters = new Set<() => void>();

  constructor(port: number) {
    this.socket = connect(port, '127.0.0.1');
    this.socket.on('error', () => {});
    const authority = Buffer.from('127.0.0.1');
    // HPACK: :method GET (static 2), :scheme http (6), :path / (4), :authority literal with static name 1.
    const block = Buffer.concat([Buffer.from([0x82, 0x86, 0x84, 0x01, authority.length]), authority]);
    this.socket.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'), frame(FRAME.SETTINGS, 0, 0, Buffer.alloc(0)), frame(FRAME.HEADERS, 0x4 | END_STREAM, 1, block)]));
    this.socket.on('data', (d: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, d]);
      while (this.#buf.length >= 9) {
        const len = this.#buf.readUIntBE(0, 3);
        if (this.#buf.length < 9 + len) break;
        const f: H2Frame = { type: this.#buf[3] as number, flags: this.#buf[4] as number, streamId: this.#buf.readUInt32BE(5) & 0x7fffffff, payload: this.#buf.subarray(9, 9 + len) };
        this.#buf = this.#buf.subarray(9 + len);
        this.frames.push(f);
        if (f.type === FRAME.SETTINGS && (f.flags & 0x1) === 0) this.socket.write(frame(FRAME.SETTINGS, 0x1, 0, Buffer.alloc(0)));
      }
      for (const w of [...this.#waiters]) w();
    });
  }

  /** Frames of stream 1. */
  get stream(): H2Frame[] {
    return this.frames.filter((f) => f.streamId === 1);
  }

  until(pred: () => boolean, what: string): Promise<void> {
    return until(pred, (wake) => {
      this.#waiters.add(wake);
      return () => this.#waiters.delete(wake);
    }, what);
  }
}

function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId, 5);
  return Buffer.concat([head, payload]);
}

test('HTTP/2: destroy() resets the stream: RST_STREAM, never END_STREAM', async (t) => {
  const responses = new ResponseQueue<Http2ServerResponse>();
  const server = createH2Server();
  const sessions = new Set<Http2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.on('error', () => {});
  });
  server.on('request', (_req, res) => responses.push(res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const client = new RawH2Client((server.address() as AddressInfo).port);
  t.after(
    () =>
      new Promise<void>((r) => {
        client.socket.destroy();
        for (const s of sessions) s.destroy();
        server.close(() => r());
      }),
  );
  const writer = new Http2SseWriter(await responses.next());
  writer.open();
  writer.data('{"a":1}');
  writer.flush();
  await client.until(() => client.stream.some((f) => f.type === FRAME.DATA), 'the first DATA frame');
  writer.data('{"dropped":1}');
  writer.destroy();
  await client.until(() => client.stream.some((f) => f.type === FRAME.RST_STREAM), 'RST_STREAM');
  const frames = client.stream;
  assert.deepEqual(frames.map((f) => f.type), [FRAME.HEADERS, FRAME.DATA, FRAME.RST_STREAM]);
  assert.equal(frames.some((f) => (f.flags & END_STREAM) !== 0), false, 'the answer is not passed off as complete');
  assert.equal(frames[1]?.payload.toString('utf8'), 'data: {"a":1}\n\n', 'the queued frame was dropped');
});

test('HTTP/2: a stream cut by destroy() is an error for the client (reset with a non-zero code), not a complete answer', async (t) => {
  const { ex, wait, writer } = await h2Stream(t);
  writer.open();
  writer.data('{"a":1}');
  writer.flush();
  await wait(() => ex.chunks.length > 0, 'the first DATA');
  writer.destroy();
  await wait(() => ex.closed, 'the stream to close');
  assert.equal(ex.text(), 'data: {"a":1}\n\n');
  assert.notEqual(ex.stream.rstCode, 0, 'NO_ERROR would read as a complete response');
  assert.equal(ex.ended, false);
});

test('HTTP/2: closed is true once the stream is destroyed or reset by the client; later writes are dropped, not backpressure', async (t) => {
  const first = await h2Stream(t);
  first.writer.open();
  first.writer.destroy();
  await first.wait(() => first.ex.closed, 'the stream to close');
  assert.equal(first.writer.closed, true);
  first.writer.data('{}');
  assert.equal(first.writer.flush(), true);
  const second = await h2Stream(t);
  second.writer.open();
  const gone = new Promise<void>((r) => second.res.once('close', () => r()));
  second.ex.stream.close(constants.NGHTTP2_CANCEL);
  await gone;
  assert.equal(second.writer.closed, true);
});

test('HTTP/2: flush() returns false once the client stops reading, and onDrain fires when it reads again', async (t) => {
  const { ex, wait, writer } = await h2Stream(t);
  writer.open();
  await wait(() => ex.headers !== undefined, 'HEADERS');
  ex.stream.pause();
  // 1 MB: far more than the flow-control windows (64 KB by default) let through to a client that reads nothing.
  const big = `{"z":"${'z'.repeat(1024 * 1024)}"}`;
  writer.data(big);
  assert.equal(writer.flush(), false, 'flush() reported a full buffer');
  const drain = watchDrain(writer);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(drain.count(), 0, 'no drain while the client reads nothing');
  ex.stream.resume();
  await within(drain.drained, 'onDrain');
  writer.end();
  await wait(() => ex.ended, 'END_STREAM');
  assert.equal(drain.count(), 1);
  assert.equal(ex.text(), `data: ${big}\n\n`);
});
