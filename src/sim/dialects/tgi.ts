import { frame, type ChatWriter, type CompletionWriter, type SimDialect, type SimLogprob, type StreamContext, type Usage } from './dialect.ts';

/**
 * TGI v2.3 (huggingface/text-generation-inference `router/src/server.rs` `chat_completions`, `completions`,
 * `generate_stream_internal`; `router/src/lib.rs` `CompletionType` (`#[serde(tag="object")]`, so `object` first),
 * `ChatCompletionChunk`, `Completion`): `id:""`, `role:"assistant"` and `usage:null` on every chunk, no role chunk;
 * the finish (and, when asked, the usage) rides on the last token; completions say `finish_reason:""` until the end
 * and then `eos_token`/`length`, with usage always; tool calls are the raw grammar JSON
 * `{"function": {"_name": …}}` in a `tool_calls` object, finishing with `stop`; errors are
 * `{"error":"…","error_type":"…"}` followed by `[DONE]`. One choice; no `/v1/responses`.
 * Recorded shapes: test/fixtures/dialects/tgi/.
 */
const FINGERPRINT = '2.3.1-sha-a094729';
const EOS_TEXT = '<|eot_id|>';

function usageJson(u: Usage): string {
  return `{"prompt_tokens":${u.prompt_tokens},"completion_tokens":${u.completion_tokens},"total_tokens":${u.total_tokens}}`;
}

/** ChatCompletionLogprobs: token, logprob, top_logprobs; no `bytes`. */
function logprobsJson(lp: SimLogprob): string {
  const top = lp.top.map((t) => `{"token":${JSON.stringify(t.token)},"logprob":${t.logprob}}`);
  return `{"content":[{"token":${JSON.stringify(lp.token)},"logprob":${lp.logprob},"top_logprobs":[${top.join(',')}]}]}`;
}

/** The grammar's output, token by token: `{"function": {"_name": "get_weather", "city": "Paris"}}`. */
function grammarTokens(name: string, args: Record<string, string | number | boolean>): string[] {
  const tokens = ['{"function":', ` {"_name":`, ` ${JSON.stringify(name)}`];
  for (const [k, v] of Object.entries(args)) tokens.push(`, ${JSON.stringify(k)}:`, ` ${JSON.stringify(v)}`);
  tokens.push('}}');
  return tokens;
}

const errorFrame = (message: string): string =>
  frame(JSON.stringify({ error: `Request failed during generation: Server error: ${message}`, error_type: 'generation' })) + 'data: [DONE]\n\n';

function chat(ctx: StreamContext): ChatWriter {
  const h = `{"object":"chat.completion.chunk","id":"","created":${ctx.created},"model":${JSON.stringify(ctx.model)},"system_fingerprint":"${FINGERPRINT}","choices":[`;
  const chunk = (delta: string, finish = 'null', lp = 'null', usage = 'null'): string =>
    frame(`${h}{"index":0,"delta":{"role":"assistant",${delta}},"logprobs":${lp},"finish_reason":${finish}}],"usage":${usage}}`);
  const tool = (args: string, finish = 'null', usage = 'null'): string =>
    chunk(`"tool_calls":{"index":0,"id":"","type":"function","function":{"name":null,"arguments":${JSON.stringify(args)}}}`, finish, 'null', usage);
  let inTool = false;
  return {
    start: () => '',
    // TGI has no reasoning field: a thinking model's text is content.
    reasoning: (_i, text) => chunk(`"content":${JSON.stringify(text)}`),
    content: (_i, text, lp) => chunk(`"content":${JSON.stringify(text)}`, 'null', lp ? logprobsJson(lp) : 'null'),
    toolCall: (_i, call) => {
      inTool = true;
      return grammarTokens(call.name, call.args).map((t) => tool(t)).join('');
    },
    finish: (_i, reason, last) => {
      const usage = ctx.includeUsage ? usageJson(ctx.usage) : 'null';
      // In tool mode special tokens are not filtered, so the EOS text lands in the arguments; the finish is `stop`.
      if (inTool) return tool(EOS_TEXT, reason === 'length' ? '"length"' : '"stop"', usage);
      return chunk(`"content":${JSON.stringify(last)}`, `"${reason}"`, 'null', usage);
    },
    end: () => 'data: [DONE]\n\n',
    error: errorFrame,
  };
}

function completion(ctx: StreamContext): CompletionWriter {
  const model = JSON.stringify(ctx.model);
  return {
    // Completion::Chunk: key order object,id,created,choices,model,system_fingerprint; finish_reason "" until the end.
    content: (i, text) =>
      frame(`{"object":"text_completion","id":"","created":${ctx.created},"choices":[{"index":${i},"text":${JSON.stringify(text)},"logprobs":null,"finish_reason":""}],"model":${model},"system_fingerprint":"${FINGERPRINT}"}`),
    // Completion::Final: FinishReason::to_string (eos_token, length, stop_sequence) and usage, always.
    finish: (i, reason, last) =>
      frame(`{"object":"text_completion","id":"","created":${ctx.created},"model":${model},"system_fingerprint":"${FINGERPRINT}","choices":[{"index":${i},"text":${JSON.stringify(last)},"logprobs":null,"finish_reason":"${reason === 'stop' ? 'eos_token' : reason}"}],"usage":${usageJson(ctx.usage)}}`),
    end: () => 'data: [DONE]\n\n',
    error: errorFrame,
  };
}

const ERROR_TYPES: Record<number, string> = { 422: 'validation', 424: 'generation', 429: 'overloaded' };

export const tgi: SimDialect = {
  name: 'tgi',
  streamHeaders: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-compute-type': 'gpu+optimized', 'x-accel-buffering': 'no' },
  commonHeaders: {},
  maxChoices: 1,
  responses: false,
  rejectsStreamOptionsWithoutStream: false,
  streamId: () => '',
  // ModelsInfo: owned_by is the model id, created 0.
  modelsBody: (models) => JSON.stringify({ object: 'list', data: models.map((id) => ({ id, object: 'model', created: 0, owned_by: id })) }),
  engineGet: (path, models) => {
    if (path === '/info') {
      const info = { model_id: models[0] ?? 'model', model_sha: null, model_pipeline_tag: 'text-generation', max_concurrent_requests: 128, max_best_of: 2, max_stop_sequences: 4, max_input_tokens: 4095, max_total_tokens: 4096, validation_workers: 2, max_client_batch_size: 4, router: 'text-generation-router', version: '2.3.1', sha: 'a094729', docker_label: 'sha-a094729' };
      return { status: 200, contentType: 'application/json', body: JSON.stringify(info) };
    }
    if (path === '/health') return { status: 200, contentType: 'application/json', body: '' };
    return undefined;
  },
  chat,
  completion,
  errorBody: (message, status) => JSON.stringify({ error: message, error_type: ERROR_TYPES[status] ?? (status >= 500 ? 'generation' : 'validation') }),
};
