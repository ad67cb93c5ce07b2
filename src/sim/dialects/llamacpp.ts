import { randomInt } from 'node:crypto';
import { argumentPieces, frame, tokenBytes, type ChatWriter, type CompletionWriter, type SimDialect, type SimLogprob, type StreamContext, type Usage } from './dialect.ts';

/**
 * llama.cpp's llama-server, ≈b6500–b7100 (ggml-org/llama.cpp `tools/server/server-task.cpp`
 * `server_task_result_cmpl_partial::to_json_oaicompat_chat`, `server_task_result_cmpl_final::to_json_oaicompat_chat_stream`,
 * `::to_json_oaicompat`; `server-common.cpp` `format_oai_sse`; `server.cpp` `handle_completions_impl`):
 * nlohmann `ordered_json` in insertion order (`choices` first, `object` last); the role chunk comes with the first
 * token and says `content:null`; `timings` on the last frame; completions always carry usage on the final frame and
 * an id `chatcmpl-…`; an error frame ends the stream with no `[DONE]`; `Server: llama.cpp` on every response.
 * Recorded shapes: test/fixtures/dialects/llamacpp/.
 */
const FINGERPRINT = 'b6810-7e994168';
const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** `random_string()` (server-common.cpp): 32 alphanumeric characters. */
function randomString(): string {
  let s = '';
  for (let i = 0; i < 32; i++) s += ALNUM[randomInt(ALNUM.length)];
  return s;
}

function llamacppId(): string {
  return `chatcmpl-${randomString()}`;
}

function usageJson(u: Usage): string {
  return `{"completion_tokens":${u.completion_tokens},"prompt_tokens":${u.prompt_tokens},"total_tokens":${u.total_tokens}}`;
}

/** `result_timings::to_json`, with simulated but self-consistent numbers. */
function timingsJson(u: Usage): string {
  const promptMs = u.prompt_tokens * 2.5;
  const predictedMs = u.completion_tokens * 15.25;
  const per = (ms: number, n: number): number => (n > 0 ? ms / n : 0);
  const rate = (ms: number, n: number): number => (ms > 0 ? (1e3 * n) / ms : 0);
  return `{"cache_n":0,"prompt_n":${u.prompt_tokens},"prompt_ms":${promptMs},"prompt_per_token_ms":${per(promptMs, u.prompt_tokens)},"prompt_per_second":${rate(promptMs, u.prompt_tokens)},"predicted_n":${u.completion_tokens},"predicted_ms":${predictedMs},"predicted_per_token_ms":${per(predictedMs, u.completion_tokens)},"predicted_per_second":${rate(predictedMs, u.completion_tokens)}}`;
}

/** `completion_token_output::probs_vector_to_json`: an extra token `id`, then token, bytes, logprob. */
function logprobsJson(lp: SimLogprob): string {
  const entry = (token: string, logprob: number, k: number): string => `"id":${1000 + k},"token":${JSON.stringify(token)},"bytes":${JSON.stringify(tokenBytes(token))},"logprob":${logprob}`;
  const top = lp.top.map((t, k) => `{${entry(t.token, t.logprob, k + 1)}}`);
  return `{"content":[{${entry(lp.token, lp.logprob, 0)},"top_logprobs":[${top.join(',')}]}]}`;
}

function chat(ctx: StreamContext): ChatWriter {
  const tail = `],"created":${ctx.created},"id":"${ctx.id}","model":${JSON.stringify(ctx.model)},"system_fingerprint":"${FINGERPRINT}","object":"chat.completion.chunk"`;
  const chunk = (i: number, delta: string, finish = 'null', lp = ''): string => frame(`{"choices":[{"finish_reason":${finish},"index":${i},"delta":${delta}${lp}}${tail}}`);
  const roleSent = new Set<number>();
  // The role chunk is sent with the first token of each choice (n_decoded == 1), not before.
  const role = (i: number): string => {
    if (roleSent.has(i)) return '';
    roleSent.add(i);
    return chunk(i, '{"role":"assistant","content":null}');
  };
  return {
    start: () => '',
    reasoning: (i, text) => role(i) + chunk(i, `{"reasoning_content":${JSON.stringify(text)}}`),
    content: (i, text, lp) => role(i) + chunk(i, `{"content":${JSON.stringify(text)}}`, 'null', lp ? `,"logprobs":${logprobsJson(lp)}` : ''),
    toolCall: (i, call) => {
      // common_chat_msg_diff_to_json_oaicompat: index,id,type,function{name,arguments:""} first; id/type only there.
      let out = role(i) + chunk(i, `{"tool_calls":[{"index":0,"id":"${randomString()}","type":"function","function":{"name":${JSON.stringify(call.name)},"arguments":""}}]}`);
      for (const piece of argumentPieces(JSON.stringify(call.args))) out += chunk(i, `{"tool_calls":[{"index":0,"function":{"arguments":${JSON.stringify(piece)}}}]}`);
      return out;
    },
    // timings go on the last frame of the final result: the usage chunk when there is one, else the finish chunk.
    finish: (i, reason, last) =>
      role(i) +
      (last ? chunk(i, `{"content":${JSON.stringify(last)}}`) : '') +
      (ctx.includeUsage || i < ctx.n - 1 ? chunk(i, '{}', `"${reason}"`) : frame(`{"choices":[{"finish_reason":"${reason}","index":${i},"delta":{}}${tail},"timings":${timingsJson(ctx.usage)}}`)),
    end: () => (ctx.includeUsage ? frame(`{"choices":[${tail},"usage":${usageJson(ctx.usage)},"timings":${timingsJson(ctx.usage)}}`) : '') + 'data: [DONE]\n\n',
    error: (message) => frame(`{"error":{"code":500,"message":${JSON.stringify(message)},"type":"server_error"}}`),
  };
}

function completion(ctx: StreamContext): CompletionWriter {
  const mid = `"created":${ctx.created},"model":${JSON.stringify(ctx.model)},"system_fingerprint":"${FINGERPRINT}","object":"text_completion"`;
  const partial = (i: number, text: string): string => frame(`{"choices":[{"text":${JSON.stringify(text)},"index":${i},"logprobs":null,"finish_reason":null}],${mid},"id":"${ctx.id}"}`);
  return {
    content: partial,
    finish: (i, reason, last) => {
      // process_token sends the EOS token as a partial (empty text) before the stop check; then the final result,
      // which always carries usage (not gated by include_usage) and timings, with `id` after `usage`.
      const eos = reason === 'stop' ? partial(i, '') : '';
      return `${last ? partial(i, last) : ''}${eos}${frame(`{"choices":[{"text":"","index":${i},"logprobs":null,"finish_reason":"${reason}"}],${mid},"usage":${usageJson(ctx.usage)},"id":"${ctx.id}","timings":${timingsJson(ctx.usage)}}`)}`;
    },
    end: () => 'data: [DONE]\n\n',
    error: (message) => frame(`{"error":{"code":500,"message":${JSON.stringify(message)},"type":"server_error"}}`),
  };
}

const ERROR_TYPES: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  403: 'permission_error',
  404: 'not_found_error',
  501: 'not_supported_error',
  503: 'unavailable_error',
};

export const llamacpp: SimDialect = {
  name: 'llamacpp',
  streamHeaders: { 'content-type': 'text/event-stream' },
  commonHeaders: { server: 'llama.cpp' },
  maxChoices: 8,
  responses: true,
  rejectsStreamOptionsWithoutStream: false,
  // gen_chatcmplid(), on /v1/completions too.
  streamId: () => llamacppId(),
  // An Ollama-style `models` array comes first, then OpenAI's `data` with owned_by "llamacpp".
  modelsBody: (models, created) =>
    JSON.stringify({
      models: models.map((id) => ({ name: id, model: id, modified_at: '', size: '', digest: '', type: 'model', description: '', tags: [''], capabilities: ['completion'], parameters: '', details: { parent_model: '', format: 'gguf', family: '', families: [''], parameter_size: '', quantization_level: '' } })),
      object: 'list',
      data: models.map((id) => ({ id, object: 'model', created, owned_by: 'llamacpp', meta: { vocab_type: 2, n_vocab: 151936, n_ctx_train: 32768, n_embd: 3584, n_params: 7615616512, size: 4677120000 } })),
    }),
  engineGet: (path, models) => {
    if (path === '/health') return { status: 200, contentType: 'application/json; charset=utf-8', body: '{"status":"ok"}' };
    if (path === '/props') return { status: 200, contentType: 'application/json; charset=utf-8', body: JSON.stringify({ model_path: `${models[0] ?? 'model'}.gguf`, build_info: FINGERPRINT }) };
    return undefined;
  },
  chat,
  completion,
  errorBody: (message, status) => JSON.stringify({ error: { code: status, message, type: ERROR_TYPES[status] ?? 'server_error' } }),
};
