import { randomBytes } from 'node:crypto';
import { argumentPieces, frame, tokenBytes, type ChatWriter, type CompletionWriter, type SimDialect, type SimLogprob, type StreamContext } from './dialect.ts';
import { pyDumps } from './py-json.ts';

/**
 * SGLang v0.5.x, the pydantic era (sgl-project/sglang `python/sglang/srt/entrypoints/openai/serving_chat.py`
 * `_generate_chat_stream`, `serving_completions.py` `_generate_completion_stream`, `protocol.py`,
 * `serving_base.py` `create_streaming_error_response`): `chunk.model_dump_json()` with no exclusions, so every delta
 * spells out `role`, `content`, `reasoning_content` and `tool_calls`, and every chunk ends with `"usage":null`; a
 * bare hex id; `matched_stop` (the EOS token id); the finish chunks come after all content; errors are spaced
 * `json.dumps` frames followed by `[DONE]`. Recorded shapes: test/fixtures/dialects/sglang/.
 */
const EOS_TOKEN_ID = 151645;

function logprobsJson(lp: SimLogprob): string {
  // ChatCompletionTokenLogprob / TopLogprob: token, bytes, logprob (bytes before logprob).
  const top = lp.top.map((t) => `{"token":${JSON.stringify(t.token)},"bytes":${JSON.stringify(tokenBytes(t.token))},"logprob":${t.logprob}}`);
  return `{"content":[{"token":${JSON.stringify(lp.token)},"bytes":${JSON.stringify(tokenBytes(lp.token))},"logprob":${lp.logprob},"top_logprobs":[${top.join(',')}]}]}`;
}

const errorFrame = (message: string): string =>
  frame(pyDumps({ error: { object: 'error', message, type: 'BadRequestError', param: null, code: 400 } })) + 'data: [DONE]\n\n';

function chat(ctx: StreamContext): ChatWriter {
  const h = `{"id":"${ctx.id}","object":"chat.completion.chunk","created":${ctx.created},"model":${JSON.stringify(ctx.model)},"choices":[`;
  const chunk = (i: number, role: string, content: string, reasoning: string, tools: string, finish: string, matched: string, lp = 'null'): string =>
    frame(`${h}{"index":${i},"delta":{"role":${role},"content":${content},"reasoning_content":${reasoning},"tool_calls":${tools}},"logprobs":${lp},"finish_reason":${finish},"matched_stop":${matched}}],"usage":null}`);
  return {
    start: () => {
      let out = '';
      for (let i = 0; i < ctx.n; i++) out += chunk(i, '"assistant"', '""', 'null', 'null', 'null', 'null');
      return out;
    },
    reasoning: (i, text) => chunk(i, 'null', 'null', JSON.stringify(text), 'null', 'null', 'null'),
    content: (i, text, lp) => chunk(i, 'null', JSON.stringify(text), 'null', 'null', 'null', 'null', lp ? logprobsJson(lp) : 'null'),
    toolCall: (i, call) => {
      // _process_tool_call_stream: the first item has the id (call_ + 24 hex) and the name with empty arguments;
      // the rest repeat type and carry null id and name.
      const id = `call_${randomBytes(12).toString('hex')}`;
      let out = chunk(i, 'null', 'null', 'null', `[{"id":"${id}","index":0,"type":"function","function":{"name":${JSON.stringify(call.name)},"arguments":""}}]`, 'null', 'null');
      for (const piece of argumentPieces(pyDumps(call.args))) {
        out += chunk(i, 'null', 'null', 'null', `[{"id":null,"index":0,"type":"function","function":{"name":null,"arguments":${JSON.stringify(piece)}}}]`, 'null', 'null');
      }
      return out;
    },
    // The finish chunk is written after the generation loop, on its own, with an all-null delta.
    finish: (i, reason, last) =>
      (last ? chunk(i, 'null', JSON.stringify(last), 'null', 'null', 'null', 'null') : '') +
      chunk(i, 'null', 'null', 'null', 'null', `"${reason}"`, reason === 'length' ? 'null' : String(EOS_TOKEN_ID)),
    end: () => {
      const u = ctx.usage;
      const usage = ctx.includeUsage
        ? frame(`${h}],"usage":{"prompt_tokens":${u.prompt_tokens},"total_tokens":${u.total_tokens},"completion_tokens":${u.completion_tokens},"prompt_tokens_details":null,"reasoning_tokens":0}}`)
        : '';
      return `${usage}data: [DONE]\n\n`;
    },
    error: errorFrame,
  };
}

function completion(ctx: StreamContext): CompletionWriter {
  const h = `{"id":"${ctx.id}","object":"text_completion","created":${ctx.created},"model":${JSON.stringify(ctx.model)},"choices":[`;
  const choice = (i: number, text: string, finish: string, matched: string): string =>
    frame(`${h}{"index":${i},"text":${JSON.stringify(text)},"logprobs":null,"finish_reason":${finish},"matched_stop":${matched}}],"usage":null}`);
  return {
    content: (i, text) => choice(i, text, 'null', 'null'),
    // Completions put the finish on the last content chunk.
    finish: (i, reason, last) => choice(i, last, `"${reason}"`, reason === 'length' ? 'null' : String(EOS_TOKEN_ID)),
    end: () => {
      const u = ctx.usage;
      // The usage chunk is model_dump_json(exclude_none=True): no prompt_tokens_details.
      const usage = ctx.includeUsage ? frame(`${h}],"usage":{"prompt_tokens":${u.prompt_tokens},"total_tokens":${u.total_tokens},"completion_tokens":${u.completion_tokens},"reasoning_tokens":0}}`) : '';
      return `${usage}data: [DONE]\n\n`;
    },
    error: errorFrame,
  };
}

export const sglang: SimDialect = {
  name: 'sglang',
  streamHeaders: { 'content-type': 'text/event-stream; charset=utf-8' },
  commonHeaders: { server: 'uvicorn' },
  maxChoices: 8,
  responses: true,
  rejectsStreamOptionsWithoutStream: false,
  // The request id: a bare uuid4 hex, no chatcmpl- prefix (sglang PR #17156 capture).
  streamId: () => randomBytes(16).toString('hex'),
  // ModelCard (protocol.py): no `permission` array, which tells it apart from vLLM.
  modelsBody: (models, created) =>
    JSON.stringify({ object: 'list', data: models.map((id) => ({ id, object: 'model', created, owned_by: 'sglang', root: id, parent: null, max_model_len: 32768 })) }),
  engineGet: () => undefined,
  chat,
  completion,
  // Before headers: a top-level {"object":"error",…} with no `error` wrapper (v0.5.15–v0.5.17).
  errorBody: (message, status, type) => JSON.stringify({ object: 'error', message, type, param: null, code: status }),
};
