import { isObject, normalizeUsage, parseChunk } from './chunk-object.ts';
import { cutTail, dropNullKey, finishReasonOf, keyAt } from './chunk-text.ts';
import { DialectNormalizer, type Rewrite } from './dialect-normalizer.ts';

const NULL_ROLE = '"delta":{"role":null,';
const NULL_TAIL = ',"reasoning_content":null,"tool_calls":null}';
const NULL_USAGE = ',"usage":null}';
const NOT_FINISHED = '"finish_reason":null,"matched_stop":null}],"usage":null}';

/**
 * SGLang (sgl-project/sglang `python/sglang/srt/entrypoints/openai/serving_chat.py` `_generate_chat_stream`, which
 * writes `chunk.model_dump_json()` with no exclusions; docs/engines.md "SGLang"):
 * - every chunk ends with `"usage":null`: cut, so the relay's usage check does not parse every chunk;
 * - every delta spells out `role`, `content`, `reasoning_content` and `tool_calls` as null: dropped, as OpenAI and
 *   vLLM omit unset keys (the trailing finish chunk becomes `delta:{}`);
 * - tool-call continuations repeat `"id":null`, `"type":"function"` and `"name":null`: reduced to index + arguments;
 * - the usage chunk's flat `reasoning_tokens` and `prompt_tokens_details:null`: OpenAI's usage shape;
 * - `finish_reason:"abort"` (a request the scheduler dropped): an error, not an answer.
 * `matched_stop` is kept as a vendor field. Error frames (`{"error": {"object": "error", …}}`, spaced) are recognized
 * by the relay; an over-long prompt, which SGLang reports in-band with HTTP 200, becomes `context_length_exceeded`.
 */
export class SglangNormalizer extends DialectNormalizer {
  protected override get nativeReasoning(): 'reasoning_content' {
    return 'reasoning_content';
  }

  protected rewrite(data: string): Rewrite {
    if (data.startsWith('{"error"')) return data;
    if (this.kind === 'chat') {
      // The common content chunk, cut in one concatenation: `"delta":{"role":null,"content":"…",` +
      // `"reasoning_content":null,"tool_calls":null}` … `"finish_reason":null,"matched_stop":null}],"usage":null}`.
      const role = data.indexOf(NULL_ROLE);
      const tail = role === -1 ? -1 : data.indexOf(NULL_TAIL, role);
      if (tail !== -1 && data.endsWith(NOT_FINISHED) && data.startsWith('"content":"', role + NULL_ROLE.length)) {
        const open = role + 9; // after `"delta":{`
        return `${data.slice(0, open)}${data.slice(open + 12, tail)}}${data.slice(tail + NULL_TAIL.length, data.length - NULL_USAGE.length)}}`;
      }
    }
    let s = cutTail(data, ',"usage":null');
    if (keyAt(s, '"choices":[],') !== -1) return this.#usage(s);
    if (this.kind === 'chat') {
      s = dropNullKey(s, 'role');
      s = dropNullKey(s, 'content');
      s = dropNullKey(s, 'reasoning_content');
      s = dropNullKey(s, 'tool_calls');
      if (keyAt(s, '"tool_calls":[') !== -1) s = this.#toolCalls(s);
    }
    if (finishReasonOf(s) === 'abort') {
      return { error: { message: 'the engine aborted the request before it finished', type: 'server_error', param: null, code: 'upstream_aborted' } };
    }
    return s;
  }

  #usage(s: string): string {
    const o = parseChunk(s);
    if (!o || !isObject(o['usage'])) return s;
    o['usage'] = normalizeUsage(o['usage']);
    return JSON.stringify(o);
  }

  /** `{"id":null,"index":0,"type":"function","function":{"name":null,"arguments":"…"}}` → `{"index":0,"function":{"arguments":"…"}}`. */
  #toolCalls(s: string): string {
    if (s.indexOf(':null') === -1) return s;
    const o = parseChunk(s);
    const choices = o?.['choices'];
    if (!o || !Array.isArray(choices)) return s;
    for (const c of choices) {
      const calls: unknown = isObject(c) && isObject(c['delta']) ? c['delta']['tool_calls'] : undefined;
      if (!Array.isArray(calls)) continue;
      for (const call of calls) {
        if (!isObject(call)) continue;
        if (call['id'] === null) {
          delete call['id'];
          delete call['type'];
        }
        const fn = call['function'];
        if (isObject(fn) && fn['name'] === null) delete fn['name'];
      }
    }
    return JSON.stringify(o);
  }
}
