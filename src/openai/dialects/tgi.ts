import { randomBytes } from 'node:crypto';
import { normalizeUpstreamError, type OpenAIErrorObject } from '../upstream-error.ts';
import { envelope, isObject, normalizeUsage, parseChunk, splitUsage, type Json } from './chunk-object.ts';
import { keyAt, replaceFinishReason } from './chunk-text.ts';
import { DialectNormalizer, type Rewrite } from './dialect-normalizer.ts';

const CHAT_HEAD = '{"object":"chat.completion.chunk","id":"';
const TEXT_HEAD = '{"object":"text_completion","id":"';
const ROLE = '"delta":{"role":"assistant",';
const NULL_USAGE = ',"usage":null}';
const NOT_FINISHED = '"finish_reason":null}],"usage":null}';

/** TGI's finish reasons (`FinishReason::format`/`to_string`, router/src/lib.rs) in OpenAI's terms. */
const FINISH: Record<string, string | null> = { eos_token: 'stop', stop_sequence: 'stop', '': null };

/** `InferError::error_type` (router/src/infer/mod.rs) → the HTTP status TGI gives it before headers. */
const ERROR_STATUS: Record<string, number> = {
  validation: 422,
  template_error: 422,
  tool_error: 422,
  missing_template_variable: 422,
  overloaded: 429,
  generation: 424,
  incomplete_generation: 500,
};

/** Special tokens TGI leaves in grammar-constrained tool output (it does not filter them in tool mode). */
const SPECIAL_TOKENS = /<\|[^|<>\s]{1,40}\|>|<\/s>|<eos>|<end_of_turn>/g;

/**
 * TGI 2.x/3.x (huggingface/text-generation-inference `router/src/server.rs` `chat_completions`, `completions`,
 * `generate_stream_internal`; `router/src/lib.rs` `ChatCompletionChunk`, `CompletionType`; docs/engines.md "TGI"):
 * - `object` first, `id:""`, `usage:null` and `role:"assistant"` on every chunk: an id per stream, OpenAI's key
 *   order, `usage:null` cut, a role chunk first and no role after it — done on the text, with no parse;
 * - the last token carries the finish reason and, with `include_usage`, the usage: split into the finish chunk and
 *   OpenAI's separate `choices: []` usage chunk; `eos_token`/`stop_sequence` become `stop`; completions' `""` null;
 * - 2.x tool calls (`tool_calls` an object, `name:null`, the raw grammar JSON
 *   `{"function": {"_name": "get_weather", "city": "Paris"}}` streamed token by token, finish `stop`): the arguments
 *   are buffered until the finish, then sent as one OpenAI tool call with its name and a minted id, finishing with
 *   `tool_calls`. The `no_tool` pseudo-function becomes plain content;
 * - errors `{"error":"…","error_type":"…"}` (in-band even before any token, with HTTP 200): OpenAI's error with the
 *   type the error_type means (validation → invalid_request_error, overloaded → rate_limit_error, generation →
 *   server_error); the `[DONE]` TGI writes after it is never reached. A bare `[DONE]` with no finish (TGI 2.4.0 drops
 *   errors) is reported by the relay as a truncated stream.
 */
export class TgiNormalizer extends DialectNormalizer {
  override readonly choices = 1;
  #roleSent = false;
  #toolSeen = false;
  #toolArgs: string[] | undefined;

  protected override get nativeReasoning(): 'none' {
    return 'none';
  }

  protected rewrite(data: string): Rewrite {
    if (data.startsWith('{"error"')) return { error: tgiError(data) };
    if (this.kind === 'completion') return this.#completion(data);
    if (!data.startsWith(CHAT_HEAD)) return data;
    if (this.#toolArgs !== undefined) return this.#toolDelta(data);
    // Searches that stop early: the delta opens with the role, then `content` or `tool_calls`.
    const role = data.indexOf(ROLE);
    const tools = role !== -1 ? (data.startsWith('"content":', role + ROLE.length) ? -1 : role + ROLE.length) : keyAt(data, '"tool_calls":');
    if (tools !== -1 && data.startsWith('"tool_calls":', tools)) {
      if (data.charCodeAt(tools + 13) === 0x7b /* { */) return this.#toolDelta(data); // 2.x: an object
      this.#toolSeen = true; // 3.x: OpenAI's array form
    }
    // `usage` is the last key: `null` until the last token, which also has the finish.
    if (this.#roleSent && data.endsWith(NOT_FINISHED)) return this.#fast(data, CHAT_HEAD);
    return this.#slow(data);
  }

  /** A content chunk, rewritten on its text: id in front of `object`, no role, no `usage:null`. */
  #fast(data: string, head: string): string {
    const idEnd = data.indexOf('"', head.length);
    if (idEnd === -1) return data;
    const object = head.slice(1, head.length - 7); // `"object":"chat.completion.chunk"`
    let rest = data.slice(idEnd + 1); // `,"created":…`
    if (rest.endsWith(NULL_USAGE)) rest = `${rest.slice(0, rest.length - NULL_USAGE.length)}}`;
    const role = rest.indexOf(ROLE);
    if (role !== -1) rest = `${rest.slice(0, role)}"delta":{${rest.slice(role + ROLE.length)}`;
    return `{"id":"${this.streamId}",${object}${rest}`;
  }

  /** The first chunk, a finish, a usage chunk (3.x) or a tool-call chunk in array form: parsed and rebuilt. */
  #slow(data: string): Rewrite {
    const o = parseChunk(data);
    const choices = o?.['choices'];
    if (!o || !Array.isArray(choices)) return data;
    o['id'] = this.streamId;
    if (o['usage'] === null) delete o['usage'];
    const out: string[] = [];
    if (!this.#roleSent && choices.length > 0) {
      this.#roleSent = true;
      out.push(this.roleChunk(o, 0));
    }
    for (const c of choices) {
      if (!isObject(c)) continue;
      const d = c['delta'];
      if (isObject(d)) {
        delete d['role'];
        if (d['tool_calls'] !== undefined && d['tool_calls'] !== null) this.#toolSeen = true;
      }
      const f = c['finish_reason'];
      if (typeof f === 'string' && Object.hasOwn(FINISH, f)) c['finish_reason'] = FINISH[f];
      if (c['finish_reason'] === 'stop' && this.#toolSeen) c['finish_reason'] = 'tool_calls';
    }
    const rebuilt = envelope(o, choices);
    if (o['usage'] !== undefined) rebuilt['usage'] = isObject(o['usage']) ? normalizeUsage(o['usage']) : o['usage'];
    for (const c of splitUsage(rebuilt)) {
      // The first chunk's delta is often the first token; the EOS token's finish chunk has `content:""`. Keep both.
      out.push(JSON.stringify(c));
    }
    return out;
  }

  /** 2.x tool mode: buffer the grammar JSON until the finish, then send one OpenAI tool call. */
  #toolDelta(data: string): Rewrite {
    const o = parseChunk(data);
    const choice: unknown = Array.isArray(o?.['choices']) ? (o['choices'] as unknown[])[0] : undefined;
    if (!o || !isObject(choice)) return data;
    const out: string[] = [];
    if (!this.#roleSent) {
      this.#roleSent = true;
      o['id'] = this.streamId;
      out.push(this.roleChunk(o, 0));
    }
    const d = choice['delta'];
    const call = isObject(d) ? d['tool_calls'] : undefined;
    const fn = isObject(call) ? call['function'] : undefined;
    this.#toolArgs ??= [];
    if (isObject(fn) && typeof fn['arguments'] === 'string') this.#toolArgs.push(fn['arguments']);
    const finish = choice['finish_reason'];
    if (typeof finish !== 'string' || finish === '') return out.length > 0 ? out : null;
    const done = this.#toolCallDone(o, finish);
    return Array.isArray(done) ? [...out, ...done] : done;
  }

  #toolCallDone(o: Json, finish: string): string[] | { error: OpenAIErrorObject } {
    const raw = (this.#toolArgs ?? []).join('').replace(SPECIAL_TOKENS, '').trim();
    this.#toolArgs = undefined;
    o['id'] = this.streamId;
    const usage = isObject(o['usage']) ? normalizeUsage(o['usage']) : undefined;
    const chunk = (delta: Json, finishReason: string | null): string => {
      const c = envelope(o, [{ index: 0, delta, logprobs: null, finish_reason: finishReason }]);
      return JSON.stringify(c);
    };
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      parsed = undefined;
    }
    const wrapper = isObject(parsed) ? parsed['function'] : undefined;
    const out: string[] = [];
    if (isObject(wrapper) && typeof wrapper['_name'] === 'string') {
      const { _name: name, ...args } = wrapper;
      if (name === 'no_tool') {
        // TGI's "answer without a tool" pseudo-function: its `content` argument is the answer.
        out.push(chunk({ content: typeof args['content'] === 'string' ? args['content'] : '' }, null));
        out.push(chunk({}, finish === 'length' ? 'length' : 'stop'));
      } else {
        const id = `call_${randomBytes(12).toString('hex')}`;
        out.push(chunk({ tool_calls: [{ index: 0, id, type: 'function', function: { name, arguments: JSON.stringify(args) } }] }, null));
        out.push(chunk({}, finish === 'length' ? 'length' : 'tool_calls'));
      }
    } else if (finish === 'length') {
      // Cut off mid-call: OpenAI reports `length` and whatever arguments were produced; there is no name to give.
      out.push(chunk({}, 'length'));
    } else {
      return { error: { message: `the engine (TGI) produced a tool call that is not valid JSON: ${raw.slice(0, 200)}`, type: 'server_error', param: null, code: 'upstream_bad_tool_call' } };
    }
    if (usage) {
      const u = envelope(o, []);
      u['usage'] = usage;
      out.push(JSON.stringify(u));
    }
    return out;
  }

  #completion(data: string): Rewrite {
    if (!data.startsWith(TEXT_HEAD)) return data;
    if (keyAt(data, '"usage":{') === -1) {
      // Non-final chunks: `finish_reason:""` is "not finished yet" in TGI's completions.
      const s = replaceFinishReason(data, '', 'null');
      return this.#fast(s, TEXT_HEAD);
    }
    const o = parseChunk(data);
    const choices = o?.['choices'];
    if (!o || !Array.isArray(choices)) return data;
    o['id'] = this.streamId;
    for (const c of choices) {
      const f = isObject(c) ? c['finish_reason'] : undefined;
      if (isObject(c) && typeof f === 'string' && Object.hasOwn(FINISH, f)) c['finish_reason'] = FINISH[f];
    }
    const rebuilt = envelope(o, choices);
    rebuilt['usage'] = o['usage'];
    return splitUsage(rebuilt).map((c) => JSON.stringify(c));
  }
}

/** TGI's `{"error":"…","error_type":"…"}` (or, from 2.4.1, an OpenAI-shaped `{"error":{…}}`) as OpenAI's error. */
export function tgiError(data: string): OpenAIErrorObject {
  const o = parseChunk(data) ?? {};
  const kind = typeof o['error_type'] === 'string' ? o['error_type'] : undefined;
  const e = normalizeUpstreamError(o, kind === undefined ? 500 : (ERROR_STATUS[kind] ?? 500));
  return e.code === null && kind !== undefined ? { ...e, code: kind } : e;
}
