import { test } from 'node:test';
import assert from 'node:assert/strict';
import { REQUEST_SCHEMAS, plainChat, parseRequest, upstreamBody } from '../src/openai/request.ts';

const msg = [{ role: 'user', content: 'hi' }];
const CASES: Array<Record<string, unknown>> = [
  { model: 'm', messages: msg },
  { model: 'm', messages: msg, stream: true, stream_options: { include_usage: true }, n: 2, max_tokens: 5, temperature: 0.7, top_p: 1, stop: ['x'] },
  { model: 'm', messages: msg, stream: null, stream_options: null, max_completion_tokens: null, stop: 'END' },
  { model: 'm', messages: msg, tools: [{ type: 'function' }], extra_vendor_field: { a: 1 } },
  { model: '', messages: msg },
  { model: 'm', messages: [] },
  { model: 'm', messages: 'hi' },
  { model: 'm', messages: [{ content: 'no role' }] },
  { model: 'm', messages: [null] },
  { model: 'm', messages: msg, stream: 'yes' },
  { model: 'm', messages: msg, stream_options: { include_usage: 'yes' } },
  { model: 'm', messages: msg, n: 0 },
  { model: 'm', messages: msg, n: 1.5 },
  { model: 'm', messages: msg, max_tokens: -1 },
  { model: 'm', messages: msg, temperature: 3 },
  { model: 'm', messages: msg, top_p: 1.5 },
  { model: 'm', messages: msg, stop: [1] },
  { model: 7, messages: msg },
];

test('the hand check of plain chat bodies never accepts what the schema rejects', () => {
  for (const body of CASES) {
    const zodOk = REQUEST_SCHEMAS.chat.safeParse(body).success;
    if (plainChat(body)) assert.ok(zodOk, `hand check accepted what zod rejects: ${JSON.stringify(body)}`);
  }
  assert.ok(plainChat(CASES[0]!) && plainChat(CASES[1]!) && plainChat(CASES[2]!) && plainChat(CASES[3]!), 'the common shapes take the fast path');
});

test('the upstream body: usage requested on streams, the client bytes kept, aliases and non-streams rebuilt', () => {
  const raw = ' {"model":"m","messages":[{"role":"user","content":"hé"}],"stream":true} ';
  const streamed = upstreamBody(parseRequest('chat', raw), 'm');
  assert.deepEqual(JSON.parse(streamed), { stream_options: { include_usage: true }, model: 'm', messages: [{ role: 'user', content: 'hé' }], stream: true });
  assert.ok(streamed.includes('"messages":[{"role":"user","content":"hé"}],"stream":true}'), 'the client text is reused');
  const withOptions = upstreamBody(parseRequest('chat', '{"model":"m","messages":[{"role":"user"}],"stream":true,"stream_options":{"include_usage":false}}'), 'm');
  assert.deepEqual(JSON.parse(withOptions).stream_options, { include_usage: true });
  const notStreamed = upstreamBody(parseRequest('chat', '{"model":"m","messages":[{"role":"user"}],"stream_options":{"include_usage":true}}'), 'm');
  assert.equal(JSON.parse(notStreamed).stream_options, undefined);
  const aliased = upstreamBody(parseRequest('chat', '{"model":"alias","messages":[{"role":"user"}],"stream":true}'), 'real');
  assert.equal(JSON.parse(aliased).model, 'real');
  assert.deepEqual(JSON.parse(aliased).stream_options, { include_usage: true });
});
