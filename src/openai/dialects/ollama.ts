import { parseChunk } from './chunk-object.ts';
import { cutTail, finishReasonOf, replaceFinishReason, replaceLeadingId } from './chunk-text.ts';
import { DialectNormalizer, type Rewrite } from './dialect-normalizer.ts';

const ZERO_USAGE = ',"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}';
const ROLE = '"delta":{"role":"assistant",';
const EMPTY_CONTENT = '"content":"",';
const NOT_FINISHED = '"finish_reason":null}]}';

/**
 * Ollama's OpenAI layer (ollama/ollama `middleware/openai.go` `ChatWriter.writeResponse`, `CompleteWriter`;
 * `openai/openai.go` `ChatCompletionChunk`; docs/engines.md "Ollama"):
 * - no role chunk, and `role:"assistant"` on every delta: a role chunk is synthesized first and later roles dropped;
 * - `content:""` next to `reasoning` or `tool_calls`: dropped, so a reasoning or tool delta carries only that;
 * - ids `chatcmpl-<0..998>` collide across requests: one unique id per stream;
 * - finish `stop` after a tool call (older releases) becomes `tool_calls`; the internal `load`/`unload` become `stop`;
 * - completions with `include_usage` carry an all-zero `usage` on every chunk: cut (the real one comes last);
 * - an error after headers reaches the client as one blank chunk with `"model":""` and the stream ends without
 *   `[DONE]` (the error text is lost in `ChatWriter.Write`): it becomes an error frame.
 * The whole tool call in one delta is valid OpenAI streaming and is passed on as it is. A content chunk is rewritten
 * with searches that stop near its start and one concatenation.
 */
export class OllamaNormalizer extends DialectNormalizer {
  override readonly choices = 1;
  #roleSent = false;
  #toolSeen = false;

  protected override get nativeReasoning(): 'reasoning' {
    return 'reasoning';
  }

  protected rewrite(data: string): Rewrite {
    if (data.startsWith('{"error"')) return data;
    const model = data.indexOf('"model":"');
    if (model !== -1 && data.charCodeAt(model + 9) === 0x22 /* " */) {
      return { error: { message: 'the engine (Ollama) failed while generating and did not report why', type: 'server_error', param: null, code: 'upstream_error' } };
    }
    const choices = data.indexOf('"choices":[');
    if (choices !== -1 && data.charCodeAt(choices + 11) === 0x5d /* ] */) return replaceLeadingId(data, this.streamId); // usage
    if (this.kind === 'completion') return this.#finish(cutTail(replaceLeadingId(data, this.streamId), ZERO_USAGE));

    // One concatenation: our id, the envelope, `"delta":{` without the role (and without `content:""` before
    // `reasoning` or `tool_calls`), the rest.
    const idEnd = data.startsWith('{"id":"') ? data.indexOf('"', 7) : -1;
    const role = data.indexOf(ROLE, choices);
    let s = data;
    if (idEnd !== -1 && role !== -1) {
      let rest = role + ROLE.length;
      if (data.startsWith(EMPTY_CONTENT, rest) && (data.startsWith('"reasoning":', rest + EMPTY_CONTENT.length) || data.startsWith('"tool_calls":', rest + EMPTY_CONTENT.length))) {
        if (data.charCodeAt(rest + EMPTY_CONTENT.length + 1) === 0x74 /* t */) this.#toolSeen = true;
        rest += EMPTY_CONTENT.length;
      }
      s = `{"id":"${this.streamId}${data.slice(idEnd, role)}"delta":{${data.slice(rest)}`;
    } else {
      s = replaceLeadingId(data, this.streamId);
    }
    if (!s.endsWith(NOT_FINISHED)) s = this.#finish(s);
    if (this.#roleSent) return s;
    this.#roleSent = true;
    const o = parseChunk(s);
    return o ? [this.roleChunk(o, 0), s] : s;
  }

  #finish(s: string): string {
    const reason = finishReasonOf(s);
    if (reason === undefined) return s;
    if (reason === 'stop' && this.#toolSeen) return replaceFinishReason(s, 'stop', '"tool_calls"');
    if (reason === 'load' || reason === 'unload') return replaceFinishReason(s, reason, '"stop"');
    return s;
  }
}
