import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeUpstreamError, parseInBandError } from '../src/openai/upstream-error.ts';

test('in-band errors are recognized in every engine shape; chunks are not', () => {
  assert.equal(parseInBandError('{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[]}'), null);
  assert.equal(parseInBandError('{"object":"chat.completion.chunk","id":"","choices":[]}'), null);
  assert.equal(parseInBandError('[DONE]'), null);
  const vllm = parseInBandError('{"error": {"message": "boom", "type": "BadRequestError", "param": null, "code": 400}}');
  assert.deepEqual(vllm, { message: 'boom', type: 'invalid_request_error', param: null, code: 400 });
  const old = parseInBandError('{"object": "error", "message": "too long", "type": "BadRequestError", "param": null, "code": 400}');
  assert.equal(old?.message, 'too long');
  const tgi = parseInBandError('{"error":"Input validation error","error_type":"validation"}');
  assert.equal(tgi?.message, 'Input validation error');
  assert.equal(tgi?.type, 'server_error');
});

test('errors before headers: each engine body becomes the OpenAI error object', () => {
  assert.deepEqual(normalizeUpstreamError('{"detail":"Not Found"}', 404), { message: 'Not Found', type: 'not_found_error', param: null, code: null });
  assert.equal(normalizeUpstreamError('upstream connect error', 503).message, 'upstream connect error');
  assert.equal(normalizeUpstreamError('', 502).message, 'upstream answered HTTP 502');
  assert.equal(normalizeUpstreamError('{"error":{"message":"slow down","type":"rate_limit_error","code":"rate_limited"}}', 429).type, 'rate_limit_error');
  assert.equal(normalizeUpstreamError('x'.repeat(10_000), 500).message.length, 2_000, 'bounded');
});
