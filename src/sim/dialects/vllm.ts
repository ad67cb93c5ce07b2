import type { SimDialect, StreamContext, Usage } from './dialect.ts';

/**
 * vLLM's OpenAI server (vllm/entrypoints/openai/serving_chat.py, serving_completion.py): compact JSON with
 * `logprobs:null`, `token_ids:null` and `stop_reason` extras; the usage chunk has `choices:[]` and only comes with
 * `stream_options.include_usage`; `[DONE]` ends every stream, also after an error frame.
 * See DESIGN.md for a recorded example; docs/engines.md for sources.
 */
const head = (ctx: StreamContext, object: string): string =>
  `{"id":"${ctx.id}","object":"${object}","created":${ctx.created},"model":${JSON.stringify(ctx.model)},"choices":[`;

const frame = (json: string): string => `data: ${json}\n\n`;

function usageJson(u: Usage): string {
  return `{"prompt_tokens":${u.prompt_tokens},"total_tokens":${u.total_tokens},"completion_tokens":${u.completion_tokens}}`;
}

export const vllm: SimDialect = {
  name: 'vllm',
  ownedBy: 'vllm',
  streamHeaders: { 'content-type': 'text/event-stream; charset=utf-8' },
  commonHeaders: { server: 'uvicorn' },
  chatRole: (ctx, i) =>
    frame(
      `${head(ctx, 'chat.completion.chunk')}{"index":${i},"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"prompt_token_ids":null}`,
    ),
  chatDelta: (ctx, i, text) =>
    frame(
      `${head(ctx, 'chat.completion.chunk')}{"index":${i},"delta":{"content":${JSON.stringify(text)}},"logprobs":null,"finish_reason":null,"token_ids":null}]}`,
    ),
  chatFinish: (ctx, i, reason) =>
    frame(
      `${head(ctx, 'chat.completion.chunk')}{"index":${i},"delta":{"content":""},"logprobs":null,"finish_reason":"${reason}","stop_reason":null,"token_ids":null}]}`,
    ),
  chatUsage: (ctx, u, requested) =>
    requested ? frame(`${head(ctx, 'chat.completion.chunk')}],"usage":${usageJson(u)}}`) : null,
  completionDelta: (ctx, i, text) =>
    frame(
      `${head(ctx, 'text_completion')}{"index":${i},"text":${JSON.stringify(text)},"logprobs":null,"finish_reason":null,"stop_reason":null}]}`,
    ),
  completionFinish: (ctx, i, reason) =>
    frame(
      `${head(ctx, 'text_completion')}{"index":${i},"text":"","logprobs":null,"finish_reason":"${reason}","stop_reason":null}]}`,
    ),
  completionUsage: (ctx, u, requested) =>
    requested ? frame(`${head(ctx, 'text_completion')}],"usage":${usageJson(u)}}`) : null,
  errorFrames: (message, status) =>
    frame(JSON.stringify({ error: { message, type: 'InternalServerError', param: null, code: status } })) +
    'data: [DONE]\n\n',
  done: 'data: [DONE]\n\n',
  errorBody: (message, status, type) => JSON.stringify({ error: { message, type, param: null, code: status } }),
};
