import { randomBytes } from 'node:crypto';
import { argumentPieces, frame, tokenBytes, type ChatWriter, type CompletionWriter, type SimDialect, type SimLogprob, type StreamContext, type Usage } from './dialect.ts';
import { pyDumps } from './py-json.ts';

/**
 * vLLM's OpenAI server, v0.10.2–v0.11 (vllm-project/vllm `vllm/entrypoints/openai/serving_chat.py`
 * `chat_completion_stream_generator`, `serving_completion.py` `completion_stream_generator`, `protocol.py`,
 * `serving_engine.py` `create_streaming_error_response`): compact JSON with `logprobs:null`, `token_ids:null` and
 * `stop_reason` extras; a role chunk per choice; the usage chunk has `choices:[]` and only comes with
 * `stream_options.include_usage`; `[DONE]` ends every stream, also after an error frame, which is spaced `json.dumps`.
 * With `continuous_usage_stats` (and include_usage), every chunk carries the running usage after `choices`, its
 * `completion_tokens` counting that choice's tokens so far (`previous_num_tokens[i]` in serving_chat.py).
 * Recorded shapes: test/fixtures/dialects/vllm/; DESIGN.md has an example.
 */
const head = (ctx: StreamContext, object: string): string =>
  `{"id":"${ctx.id}","object":"${object}","created":${ctx.created},"model":${JSON.stringify(ctx.model)},"choices":[`;

function usageJson(u: Usage): string {
  return `{"prompt_tokens":${u.prompt_tokens},"total_tokens":${u.total_tokens},"completion_tokens":${u.completion_tokens}}`;
}

/** `ChatCompletionLogProbs` (protocol.py): token, logprob, bytes, top_logprobs. */
function logprobsJson(lp: SimLogprob): string {
  const top = lp.top.map((t) => `{"token":${JSON.stringify(t.token)},"logprob":${t.logprob},"bytes":${JSON.stringify(tokenBytes(t.token))}}`);
  return `{"content":[{"token":${JSON.stringify(lp.token)},"logprob":${lp.logprob},"bytes":${JSON.stringify(tokenBytes(lp.token))},"top_logprobs":[${top.join(',')}]}]}`;
}

/** `,"usage":{…}` with the running counts when the request asked for continuous usage stats, else ''. */
function runningUsage(ctx: StreamContext, completion: number): string {
  if (!ctx.continuousUsage) return '';
  const p = ctx.usage.prompt_tokens;
  return `,"usage":${usageJson({ prompt_tokens: p, completion_tokens: completion, total_tokens: p + completion })}`;
}

function chat(ctx: StreamContext): ChatWriter {
  const h = head(ctx, 'chat.completion.chunk');
  const delta = (i: number, d: string, lp = 'null'): string =>
    frame(`${h}{"index":${i},"delta":${d},"logprobs":${lp},"finish_reason":null,"token_ids":null}]${runningUsage(ctx, ctx.tokensSoFar)}}`);
  return {
    start: () => {
      let out = '';
      for (let i = 0; i < ctx.n; i++) out += frame(`${h}{"index":${i},"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]${runningUsage(ctx, 0)},"prompt_token_ids":null}`);
      return out;
    },
    reasoning: (i, text) => delta(i, `{"reasoning_content":${JSON.stringify(text)}}`),
    content: (i, text, lp) => delta(i, `{"content":${JSON.stringify(text)}}`, lp ? logprobsJson(lp) : 'null'),
    toolCall: (i, call) => {
      // tool_parsers/hermes_tool_parser.py: the name first (DeltaToolCall key order id,type,index,function), then
      // the json.dumps arguments in pieces.
      let out = delta(i, `{"tool_calls":[{"id":"chatcmpl-tool-${randomBytes(16).toString('hex')}","type":"function","index":0,"function":{"name":${JSON.stringify(call.name)}}}]}`);
      for (const piece of argumentPieces(pyDumps(call.args))) out += delta(i, `{"tool_calls":[{"index":0,"function":{"arguments":${JSON.stringify(piece)}}}]}`);
      return out;
    },
    finish: (i, reason, last) =>
      frame(
        `${h}{"index":${i},"delta":${reason === 'tool_calls' ? '{}' : `{"content":${JSON.stringify(last)}}`},"logprobs":null,"finish_reason":"${reason}","stop_reason":null,"token_ids":null}]${runningUsage(ctx, ctx.usage.completion_tokens / ctx.n)}}`,
      ),
    end: () => (ctx.includeUsage ? frame(`${h}],"usage":${usageJson(ctx.usage)}}`) : '') + 'data: [DONE]\n\n',
    // Newer vLLM reports a GenerationError as InternalServerError/500; v0.11 says BadRequestError/400 for everything.
    error: (message) => frame(pyDumps({ error: { message, type: 'InternalServerError', param: null, code: 500 } })) + 'data: [DONE]\n\n',
  };
}

function completion(ctx: StreamContext): CompletionWriter {
  // model_dump_json(exclude_unset=False): every field, nulls included (v0.11.1+, where prompt_token_ids is null).
  const h = head(ctx, 'text_completion');
  // Every field, so `usage` is on every chunk: null, or the running counts with continuous usage stats.
  const choice = (i: number, text: string, finish: string, completion: number): string =>
    frame(
      `${h}{"index":${i},"text":${JSON.stringify(text)},"logprobs":null,"finish_reason":${finish},"stop_reason":null,"prompt_token_ids":null,"token_ids":null}]${runningUsage(ctx, completion) || ',"usage":null'}}`,
    );
  return {
    content: (i, text) => choice(i, text, 'null', ctx.tokensSoFar),
    finish: (i, reason, last) => choice(i, last, `"${reason}"`, ctx.usage.completion_tokens / ctx.n),
    end: () => (ctx.includeUsage ? frame(`${h}],"usage":${usageJson(ctx.usage)}}`) : '') + 'data: [DONE]\n\n',
    error: (message) => frame(pyDumps({ error: { message, type: 'InternalServerError', param: null, code: 500 } })) + 'data: [DONE]\n\n',
  };
}

export const vllm: SimDialect = {
  name: 'vllm',
  streamHeaders: { 'content-type': 'text/event-stream; charset=utf-8' },
  commonHeaders: { server: 'uvicorn' },
  maxChoices: 8,
  responses: true,
  rejectsStreamOptionsWithoutStream: true,
  // random_uuid(): 32 hex characters.
  streamId: (kind) => `${kind === 'chat' ? 'chatcmpl' : kind === 'completion' ? 'cmpl' : 'resp'}-${randomBytes(16).toString('hex')}`,
  modelsBody: (models, created) =>
    JSON.stringify({
      object: 'list',
      data: models.map((id) => ({ id, object: 'model', created, owned_by: 'vllm', root: id, parent: null, max_model_len: 32768 })),
    }),
  engineGet: (path) => (path === '/version' ? { status: 200, contentType: 'application/json', body: '{"version":"0.11.0+sluice-sim"}' } : undefined),
  chat,
  completion,
  errorBody: (message, status, type) => JSON.stringify({ error: { message, type, param: null, code: status } }),
};
