import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createParser, SseBufferOverflowError, type SseEvent } from '../src/sse/parser.ts';

function parseAll(chunks: Uint8Array[], maxBufferBytes?: number): { events: SseEvent[]; comments: string[] } {
  const events: SseEvent[] = [];
  const comments: string[] = [];
  const p = createParser({ onEvent: (e) => events.push(e), onComment: (c) => comments.push(c) }, maxBufferBytes === undefined ? {} : { maxBufferBytes });
  for (const c of chunks) p.feed(c);
  return { events, comments };
}

const enc = (s: string): Buffer => Buffer.from(s, 'utf8');

const STREAM =
  '\uFEFFdata: {"a":"héllo ☕ 日本語 🚀"}\r\n\r\n' +
  ': keep-alive\n\n' +
  'event: response.output_text.delta\rdata: {"b":1}\r\r' +
  'data: line1\ndata: line2\n\n' +
  'id: 7\ndata:nospace\n\n' +
  'retry: 100\n\n' +
  'event: orphan\n\n' +
  'data: [DONE]\n\n';

const EXPECTED: SseEvent[] = [
  { event: undefined, data: '{"a":"héllo ☕ 日本語 🚀"}', id: undefined },
  { event: 'response.output_text.delta', data: '{"b":1}', id: undefined },
  { event: undefined, data: 'line1\nline2', id: undefined },
  { event: undefined, data: 'nospace', id: '7' },
  { event: undefined, data: '[DONE]', id: '7' },
];

test('parses a stream in one read: BOM, CRLF, CR, comments, multi-line data, id, events without data', () => {
  const { events, comments } = parseAll([enc(STREAM)]);
  assert.deepEqual(events, EXPECTED);
  assert.deepEqual(comments, ['keep-alive']);
});

test('every single split point gives the same events (multibyte UTF-8, CRLF and BOM split across reads)', () => {
  const bytes = enc(STREAM);
  for (let i = 0; i <= bytes.length; i++) {
    const { events } = parseAll([bytes.subarray(0, i), bytes.subarray(i)]);
    assert.deepEqual(events, EXPECTED, `split at byte ${i}`);
  }
});

test('byte-by-byte feeding gives the same events', () => {
  const bytes = enc(STREAM);
  const chunks = Array.from(bytes, (b) => Uint8Array.of(b));
  assert.deepEqual(parseAll(chunks).events, EXPECTED);
});

test('every pair of split points gives the same events', () => {
  const bytes = enc(STREAM.slice(0, 60) + 'data: [DONE]\n\n');
  const expected = parseAll([bytes]).events;
  for (let i = 0; i <= bytes.length; i++) {
    for (let j = i; j <= bytes.length; j++) {
      const { events } = parseAll([bytes.subarray(0, i), bytes.subarray(i, j), bytes.subarray(j)]);
      assert.deepEqual(events, expected, `split at ${i},${j}`);
    }
  }
});

test('a 1 MB data line split into 1,000 reads arrives whole', () => {
  const big = 'x'.repeat(1024 * 1024 - 3) + 'é'; // ends in a 2-byte character
  const bytes = enc(`data: ${big}\n\ndata: [DONE]\n\n`);
  const chunks: Uint8Array[] = [];
  const step = Math.ceil(bytes.length / 1000);
  for (let i = 0; i < bytes.length; i += step) chunks.push(bytes.subarray(i, i + step));
  const { events } = parseAll(chunks);
  assert.equal(events.length, 2);
  assert.equal(events[0]?.data, big);
  assert.equal(events[1]?.data, '[DONE]');
});

test('a line over the buffer limit throws instead of growing without bound', () => {
  const p = createParser({ onEvent: () => {} }, { maxBufferBytes: 1024 });
  assert.throws(() => {
    for (let i = 0; i < 10; i++) p.feed(enc('y'.repeat(200)));
  }, SseBufferOverflowError);
});

test('a BOM in the middle of a stream is data, not stripped', () => {
  const { events } = parseAll([enc('data: a\n\n'), enc('\uFEFFdata: b\n\n')]);
  assert.equal(events.length, 1, 'the field name "\\uFEFFdata" is unknown and ignored');
});
