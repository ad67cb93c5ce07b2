import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatStream } from '../src/openai/chat-stream.ts';
import { SpliceStream } from '../src/openai/splice-stream.ts';
import type { StreamWriter } from '../src/relay/writer.ts';
import { requestText } from '../src/generation/request-log.ts';

// SpliceStream (src/openai/splice-stream.ts) on its own: what it reads of the answer so far, by either path, and how
// it rewrites a continuation. The end-to-end proof is test/mid-stream-failover.test.ts.

const chat = (usage = { final: true, continuous: false }): ChatStream => new ChatStream({ usage, choices: 1 });

/** A writer that keeps what it is given. */
function collector(): StreamWriter & { out: string[] } {
  const out: string[] = [];
  return {
    out,
    opened: true,
    closed: false,
    open() {},
    data: (json) => void out.push(json),
    named() {},
    heartbeat() {},
    done: () => void out.push('[DONE]'),
    flush: () => true,
    onDrain() {},
    end() {},
    fail() {},
    destroy() {},
  };
}

const chunk = (delta: string, extra = ''): string =>
  `{"id":"chatcmpl-1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":${delta},"logprobs":null,"finish_reason":null}]${extra}}`;
const TEXTS = ['Hé', ' \\"quoted\\"', ' back\\\\slash', ' ☕ 日本語 🚀', ' new\\nline', ' \\u00e9'];
const DECODED = 'Hé "quoted" back\\slash ☕ 日本語 🚀 new\nline é';

test('the answer so far is the same read from raw reads in one pass or from parsed events, escapes and multibyte text included', () => {
  const frames = [chunk('{"role":"assistant","content":""}'), ...TEXTS.map((t) => chunk(`{"content":"${t}"}`))];
  const raw = new SpliceStream('chat', chat);
  assert.equal(raw.attach({}), true, 'a vLLM stream may pass through as bytes');
  for (const f of frames) assert.notEqual(raw.passRaw(Buffer.from(`data: ${f}\n\n`)), null);
  const parsed = new SpliceStream('chat', chat);
  parsed.attach({});
  const w = collector();
  for (const f of frames) parsed.onEvent({ event: undefined, data: f, id: undefined }, w);
  for (const s of [raw, parsed]) {
    assert.equal(s.answer.text, DECODED);
    assert.equal(s.answer.tokens, TEXTS.length);
    assert.equal(s.answer.roleSent, true);
    assert.equal(s.answer.notExact, undefined);
  }
  // Several events in one read.
  const joined = new SpliceStream('chat', chat);
  joined.attach({});
  joined.passRaw(Buffer.from(frames.map((f) => `data: ${f}\n\n`).join('')));
  assert.equal(joined.answer.text, DECODED);
});

test('what makes a continuation inexact is seen on either path, however the engine spaces its JSON', () => {
  const cases: Array<[string, RegExp]> = [
    [chunk('{"content":"x"}').replace('"finish_reason":null', '"finish_reason": "stop"'), /finished/],
    [chunk('{"content":"x"}').replace('"index":0', '"index":1'), /several choices/],
    [chunk('{"tool_calls":[{"index":0,"id":"c","type":"function","function":{"name":"f","arguments":""}}]}'), /tool call/],
    [chunk('{"reasoning_content":"hmm"}'), /reasoning/],
    [chunk('{"reasoning":"hmm"}'), /reasoning/],
  ];
  for (const [frame, why] of cases) {
    for (const path of ['raw', 'parsed'] as const) {
      const s = new SpliceStream('chat', chat);
      s.attach({});
      const first = chunk('{"content":"a"}');
      if (path === 'raw') {
        s.passRaw(Buffer.from(`data: ${first}\n\n`));
        s.passRaw(Buffer.from(`data: ${frame}\n\n`));
      } else {
        s.onEvent({ event: undefined, data: first, id: undefined }, collector());
        s.onEvent({ event: undefined, data: frame, id: undefined }, collector());
      }
      assert.match(s.answer.notExact ?? '', why, `${path}: ${frame}`);
    }
  }
});

test('a continuation is rewritten into the first answer: id, model, created, no second role chunk, usage added up', () => {
  const s = new SpliceStream('chat', () => chat({ final: true, continuous: true }));
  s.attach({ continuousUsage: true });
  const w = collector();
  const usage = (p: number, c: number): string => `,"usage":{"prompt_tokens":${p},"total_tokens":${p + c},"completion_tokens":${c}}`;
  s.onEvent({ event: undefined, data: chunk('{"role":"assistant","content":""}', usage(10, 0)), id: undefined }, w);
  s.onEvent({ event: undefined, data: chunk('{"content":"One"}', usage(10, 1)), id: undefined }, w);
  s.onEvent({ event: undefined, data: chunk('{"content":" two"}', usage(10, 2)), id: undefined }, w);
  assert.deepEqual(s.answer, { text: 'One two', tokens: 2, roleSent: true, notExact: undefined });
  assert.equal(s.attach({ continuousUsage: true }), false, 'a continuation is always parsed');
  const other = (delta: string, finish: string | null, u: string): string =>
    `{"id":"chatcmpl-OTHER","object":"chat.completion.chunk","created":99,"model":"other","system_fingerprint":"fp","choices":[{"index":0,"delta":${delta},"logprobs":null,"finish_reason":${finish === null ? 'null' : `"${finish}"`}}]${u}}`;
  const before = w.out.length;
  s.onEvent({ event: undefined, data: other('{"role":"assistant","content":""}', null, usage(14, 0)), id: undefined }, w);
  s.onEvent({ event: undefined, data: other('{"content":" three"}', null, usage(14, 1)), id: undefined }, w);
  s.onEvent({ event: undefined, data: other('{"content":""}', 'stop', usage(14, 1)), id: undefined }, w);
  s.onEvent({ event: undefined, data: `{"id":"chatcmpl-OTHER","object":"chat.completion.chunk","created":99,"model":"other","choices":[]${usage(14, 1)}}`, id: undefined }, w);
  assert.equal(s.onEvent({ event: undefined, data: '[DONE]', id: undefined }, w), 'end');
  const sent = w.out.slice(before).filter((x) => x !== '[DONE]').map((x) => JSON.parse(x) as Record<string, unknown>);
  assert.equal(sent.length, 3, 'the continuation\'s role chunk is dropped');
  for (const o of sent) {
    assert.equal(o['id'], 'chatcmpl-1');
    assert.equal(o['model'], 'm');
    assert.equal(o['created'], 7);
    if ('system_fingerprint' in o) assert.equal(o['system_fingerprint'], null, 'the first answer had none');
    assert.deepEqual(o['usage'], { prompt_tokens: 10, total_tokens: 13, completion_tokens: 3 });
  }
  assert.equal(w.out.at(-1), '[DONE]');
  assert.deepEqual(s.usage, { promptTokens: 10, completionTokens: 3, totalTokens: 13 });
  assert.equal(s.tokenSource, 'reported');
  assert.equal(s.answer.text, 'One two three');
});

test('the text form of a request line names its failovers', () => {
  const line = requestText(
    {
      ts: 'T',
      id: 'req_1',
      method: 'POST',
      path: '/v1/chat/completions',
      model: 'm',
      upstream: 'b',
      status: 200,
      stream: true,
      ttft_ms: 1,
      tokens_in: 1,
      tokens_out: 2,
      tokens_source: 'reported',
      duration_ms: 3,
      outcome: 'completed',
      error_code: undefined,
      failovers: [{ from: 'a', to: 'b', reason: 'connection_lost', after_tokens: 9 }],
    },
    'info',
  );
  assert.match(line, / failover=a>b:connection_lost@9 3ms id=req_1$/);
});
