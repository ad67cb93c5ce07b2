import { test } from 'node:test';
import assert from 'node:assert/strict';
import { splitUsage } from '../src/openai/usage.ts';
import { passThroughFinishes, passThroughRead, type UsageCut, type ReadTally } from '../src/sse/passthrough.ts';

const passThroughUsage = (buf: Buffer, cut: UsageCut, tally: ReadTally): Buffer | null => passThroughRead(buf, cut, tally);

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

const withUsage = (content: string, completion: number, finish: string | null = null): string =>
  chunk(content, finish).replace(/}\n\n$/, `,"usage":{"prompt_tokens":7,"total_tokens":${7 + completion},"completion_tokens":${completion}}}\n\n`);
const USAGE_ONLY = 'data: {"id":"c1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":7,"total_tokens":10,"completion_tokens":3}}\n\n';

test('passThroughRead with a usage cut reads the running usage of every chunk and cuts what the client did not ask for', () => {
  const read = withUsage('a', 1) + withUsage('b', 2) + withUsage('', 3, 'stop') + USAGE_ONLY;
  const tally = { finishes: 0, events: 0, promptTokens: -1, completionTokens: -1 } satisfies ReadTally;
  const all = passThroughUsage(b(read), 'all', tally);
  assert.equal(all?.toString(), chunk('a') + chunk('b') + chunk('', 'stop'), 'usage cut from every chunk, the usage chunk dropped');
  assert.deepEqual(tally, { finishes: 1, events: 3, promptTokens: 7, completionTokens: 3 });
  const t2 = { finishes: 0, events: 0, promptTokens: -1, completionTokens: -1 };
  assert.equal(passThroughUsage(b(read), 'chunks', t2)?.toString(), chunk('a') + chunk('b') + chunk('', 'stop') + USAGE_ONLY, 'the final usage chunk stays');
  const same = b(read);
  assert.equal(passThroughUsage(same, 'none', { finishes: 0, events: 0, promptTokens: -1, completionTokens: -1 }), same, 'nothing cut: the same bytes');
  assert.equal(passThroughUsage(b(USAGE_ONLY), 'all', t2)?.length, 0, 'a read of nothing but the usage chunk sends nothing');
  // Nested usage details and spaces are read and cut whole.
  const nested = chunk('x').replace(/}\n\n$/, ',"usage":{"prompt_tokens": 5,"prompt_tokens_details":{"cached_tokens":4},"completion_tokens": 9}}\n\n');
  const t3 = { finishes: 0, events: 0, promptTokens: -1, completionTokens: -1 };
  assert.equal(passThroughUsage(b(nested), 'all', t3)?.toString(), chunk('x'));
  assert.equal(t3.promptTokens, 5);
  assert.equal(t3.completionTokens, 9);
});

test('passThroughRead cuts the usage of a read of many chunks, and the next read is cut on its own', () => {
  // More chunks in one read than the reused list of cuts first holds, then a read after one that was refused midway.
  const many = Array.from({ length: 100 }, (_, i) => withUsage(`t${i}`, i + 1)).join('');
  const tally = { finishes: 0, events: 0, promptTokens: -1, completionTokens: -1 } satisfies ReadTally;
  const out = passThroughUsage(b(many + USAGE_ONLY), 'all', tally);
  assert.equal(out?.toString(), Array.from({ length: 100 }, (_, i) => chunk(`t${i}`)).join(''));
  assert.deepEqual(tally, { finishes: 0, events: 100, promptTokens: 7, completionTokens: 3 }, 'the usage chunk at the end is the last usage read');
  assert.equal(passThroughUsage(b(withUsage('a', 1) + 'data: [DONE]\n\n'), 'all', tally), null);
  assert.equal(passThroughUsage(b(withUsage('z', 101)), 'chunks', tally)?.toString(), chunk('z'), 'no cut of an earlier read carried over');
});

test('passThroughRead with a usage cut refuses what the parser must see, and counts nothing for it', () => {
  const tally = { finishes: 0, events: 0, promptTokens: -1, completionTokens: -1 } satisfies ReadTally;
  const cases: Array<[string, string]> = [
    ['usage null', chunk('a').replace(/}\n\n$/, ',"usage":null}\n\n')],
    ['usage not right after a comma', 'data: {"id":"c1", "usage":{"completion_tokens":1},"choices":[]}\n\n'],
    ['split usage', withUsage('a', 1).slice(0, -20)],
    ['error', 'data: {"id":"c1","object":"error","message":"x"}\n\n'],
    ['[DONE]', withUsage('a', 1) + 'data: [DONE]\n\n'],
  ];
  for (const [name, text] of cases) assert.equal(passThroughUsage(b(text), 'all', tally), null, name);
  assert.deepEqual(tally, { finishes: 0, events: 0, promptTokens: -1, completionTokens: -1 });
});

test('splitUsage finds a chunk\'s usage by text, and the chunk without it', () => {
  const c = withUsage('a', 4).slice(6, -2);
  const s = splitUsage(c);
  assert.deepEqual(s?.usage, { promptTokens: 7, completionTokens: 4, totalTokens: 11 });
  assert.equal(s?.choices, true);
  assert.equal(s?.without, chunk('a').slice(6, -2));
  assert.equal(splitUsage(USAGE_ONLY.slice(6, -2))?.choices, false);
  assert.equal(splitUsage(chunk('a').slice(6, -2)), undefined, 'no usage');
  assert.equal(splitUsage('{"usage":{"prompt_tokens":1},"choices":[]}'), undefined, 'usage right after the brace: not vLLM\'s place');
});
