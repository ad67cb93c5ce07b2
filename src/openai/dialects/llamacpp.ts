import { parseChunk, splitUsage } from './chunk-object.ts';
import { finishReasonOf, keyAt, replaceOnce } from './chunk-text.ts';
import { DialectNormalizer, type Rewrite } from './dialect-normalizer.ts';

const NULL_ROLE = '"role":"assistant","content":null';

/**
 * llama.cpp's llama-server (ggml-org/llama.cpp `tools/server/server-task.cpp`
 * `server_task_result_cmpl_partial::to_json_oaicompat_chat`, `server_task_result_cmpl_final::to_json_oaicompat`;
 * docs/engines.md "llama.cpp"):
 * - the role chunk says `content:null`: `""`, as OpenAI and vLLM write it; a stream without a role chunk gets one;
 * - completions: the EOS token's empty partial is dropped, and the final frame's `usage` (always sent, whatever
 *   `include_usage` says) moves to OpenAI's separate `choices: []` usage chunk, with `timings`;
 * - no `[DONE]` after an error frame: the relay ends with the error frame, as for every engine.
 * `timings` and the key order (`choices` first, `object` last) are kept: clients do not depend on either.
 */
export class LlamaCppNormalizer extends DialectNormalizer {
  #roleSeen = false;

  protected override get nativeReasoning(): 'reasoning_content' {
    return 'reasoning_content';
  }

  protected rewrite(data: string): Rewrite {
    if (data.startsWith('{"error"')) return data;
    return this.kind === 'chat' ? this.#chat(data) : this.#completion(data);
  }

  #chat(data: string): Rewrite {
    // `{"choices":[{"finish_reason":…,"index":0,"delta":{` comes first: the role, when there is one, follows at once.
    const delta = data.indexOf('"delta":{');
    if (delta !== -1 && data.startsWith('"role":"assistant"', delta + 9)) {
      this.#roleSeen = true;
      return replaceOnce(data, NULL_ROLE, '"role":"assistant","content":""');
    }
    if (!this.#roleSeen && keyAt(data, '"choices":[{') !== -1) {
      this.#roleSeen = true;
      const o = parseChunk(data);
      if (o) return [this.roleChunk(o, 0), data];
    }
    return data;
  }

  #completion(data: string): Rewrite {
    if (keyAt(data, '"usage":{') !== -1) {
      const o = parseChunk(data);
      return o ? splitUsage(o).map((c) => JSON.stringify(c)) : data;
    }
    // process_token sends the EOS token as a partial before the stop check: an empty chunk that finishes nothing.
    if (data.indexOf('{"text":"",') !== -1 && finishReasonOf(data) === undefined) return null;
    return data;
  }
}
