import { randomInt } from 'node:crypto';
import { frame, tokenBytes, type ChatWriter, type CompletionWriter, type SimDialect, type SimLogprob, type StreamContext, type Usage } from './dialect.ts';
import { goString } from './py-json.ts';

/**
 * Ollama's OpenAI compatibility layer, ≈v0.12 (ollama/ollama `middleware/openai.go` `ChatWriter.writeResponse`,
 * `CompleteWriter.writeResponse`, `BaseWriter.writeError`; `openai/openai.go` `ChatCompletionChunk`, `ToToolCalls`;
 * `server/routes.go` `streamResponse`, `toolCallId`): Go `encoding/json` in struct order; no role chunk, and
 * `role:"assistant"` plus `content` (`""` when empty) on every delta; `reasoning` rather than `reasoning_content`; a
 * tool call arrives whole in one delta; ids `chatcmpl-<0..998>`; completions repeat a zero `usage` on every chunk when
 * asked; an error after headers becomes one blank chunk with `"model":""` and no `[DONE]`. One choice only.
 * Recorded shapes: test/fixtures/dialects/ollama/.
 */
const ALNUM = 'abcdefghijklmnopqrstuvwxyz0123456789';

function usageJson(u: Usage): string {
  return `{"prompt_tokens":${u.prompt_tokens},"completion_tokens":${u.completion_tokens},"total_tokens":${u.total_tokens}}`;
}

/** `json.Marshal` of the arguments map: compact, keys sorted. */
function goArguments(args: Record<string, string | number | boolean>): string {
  const sorted = Object.keys(args).sort().map((k) => `${goString(k)}:${typeof args[k] === 'string' ? goString(args[k]) : JSON.stringify(args[k])}`);
  return `{${sorted.join(',')}}`;
}

function logprobsJson(lp: SimLogprob): string {
  // api.Logprob: token, logprob, bytes, top_logprobs (field order unverified; docs/engines.md).
  const top = lp.top.map((t) => `{"token":${goString(t.token)},"logprob":${t.logprob},"bytes":${JSON.stringify(tokenBytes(t.token))}}`);
  return `{"content":[{"token":${goString(lp.token)},"logprob":${lp.logprob},"bytes":${JSON.stringify(tokenBytes(lp.token))},"top_logprobs":[${top.join(',')}]}]}`;
}

function chat(ctx: StreamContext): ChatWriter {
  const head = (model: string): string =>
    `{"id":"${ctx.id}","object":"chat.completion.chunk","created":${ctx.created},"model":${goString(model)},"system_fingerprint":"fp_ollama","choices":[`;
  const h = head(ctx.model);
  const chunk = (delta: string, finish = 'null', lp = ''): string => frame(`${h}{"index":0,"delta":{"role":"assistant",${delta}}${lp},"finish_reason":${finish}}]}`);
  return {
    start: () => '',
    reasoning: (_i, text) => chunk(`"content":"","reasoning":${goString(text)}`),
    content: (_i, text, lp) => chunk(`"content":${goString(text)}`, 'null', lp ? `,"logprobs":${logprobsJson(lp)}` : ''),
    toolCall: (_i, call) => {
      // toolCallId (server/routes.go): call_ + 8 lowercase alphanumerics.
      let id = 'call_';
      for (let k = 0; k < 8; k++) id += ALNUM[randomInt(ALNUM.length)];
      return chunk(`"content":"","tool_calls":[{"id":"${id}","index":0,"type":"function","function":{"name":${goString(call.name)},"arguments":${goString(goArguments(call.args))}}}]`);
    },
    finish: (_i, reason, last) => (last ? chunk(`"content":${goString(last)}`) : '') + chunk('"content":""', `"${reason}"`),
    end: () => (ctx.includeUsage ? frame(`${h}],"usage":${usageJson(ctx.usage)}}`) : '') + 'data: [DONE]\n\n',
    // streamResponse writes {"error":…} into the same writer after a 200, which ChatWriter decodes as an empty
    // response: a blank chunk with no model, the error text lost, and no [DONE].
    error: () => frame(`${head('')}{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`),
  };
}

function completion(ctx: StreamContext): CompletionWriter {
  const head = `{"id":"${ctx.id}","object":"text_completion","created":${ctx.created},"choices":[`;
  const tail = (model: string): string => `,"model":${goString(model)},"system_fingerprint":"fp_ollama"`;
  const zero = ctx.includeUsage ? ',"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}' : '';
  const choice = (text: string, finish: string, model = ctx.model): string => frame(`${head}{"text":${goString(text)},"index":0,"finish_reason":${finish}}]${tail(model)}${zero}}`);
  return {
    content: (_i, text) => choice(text, 'null'),
    finish: (_i, reason, last) => (last ? choice(last, 'null') : '') + choice('', `"${reason}"`),
    end: () => (ctx.includeUsage ? frame(`${head}]${tail(ctx.model)},"usage":${usageJson(ctx.usage)}}`) : '') + 'data: [DONE]\n\n',
    error: () => choice('', 'null', ''),
  };
}

/** `owned_by` is the model name's namespace: `library` for official models. */
function owner(id: string): string {
  const slash = id.lastIndexOf('/');
  return slash === -1 ? 'library' : id.slice(0, slash);
}

export const ollama: SimDialect = {
  name: 'ollama',
  streamHeaders: { 'content-type': 'text/event-stream' },
  commonHeaders: {},
  maxChoices: 1,
  responses: true,
  rejectsStreamOptionsWithoutStream: false,
  // `chatcmpl-<rand.Intn(999)>` / `cmpl-…`: not unique across requests.
  streamId: (kind) => (kind === 'completion' ? `cmpl-${randomInt(999)}` : `chatcmpl-${randomInt(999)}`),
  modelsBody: (models, created) => `${JSON.stringify({ object: 'list', data: models.map((id) => ({ id, object: 'model', created, owned_by: owner(id) })) })}\n`,
  engineGet: (path) => {
    if (path === '/api/version') return { status: 200, contentType: 'application/json; charset=utf-8', body: '{"version":"0.12.6"}' };
    if (path === '/') return { status: 200, contentType: 'text/plain; charset=utf-8', body: 'Ollama is running' };
    return undefined;
  },
  chat,
  completion,
  // BaseWriter.writeError: json.NewEncoder, so a trailing newline; api_error for everything but 400 and 404.
  errorBody: (message, status) =>
    `${JSON.stringify({ error: { message, type: status === 400 ? 'invalid_request_error' : status === 404 ? 'not_found_error' : 'api_error', param: null, code: null } })}\n`,
};

