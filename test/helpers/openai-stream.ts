import assert from 'node:assert/strict';

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);

const FINISH = new Set(['stop', 'length', 'tool_calls', 'content_filter']);

/**
 * Asserts that an SSE body is a clean OpenAI chat/completions stream, as vLLM writes it: `data:` frames with one line
 * of JSON; for chat, a role chunk first and no role after it; no null delta keys; tool calls as arrays whose first
 * item per index has id, type and name; only OpenAI's finish reasons; usage only on a `choices: []` chunk after every
 * finish (`usage: null` elsewhere is allowed: OpenAI sends it); and either `[DONE]` last, or one OpenAI error frame last and no `[DONE]`. Returns the parsed chunks.
 */
export function assertOpenAIStream(text: string, kind: 'chat' | 'completion'): { chunks: Json[]; error: Json | undefined } {
  assert.ok(text.endsWith('\n\n'), 'the body ends with a blank line');
  const frames = text.slice(0, -2).split('\n\n');
  const chunks: Json[] = [];
  let error: Json | undefined;
  let done = false;
  const roleSeen = new Set<number>();
  const toolIds = new Map<string, boolean>();
  let finishes = 0;
  let usageSeen = false;
  for (const [i, f] of frames.entries()) {
    assert.ok(f.startsWith('data: '), `frame ${i} is a data: line: ${f.slice(0, 80)}`);
    const payload = f.slice(6);
    assert.ok(!payload.includes('\n') && !payload.includes('\r'), 'one line per frame');
    assert.ok(!done && error === undefined, 'nothing after [DONE] or an error frame');
    if (payload === '[DONE]') {
      done = true;
      continue;
    }
    assert.ok(!payload.startsWith('{ ') && !payload.includes('", "'), `compact JSON: ${payload.slice(0, 80)}`);
    const o = JSON.parse(payload) as Json;
    if ('error' in o) {
      assert.deepEqual(Object.keys(o), ['error']);
      assert.ok(isObject(o['error']));
      assert.deepEqual(Object.keys(o['error']).sort(), ['code', 'message', 'param', 'type']);
      assert.equal(typeof o['error']['message'], 'string');
      assert.ok(['invalid_request_error', 'authentication_error', 'not_found_error', 'rate_limit_error', 'server_error', 'timeout_error', 'permission_error'].includes(o['error']['type'] as string), `OpenAI error type: ${String(o['error']['type'])}`);
      error = o['error'];
      continue;
    }
    chunks.push(o);
    assert.equal(o['object'], kind === 'chat' ? 'chat.completion.chunk' : 'text_completion');
    assert.ok(typeof o['id'] === 'string' && o['id'].length > 0, 'a non-empty id');
    assert.ok(Array.isArray(o['choices']), 'choices is an array');
    const choices = o['choices'] as unknown[];
    // `usage: null` on other chunks is what OpenAI (and vLLM's completions) send with include_usage.
    if (o['usage'] !== undefined && o['usage'] !== null) {
      assert.equal(choices.length, 0, 'usage comes on its own chunk with choices: []');
      assert.ok(!usageSeen, 'one usage chunk');
      usageSeen = true;
      const u = o['usage'] as Json;
      for (const k of ['prompt_tokens', 'completion_tokens', 'total_tokens']) assert.equal(typeof u[k], 'number', `usage.${k}`);
    }
    for (const c of choices) {
      assert.ok(isObject(c));
      assert.ok(!usageSeen, 'usage comes after every choice');
      const index = c['index'] as number;
      assert.equal(typeof index, 'number');
      const finish = c['finish_reason'];
      assert.ok(finish === null || finish === undefined || FINISH.has(finish as string), `OpenAI finish reason: ${String(finish)}`);
      if (typeof finish === 'string') finishes++;
      if (kind === 'completion') {
        assert.equal(typeof c['text'], 'string');
        continue;
      }
      const d = c['delta'];
      assert.ok(isObject(d), 'a delta');
      for (const [k, v] of Object.entries(d)) assert.notEqual(v, null, `delta.${k} is not null`);
      if (!roleSeen.has(index)) {
        assert.equal(d['role'], 'assistant', `choice ${index} opens with the role chunk`);
        assert.equal(d['content'], '', 'the role chunk has content ""');
        roleSeen.add(index);
      } else {
        assert.equal(d['role'], undefined, 'the role is sent once');
      }
      if (d['tool_calls'] !== undefined) {
        assert.ok(Array.isArray(d['tool_calls']), 'tool_calls is an array');
        for (const call of d['tool_calls'] as Json[]) {
          assert.equal(typeof call['index'], 'number');
          const key = `${index}/${String(call['index'])}`;
          const fn = call['function'] as Json;
          if (!toolIds.has(key)) {
            assert.ok(typeof call['id'] === 'string' && call['id'].length > 0, 'the first delta of a tool call has its id');
            assert.equal(call['type'], 'function');
            assert.ok(typeof fn['name'] === 'string' && fn['name'].length > 0, 'and its name');
            toolIds.set(key, true);
          } else {
            assert.equal(call['id'], undefined, 'later deltas carry only arguments');
            assert.equal(fn['name'], undefined);
          }
        }
      }
    }
  }
  assert.ok(done !== (error !== undefined), 'a stream ends with [DONE] or with an error frame, not both');
  if (done) assert.ok(finishes > 0, 'a complete stream has a finish reason');
  return { chunks, error };
}

/** Text and reasoning assembled from chat chunks, per choice. */
export function assemble(chunks: Json[]): { content: string[]; reasoning: string[]; tools: Array<{ name: string; arguments: string }>; finish: string[] } {
  const content: string[] = [];
  const reasoning: string[] = [];
  const tools: Array<{ name: string; arguments: string }> = [];
  const finish: string[] = [];
  for (const o of chunks) {
    for (const c of o['choices'] as Json[]) {
      const i = c['index'] as number;
      if (typeof c['finish_reason'] === 'string') finish[i] = c['finish_reason'];
      if (typeof c['text'] === 'string') content[i] = (content[i] ?? '') + c['text'];
      const d = c['delta'] as Json | undefined;
      if (!d) continue;
      if (typeof d['content'] === 'string') content[i] = (content[i] ?? '') + d['content'];
      const r = d['reasoning_content'] ?? d['reasoning'];
      if (typeof r === 'string') reasoning[i] = (reasoning[i] ?? '') + r;
      for (const call of (d['tool_calls'] as Json[] | undefined) ?? []) {
        const k = call['index'] as number;
        const fn = call['function'] as Json;
        tools[k] ??= { name: '', arguments: '' };
        if (typeof fn['name'] === 'string') tools[k].name = fn['name'];
        if (typeof fn['arguments'] === 'string') tools[k].arguments += fn['arguments'];
      }
    }
  }
  return { content, reasoning, tools, finish };
}
