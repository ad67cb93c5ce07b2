import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import type { Dispatcher } from 'undici';
import type { IncomingHttpHeaders } from 'node:http';
import { H1Pool, type H1PoolOptions } from '../src/upstream/h1/pool.ts';
import { rawUpstream, type RawRequest } from './helpers/raw-upstream.ts';
import { MALFORMED } from './helpers/h1-responses.ts';
import { testCert } from './helpers/tls.ts';
import { once } from './helpers/gateway.ts';

// Sluice's own HTTP/1.1 client (src/upstream/h1/) against real servers on loopback: raw TCP servers that write the
// exact bytes of each test, a TLS server, a listener that never accepts. No socket is mocked.

interface Outcome {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  trailers: IncomingHttpHeaders;
}

/** A handler recording undici's callbacks in order; `done` settles with the response or the error. */
class Recorder implements Dispatcher.DispatchHandler {
  calls: string[] = [];
  controller: Dispatcher.DispatchController | undefined;
  status = 0;
  headers: IncomingHttpHeaders = {};
  parts: Buffer[] = [];
  onData: ((chunk: Buffer, c: Dispatcher.DispatchController) => void) | undefined;
  readonly done: Promise<Outcome>;
  #resolve!: (o: Outcome) => void;
  #reject!: (e: Error) => void;

  constructor() {
    this.done = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.done.catch(() => {});
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.calls.push('start');
    this.controller = controller;
  }

  onResponseStart(_c: Dispatcher.DispatchController, status: number, headers: IncomingHttpHeaders): void {
    this.calls.push(`head ${status}`);
    this.status = status;
    this.headers = headers;
  }

  onResponseData(c: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.calls.at(-1) !== 'data') this.calls.push('data');
    this.parts.push(Buffer.from(chunk));
    this.onData?.(chunk, c);
  }

  onResponseEnd(_c: Dispatcher.DispatchController, trailers: IncomingHttpHeaders): void {
    this.calls.push('end');
    this.#resolve({ status: this.status, headers: this.headers, body: Buffer.concat(this.parts).toString('latin1'), trailers });
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    this.calls.push(`error ${(err as { code?: string }).code ?? err.message}`);
    this.#reject(err);
  }
}

function send(pool: H1Pool, options: Partial<Dispatcher.DispatchOptions> = {}): Recorder {
  const r = new Recorder();
  pool.dispatch({ method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, body: '{"stream":true}', ...options }, r);
  return r;
}

const codeOf = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
  } catch (err) {
    return String((err as { code?: unknown }).code);
  }
  return 'no error';
};

function pool(t: TestContext, url: string, options: H1PoolOptions = {}): H1Pool {
  const p = new H1Pool(new URL(url).origin, { connectTimeoutMs: 2_000, ...options });
  t.after(() => p.destroy());
  return p;
}

const chunked = (...pieces: string[]): string =>
  `HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n${pieces.map((p) => `${Buffer.byteLength(p).toString(16)}\r\n${p}\r\n`).join('')}0\r\n\r\n`;

const ok = (body: string, extra = ''): string => `HTTP/1.1 200 OK\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` (at most `ms`). */
async function until(cond: () => boolean, ms = 5_000): Promise<void> {
  for (let waited = 0; !cond(); waited += 10) {
    if (waited >= ms) throw new Error('condition not met in time');
    await sleep(10);
  }
}

test('the request goes out as one write, with host, length and the headers given; the answer comes back whole', async (t) => {
  const chunks: Buffer[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('data', (d: Buffer) => {
      chunks.push(d);
      if (Buffer.concat(chunks).includes('"stream":true}')) s.write(chunked('data: a\n\n', 'data: b\n\n'));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  const port = (server.address() as AddressInfo).port;
  const p = pool(t, `http://127.0.0.1:${port}`);
  const r = send(p, { headers: { 'content-type': 'application/json', authorization: 'Bearer k', connection: 'close', 'content-length': '999' } });
  const out = await r.done;
  assert.equal(out.status, 200);
  assert.equal(out.body, 'data: a\n\ndata: b\n\n');
  assert.deepEqual(r.calls, ['start', 'head 200', 'data', 'end']);
  const text = Buffer.concat(chunks).toString();
  assert.equal(chunks.length, 1, 'head and body in one write');
  assert.equal(
    text,
    `POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\nconnection: keep-alive\r\ncontent-type: application/json\r\nauthorization: Bearer k\r\ncontent-length: 15\r\n\r\n{"stream":true}`,
    "the caller's connection and content-length are replaced by the client's own",
  );
});

test('every malformed answer fails with its code, nothing hangs, and its connection is closed, never reused', async (t) => {
  const cases = [...MALFORMED];
  let i = 0;
  const up = await rawUpstream(t, (req) => req.socket.write(cases[i]?.raw ?? ''));
  const p = pool(t, up.url);
  const sockets = new Set<Socket>();
  for (; i < cases.length; i++) {
    const c = cases[i]!;
    const r = send(p);
    const closed = up.nextClose();
    assert.equal(await codeOf(r.done), c.code, c.name);
    await closed;
    sockets.add(up.requests.at(-1)!.socket);
    assert.equal(p.idle, 0, `${c.name}: not kept`);
    assert.ok(!r.calls.includes('end'), `${c.name}: never ends as if whole`);
    assert.equal(r.calls.filter((x) => x.startsWith('error')).length, 1, `${c.name}: one error`);
  }
  assert.equal(sockets.size, cases.length, 'each request on a new connection');
  assert.equal(up.open(), 0);
});

test('a chunked answer written one byte at a time parses whole, and its connection is then reused', async (t) => {
  const raw = Buffer.from(
    'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-h: 1\r\n\r\n9;e=1\r\ndata: a\n\n\r\n9\r\ndata: b\n\n\r\n0\r\nx-trailer: t\r\n\r\n',
  );
  const up = await rawUpstream(t, (req) => {
    void (async () => {
      for (const b of raw) {
        if (req.socket.destroyed) return;
        req.socket.write(Buffer.from([b]));
        await new Promise((r) => setImmediate(r));
      }
    })();
  });
  const p = pool(t, up.url);
  const out = await send(p).done;
  assert.equal(out.body, 'data: a\n\ndata: b\n\n');
  assert.equal(out.headers['x-h'], '1');
  assert.equal(out.trailers['x-trailer'], 't');
  const again = await send(p).done;
  assert.equal(again.body, out.body);
  assert.equal(up.requests.length, 2);
  assert.equal(up.requests[0]!.socket, up.requests[1]!.socket, 'the same connection carried both');
});

test('an endless header is refused at the limit and its connection closed', async (t) => {
  let written = 0;
  const up = await rawUpstream(t, (req) => {
    req.socket.write('HTTP/1.1 200 OK\r\nx-endless: ');
    const kib = 'a'.repeat(1024);
    const pump = (): void => {
      while (!req.socket.destroyed && written < 64 * 1024 * 1024) {
        written += kib.length;
        if (!req.socket.write(kib)) return void req.socket.once('drain', pump);
      }
    };
    pump();
  });
  const p = pool(t, up.url);
  const closed = up.nextClose();
  assert.equal(await codeOf(send(p).done), 'UND_ERR_HEADERS_OVERFLOW');
  await closed;
  assert.ok(written < 16 * 1024 * 1024, `the server wrote ${written} bytes before the close`);
});

test('a 1 GB Content-Length: a paused reader holds the server back (the socket buffers, not the heap); abort closes it', async (t) => {
  let written = 0;
  const up = await rawUpstream(t, (req) => {
    req.socket.write('HTTP/1.1 200 OK\r\ncontent-length: 1000000000\r\n\r\n');
    const piece = Buffer.alloc(64 * 1024, 'x');
    const pump = (): void => {
      while (!req.socket.destroyed && written < 1e9) {
        written += piece.length;
        if (!req.socket.write(piece)) return void req.socket.once('drain', pump);
      }
    };
    pump();
  });
  const p = pool(t, up.url);
  const r = send(p);
  let received = 0;
  r.onData = (chunk, c) => {
    received += chunk.length;
    c.pause();
  };
  r.parts = [];
  await until(() => received > 0);
  await sleep(300);
  const a = written;
  await sleep(300);
  assert.equal(written, a, 'the server is held back while the reader is paused');
  assert.ok(received <= 128 * 1024, `the paused reader got ${received} bytes (one read)`);
  assert.ok(written < 32 * 1024 * 1024, `the server wrote ${written} bytes`);
  const closed = up.nextClose();
  r.controller!.abort(new Error('enough'));
  assert.equal(await codeOf(r.done), 'undefined');
  await closed;
  assert.deepEqual(r.calls.slice(-1), ['error enough']);
  assert.equal(p.connections, 0);
});

test('pause and resume: a paused stream gets nothing until resumed, then the rest of the read and the end', async (t) => {
  const pieces = Array.from({ length: 50 }, (_, i) => `data: ${i}\n\n`);
  const up = await rawUpstream(t, (req) => req.socket.write(chunked(...pieces)));
  const p = pool(t, up.url);
  const r = send(p);
  let paused = 0;
  r.onData = (_chunk, c) => {
    c.pause();
    paused++;
  };
  await until(() => paused === 1);
  await sleep(50);
  assert.equal(r.parts.length, 1, 'nothing while paused');
  for (let i = 0; i < 100 && !r.calls.includes('end'); i++) {
    r.controller!.resume();
    await sleep(1);
  }
  const out = await r.done;
  assert.equal(out.body, pieces.join(''));
  assert.equal(p.idle, 1, 'kept for reuse after a clean end');
});

test('keep-alive: idle connections are reused last-in first-out', async (t) => {
  const held: RawRequest[] = [];
  const up = await rawUpstream(t, (req) => {
    if (req.body.includes('hold')) held.push(req);
    else req.socket.write(ok('fine'));
  });
  const p = pool(t, up.url);
  const a = send(p, { body: 'hold a' });
  const b = send(p, { body: 'hold b' });
  await until(() => held.length === 2);
  const [ra, rb] = held as [RawRequest, RawRequest];
  assert.notEqual(ra.socket, rb.socket);
  ra.socket.write(ok('a'));
  await a.done;
  rb.socket.write(ok('b'));
  await b.done;
  assert.equal(p.idle, 2);
  await send(p).done;
  assert.equal(up.requests.at(-1)!.socket, rb.socket, 'the most recently released connection first');
  await send(p).done;
  assert.equal(up.requests.at(-1)!.socket, rb.socket);
  assert.equal(p.connections, 2);
});

test('the connection cap: requests beyond it wait, in order, and go out as connections free', async (t) => {
  const held: RawRequest[] = [];
  const up = await rawUpstream(t, (req) => held.push(req));
  const p = pool(t, up.url, { connections: 2 });
  const rs = ['1', '2', '3', '4', '5'].map((n) => send(p, { body: n }));
  await until(() => held.length === 2);
  await sleep(50);
  assert.equal(held.length, 2, 'two at once');
  assert.equal(p.queued, 3);
  assert.equal(p.connections, 2);
  // An aborted request leaves the queue without being sent.
  rs[2]!.controller!.abort(new Error('gone'));
  assert.equal(await codeOf(rs[2]!.done), 'undefined');
  for (let i = 0; i < 4; i++) {
    await until(() => held.length > i);
    held[i]!.socket.write(ok(`r${held[i]!.body}`));
  }
  const bodies = await Promise.all([rs[0]!, rs[1]!, rs[3]!, rs[4]!].map(async (r) => (await r.done).body));
  assert.deepEqual(bodies, ['r1', 'r2', 'r4', 'r5']);
  assert.deepEqual(held.map((r) => r.body), ['1', '2', '4', '5'], 'sent in order, the aborted one never');
  assert.equal(new Set(held.map((r) => r.socket)).size, 2, 'on the two connections');
});

test('an idle connection the server closed is dropped and never used', async (t) => {
  const up = await rawUpstream(t, (req) => {
    req.socket.write(ok('x'));
    if (req.body === 'then close') setTimeout(() => req.socket.end(), 20);
  });
  const p = pool(t, up.url);
  await send(p, { body: 'then close' }).done;
  await until(() => p.idle === 0);
  assert.equal(p.connections, 0);
  const out = await send(p).done;
  assert.equal(out.body, 'x');
  assert.notEqual(up.requests[0]!.socket, up.requests[1]!.socket);
});

test('Connection: close, HTTP/1.0, bytes after the answer, or a short Keep-Alive timeout: not reused', async (t) => {
  const answers: Record<string, string> = {
    close: ok('c', 'connection: close\r\n'),
    http10: 'HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\nh',
    extra: `${ok('e')}HTTP/1.1 200 OK\r\n`,
    ka1: ok('k', 'keep-alive: timeout=1\r\n'),
    untilClose: 'HTTP/1.1 200 OK\r\n\r\nrest',
  };
  const up = await rawUpstream(t, (req) => {
    req.socket.write(answers[req.body] ?? '');
    if (req.body === 'untilClose') req.socket.end();
  });
  const p = pool(t, up.url);
  for (const [name, want] of [['close', 'c'], ['http10', 'h'], ['extra', 'e'], ['ka1', 'k'], ['untilClose', 'rest']] as const) {
    const closed = up.nextClose();
    assert.equal((await send(p, { body: name }).done).body, want, name);
    await closed;
    assert.equal(p.idle, 0, name);
  }
  assert.equal(new Set(up.requests.map((r) => r.socket)).size, 5);
});

test("the server's Keep-Alive timeout (less a second) closes an idle connection", async (t) => {
  const up = await rawUpstream(t, (req) => req.socket.write(ok('k', 'keep-alive: timeout=2\r\n')));
  const p = pool(t, up.url);
  await send(p).done;
  assert.equal(p.idle, 1);
  const started = Date.now();
  await up.nextClose();
  const after = Date.now() - started;
  assert.ok(after >= 800 && after < 1_900, `closed after ${after} ms`);
  assert.equal(p.connections, 0);
});

test('a connection that breaks mid-answer fails with the code undici gives (and the body never ends as whole)', async (t) => {
  const up = await rawUpstream(t, (req) => {
    if (req.body === 'cut-length') {
      req.socket.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial');
      setTimeout(() => req.socket.end(), 20);
    } else if (req.body === 'cut-chunked') {
      req.socket.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n');
      setTimeout(() => req.socket.end(), 20);
    } else if (req.body === 'before-head') req.socket.end();
    else if (req.body === 'mid-head') {
      req.socket.write('HTTP/1.1 200 OK\r\ncontent-le');
      setTimeout(() => req.socket.end(), 20);
    } else if (req.body === 'reset') {
      req.socket.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial');
      setTimeout(() => req.socket.resetAndDestroy(), 20);
    }
  });
  const p = pool(t, up.url);
  for (const [body, code, headed] of [
    ['cut-length', 'UND_ERR_SOCKET', true],
    ['cut-chunked', 'UND_ERR_SOCKET', true],
    ['before-head', 'UND_ERR_SOCKET', false],
    ['mid-head', 'UND_ERR_SOCKET', false],
    ['reset', 'ECONNRESET', true],
  ] as const) {
    const r = send(p, { body });
    assert.equal(await codeOf(r.done), code, body);
    assert.equal(r.calls.includes('head 200'), headed, body);
    assert.ok(!r.calls.includes('end'));
  }
  assert.equal(p.connections, 0);
});

test('connect refused: ECONNREFUSED, as from undici', async (t) => {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  const p = pool(t, `http://127.0.0.1:${port}`);
  const r = send(p);
  assert.equal(await codeOf(r.done), 'ECONNREFUSED');
  assert.deepEqual(r.calls, ['start', 'error ECONNREFUSED']);
  assert.equal(p.connections, 0);
});

test('connect timeout: UND_ERR_CONNECT_TIMEOUT when the handshake never completes', async (t) => {
  // A listener with a full accept queue that never accepts: Linux drops further SYNs, so connect() hangs.
  const py = spawn('python3', ['-c', 'import socket,sys,time\ns=socket.socket()\ns.bind(("127.0.0.1",0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(60)'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => py.kill());
  const port = Number((await once<Buffer>(py.stdout!, 'data')).toString().trim());
  const fillers: Socket[] = [];
  t.after(() => fillers.forEach((s) => s.destroy()));
  for (let i = 0; i < 3; i++) fillers.push(connect(port, '127.0.0.1').on('error', () => {}));
  await sleep(200);
  const p = pool(t, `http://127.0.0.1:${port}`, { connectTimeoutMs: 300 });
  const started = Date.now();
  assert.equal(await codeOf(send(p).done), 'UND_ERR_CONNECT_TIMEOUT');
  const took = Date.now() - started;
  assert.ok(took >= 250 && took < 3_000, `timed out after ${took} ms`);
  assert.equal(p.connections, 0);
});

test('TLS upstream: the certificate is checked, and the connection is kept alive', async (t) => {
  const cert = await testCert();
  const { readFileSync } = await import('node:fs');
  const sockets = new Set<Socket>();
  const server = createTlsServer({ cert: cert.cert, key: readFileSync(cert.keyFile) }, (s) => {
    sockets.add(s);
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString();
      if (buf.endsWith('"stream":true}')) {
        buf = '';
        s.write(chunked('data: secure\n\n'));
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  const port = (server.address() as AddressInfo).port;
  const untrusted = pool(t, `https://localhost:${port}`);
  assert.equal(await codeOf(send(untrusted).done), 'DEPTH_ZERO_SELF_SIGNED_CERT', 'an unknown certificate is refused');
  const p = pool(t, `https://localhost:${port}`, { tls: { ca: cert.cert } });
  assert.equal((await send(p).done).body, 'data: secure\n\n');
  assert.equal((await send(p).done).body, 'data: secure\n\n');
  assert.equal(sockets.size, 1, 'one connection for both requests (the refused handshake never completed)');
});

test('destroy(): requests in flight and queued fail with UND_ERR_DESTROYED; later ones too', async (t) => {
  const up = await rawUpstream(t, () => {});
  const p = pool(t, up.url, { connections: 1 });
  const a = send(p);
  const b = send(p);
  await until(() => up.requests.length === 1);
  await p.destroy();
  assert.equal(await codeOf(a.done), 'UND_ERR_DESTROYED');
  assert.equal(await codeOf(b.done), 'UND_ERR_DESTROYED');
  assert.equal(await codeOf(send(p).done), 'UND_ERR_DESTROYED');
  await until(() => up.open() === 0);
});

test('a large body handed over as a stream is sent whole with its length', async (t) => {
  const { Readable } = await import('node:stream');
  const up = await rawUpstream(t, (req) => req.socket.write(ok(String(req.body.length))));
  const p = pool(t, up.url);
  const big = Buffer.alloc(100_000, 'p');
  const out = await send(p, { body: Readable.from([big.subarray(0, 50_000), big.subarray(50_000)]), headers: { 'content-length': '100000' } }).done;
  assert.equal(out.body, '100000');
});

test('a paused reader loses nothing when the server sends the rest and closes meanwhile', async (t) => {
  const pieces = Array.from({ length: 200 }, (_, i) => `data: ${i} ${'x'.repeat(100)}\n\n`);
  const up = await rawUpstream(t, (req) => {
    req.socket.write(`HTTP/1.1 200 OK\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n`);
    req.socket.write(chunked(...pieces).split('\r\n\r\n').slice(1).join('\r\n\r\n'));
    req.socket.end();
  });
  const p = pool(t, up.url);
  const r = send(p);
  let paused = false;
  r.onData = (_chunk, c) => {
    if (!paused) {
      paused = true;
      c.pause();
    }
  };
  await until(() => paused);
  await sleep(200); // the server has written everything and closed its side

  assert.ok(!r.calls.includes('end') && !r.calls.some((c) => c.startsWith('error')), 'nothing settled while paused');
  r.controller!.resume();
  const out = await r.done;
  assert.equal(out.body, pieces.join(''));
  assert.equal(p.connections, 0, 'Connection: close is not kept');
});

test('bytes on an idle connection close it; the next request takes a new one', async (t) => {
  const up = await rawUpstream(t, (req) => {
    req.socket.write(ok('x'));
    if (req.body === 'then junk') setTimeout(() => req.socket.write('HTTP/1.1 200 OK\r\n\r\n'), 20);
  });
  const p = pool(t, up.url);
  const closed = up.nextClose();
  await send(p, { body: 'then junk' }).done;
  await closed;
  assert.equal(p.connections, 0);
  assert.equal((await send(p).done).body, 'x');
  assert.notEqual(up.requests[0]!.socket, up.requests[1]!.socket);
});

test('malformed answers written one byte at a time fail the same way', async (t) => {
  const picked = MALFORMED.filter((c) => /Content-Length with Transfer-Encoding|not hex|differing Content-Length fields|bare CR in a field|101/.test(c.name));
  assert.equal(picked.length, 5);
  let current = '';
  const up = await rawUpstream(t, (req) => {
    void (async () => {
      for (const b of Buffer.from(current, 'latin1')) {
        if (req.socket.destroyed) return;
        req.socket.write(Buffer.from([b]));
        await new Promise((r) => setImmediate(r));
      }
    })();
  });
  const p = pool(t, up.url);
  for (const c of picked) {
    current = c.raw;
    const r = send(p);
    assert.equal(await codeOf(r.done), c.code, c.name);
    assert.ok(!r.calls.includes('end'));
  }
  await until(() => up.open() === 0);
  assert.equal(new Set(up.requests.map((r) => r.socket)).size, picked.length, 'no connection reused after an error');
});
