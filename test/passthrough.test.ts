import { test } from 'node:test';
import assert from 'node:assert/strict';
import { passThroughFinishes } from '../src/sse/passthrough.ts';

const chunk = (content: string, finish: string | null = null): string =>
  `data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":${JSON.stringify(content)}},"finish_reason":${finish === null ? 'null' : `"${finish}"`}}]}\n\n`;
const b = (s: string): Buffer => Buffer.from(s, 'utf8');

test('whole plain chunk events pass through, counting finish reasons', () => {
  assert.equal(passThroughFinishes(b(chunk('hé☕'))), 0);
  assert.equal(passThroughFinishes(b(chunk('a') + chunk('b') + chunk('', 'stop'))), 1);
  assert.equal(passThroughFinishes(b(chunk('x').replace('"finish_reason":null', '"finish_reason": "length"'))), 1);
});

test('anything that needs the parser is refused', () => {
  const cases: Array<[string, string]> = [
    ['split event', chunk('a').slice(0, -1)],
    ['split mid-line', chunk('a').slice(0, 20)],
    ['second event split', chunk('a') + chunk('b').slice(0, 30)],
    ['[DONE]', 'data: [DONE]\n\n'],
    ['[DONE] after a chunk', chunk('a') + 'data: [DONE]\n\n'],
    ['usage chunk', 'data: {"id":"c1","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}\n\n'],
    ['error frame', 'data: {"error":{"message":"x"}}\n\n'],
    ['CRLF', chunk('a').replace(/\n/g, '\r\n')],
    ['comment', ': keep-alive\n\n'],
    ['event field', 'event: x\n' + chunk('a')],
    ['no space after data:', chunk('a').replace('data: ', 'data:')],
    ['multi-line data', 'data: {"id":"c1",\ndata: "x":1}\n\n'],
    ['object first (TGI)', 'data: {"object":"chat.completion.chunk","id":""}\n\n'],
    ['empty', ''],
  ];
  for (const [name, text] of cases) assert.equal(passThroughFinishes(b(text)), -1, name);
});
