import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { ResponseParser, DEFAULT_LIMITS, type ResponseHead } from '../src/upstream/h1/response-parser.ts';
import { MALFORMED } from './helpers/h1-responses.ts';

// The parser of Sluice's own HTTP/1.1 client (src/upstream/h1/response-parser.ts), fed the way a socket may deliver
// bytes: whole, split in two at every byte boundary, and one byte at a time. Every split must give the same answer
// (or the same error code).

interface Parsed {
  heads: Array<Pick<ResponseHead, 'status' | 'statusText' | 'framing' | 'keepAlive' | 'keepAliveMs'> & { headers: Record<string, unknown> }>;
  body: string;
  trailers: Record<string, unknown> | undefined;
  /** Bytes left unconsumed after the response ended. */
  rest: number;
}

/** Parses `pieces` in order as one response to `method`; `eof` closes the connection after them. */
function parse(pieces: Buffer[], method = 'POST', eof = false): Parsed {
  const out: Parsed = { heads: [], body: '', trailers: undefined, rest: 0 };
  const body: Buffer[] = [];
  const parser = new ResponseParser({
    onHead(head) {
      out.heads.push({ status: head.status, statusText: head.statusText, framing: head.framing, keepAlive: head.keepAlive, keepAliveMs: head.keepAliveMs, headers: { ...head.headers } });
      return true;
    },
    onBody(chunk) {
      body.push(Buffer.from(chunk));
      return true;
    },
    onEnd(trailers: IncomingHttpHeaders) {
      out.trailers = { ...trailers };
    },
  });
  parser.expect(method);
  for (const p of pieces) {
    const at = parser.execute(p);
    if (out.trailers !== undefined) out.rest += p.length - at;
    else assert.equal(at, p.length, 'nothing left unparsed before the end');
  }
  if (eof) assert.ok(parser.eof(), 'the close ends the body');
  out.body = Buffer.concat(body).toString('latin1');
  return out;
}

/** Every way to deliver `raw`: whole, in two pieces split at each index, byte by byte. */
function splits(raw: Buffer): Buffer[][] {
  const all: Buffer[][] = [[raw]];
  for (let i = 1; i < raw.length; i++) all.push([raw.subarray(0, i), raw.subarray(i)]);
  all.push([...raw].map((b) => Buffer.from([b])));
  return all;
}

const errorCode = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    return String((err as { code?: unknown }).code);
  }
  return 'no error';
};

const valid: Array<{ name: string; raw: string; method?: string; eof?: boolean; check(p: Parsed): void }> = [
  {
    name: 'a Content-Length body',
    raw: 'HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: 11\r\n\r\nhello world',
    check: (p) => {
      assert.equal(p.heads[0]?.status, 200);
      assert.equal(p.heads[0]?.framing, 'length');
      assert.equal(p.heads[0]?.keepAlive, true);
      assert.equal(p.heads[0]?.headers['content-type'], 'text/event-stream');
      assert.equal(p.body, 'hello world');
    },
  },
  {
    name: 'a chunked body with chunk extensions and trailers',
    raw: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6 ; a="b;c"\r\n world\r\nA\r\n0123456789\r\n000000000000000001\r\n!\r\n0\r\nx-trailer: yes\r\nx-other: 2\r\n\r\n',
    check: (p) => {
      assert.equal(p.heads[0]?.framing, 'chunked');
      assert.equal(p.body, 'hello world0123456789!', 'leading zeros in a size are fine');
      assert.deepEqual(p.trailers, { 'x-trailer': 'yes', 'x-other': '2' });
    },
  },
  {
    name: 'interim answers (100, 103 with fields, 102) skipped before the final one',
    raw: 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>; rel=preload\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok',
    check: (p) => {
      assert.equal(p.heads.length, 1, 'only the final answer is reported');
      assert.equal(p.heads[0]?.status, 201);
      assert.equal(p.heads[0]?.headers['link'], undefined, "an interim answer's fields are not the final one's");
      assert.equal(p.body, 'ok');
    },
  },
  {
    name: '204 has no body whatever its headers say; what follows is not consumed',
    raw: 'HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\nhello',
    check: (p) => {
      assert.equal(p.heads[0]?.framing, 'none');
      assert.equal(p.body, '');
      assert.equal(p.rest, 5);
    },
  },
  {
    name: '304 has no body',
    raw: 'HTTP/1.1 304 Not Modified\r\ntransfer-encoding: chunked\r\n\r\n',
    check: (p) => {
      assert.equal(p.heads[0]?.framing, 'none');
      assert.deepEqual(p.trailers, {});
    },
  },
  {
    name: 'an answer to HEAD has no body',
    method: 'HEAD',
    raw: 'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n',
    check: (p) => {
      assert.equal(p.heads[0]?.framing, 'none');
      assert.equal(p.body, '');
    },
  },
  {
    name: 'a body delimited by the close; the connection is not kept',
    raw: 'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end',
    eof: true,
    check: (p) => {
      assert.equal(p.heads[0]?.framing, 'close');
      assert.equal(p.heads[0]?.keepAlive, false);
      assert.equal(p.body, 'until the end');
    },
  },
  {
    name: 'bare LF line ends (RFC 9112 §2.2), in the head, chunk lines and after chunk data',
    raw: 'HTTP/1.1 200 OK\ntransfer-encoding: chunked\n\n3\nabc\n0\n\n',
    check: (p) => assert.equal(p.body, 'abc'),
  },
  {
    name: 'obs-fold replaced by one space (RFC 9112 §5.2)',
    raw: 'HTTP/1.1 200 OK\r\nx-folded: one\r\n   two\r\n\tthree\r\ncontent-length: 0\r\n\r\n',
    check: (p) => assert.equal(p.heads[0]?.headers['x-folded'], 'one two three'),
  },
  {
    name: 'repeated equal Content-Length (two fields, and a list) is one length',
    raw: 'HTTP/1.1 200 OK\r\ncontent-length: 3\r\nContent-Length: 3, 3\r\n\r\nabc',
    check: (p) => assert.equal(p.body, 'abc'),
  },
  {
    name: 'repeated fields become an array; names are lower-cased; values trimmed; no reason phrase',
    raw: 'HTTP/1.1 200\r\nSet-Cookie: a=1\r\nset-cookie: b=2 \r\nX-Empty:\r\ncontent-length: 0\r\n\r\n',
    check: (p) => {
      assert.deepEqual(p.heads[0]?.headers['set-cookie'], ['a=1', 'b=2']);
      assert.equal(p.heads[0]?.headers['x-empty'], '');
      assert.equal(p.heads[0]?.statusText, '');
    },
  },
  {
    name: 'HTTP/1.0 and Connection: close are not kept alive; Keep-Alive: timeout= is read',
    raw: 'HTTP/1.1 200 OK\r\nconnection: keep-alive, Close\r\nkeep-alive: timeout=5, max=100\r\ncontent-length: 0\r\n\r\n',
    check: (p) => {
      assert.equal(p.heads[0]?.keepAlive, false);
      assert.equal(p.heads[0]?.keepAliveMs, 5_000);
    },
  },
  {
    name: 'an HTTP/1.0 answer is never kept alive',
    raw: 'HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok',
    check: (p) => {
      assert.equal(p.heads[0]?.keepAlive, false);
      assert.equal(p.body, 'ok');
    },
  },
];

for (const c of valid) {
  test(`parses ${c.name}, split at every byte boundary`, () => {
    const raw = Buffer.from(c.raw, 'latin1');
    const whole = parse([raw], c.method, c.eof);
    c.check(whole);
    for (const pieces of splits(raw)) assert.deepEqual(parse(pieces, c.method, c.eof), whole, `split into ${pieces.map((p) => p.length).join('+')}`);
  });
}


for (const c of MALFORMED) {
  test(`refuses ${c.name} (${c.code}), however it is split`, () => {
    const raw = Buffer.from(c.raw, 'latin1');
    const all = raw.length > 600 ? [[raw], [...raw].map((b) => Buffer.from([b]))] : splits(raw);
    for (const pieces of all) assert.equal(errorCode(() => parse(pieces)), c.code, `split into ${pieces.map((p) => p.length).join('+')}`);
  });
}

test('an endless header line is refused at the limit, not buffered', () => {
  const parser = new ResponseParser({ onHead: () => true, onBody: () => true, onEnd() {} });
  parser.expect('POST');
  parser.execute(Buffer.from('HTTP/1.1 200 OK\r\nx-endless: '));
  const kib = Buffer.alloc(1024, 'a');
  let fed = 0;
  const code = errorCode(() => {
    for (let i = 0; i < 1024 * 1024; i++) {
      parser.execute(kib);
      fed += kib.length;
    }
  });
  assert.equal(code, 'UND_ERR_HEADERS_OVERFLOW');
  assert.ok(fed <= DEFAULT_LIMITS.maxHeadBytes, `refused after ${fed} bytes`);
});

test('an endless chunk-size line is refused at its limit', () => {
  const parser = new ResponseParser({ onHead: () => true, onBody: () => true, onEnd() {} });
  parser.expect('POST');
  parser.execute(Buffer.from('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n'));
  let fed = 0;
  const code = errorCode(() => {
    for (let i = 0; i < 1024 * 1024; i++) {
      parser.execute(Buffer.from('0000000000000000'));
      fed += 16;
    }
  });
  assert.equal(code, 'HPE_CHUNK_EXTENSIONS_OVERFLOW');
  assert.ok(fed <= DEFAULT_LIMITS.maxChunkLineBytes, `refused after ${fed} bytes`);
});

test('a 1 GB Content-Length body is handed on piece by piece, never buffered', () => {
  let seen = 0;
  let largest = 0;
  const parser = new ResponseParser({
    onHead: () => true,
    onBody: (chunk) => {
      seen += chunk.length;
      largest = Math.max(largest, chunk.length);
      return true;
    },
    onEnd() {},
  });
  parser.expect('POST');
  parser.execute(Buffer.from('HTTP/1.1 200 OK\r\ncontent-length: 1000000000\r\n\r\n'));
  const piece = Buffer.alloc(64 * 1024, 'x');
  for (let i = 0; i < 100; i++) parser.execute(piece);
  assert.equal(seen, 100 * piece.length);
  assert.equal(largest, piece.length, 'each read is passed on as it came');
  assert.equal(parser.eof(), false, 'closing before the 1 GB is an incomplete response');
});

test('a body piece returning false pauses parsing there; the rest parses when called again', () => {
  const raw = Buffer.from('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n1\r\nb\r\n1\r\nc\r\n0\r\n\r\nEXTRA');
  const got: string[] = [];
  let ended = false;
  const parser = new ResponseParser({
    onHead: () => true,
    onBody: (chunk) => {
      got.push(chunk.toString());
      return false;
    },
    onEnd: () => {
      ended = true;
    },
  });
  parser.expect('POST');
  let at = 0;
  const stops: number[] = [];
  while (!ended) {
    at = parser.execute(raw, at);
    stops.push(at);
  }
  assert.deepEqual(got, ['a', 'b', 'c']);
  assert.equal(stops.length, 4, 'one stop per piece, then the end');
  assert.equal(raw.subarray(at).toString(), 'EXTRA', 'bytes after the response are left unconsumed');
  assert.ok(parser.idle);
});
