import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { chatBody, gateway, sim } from './helpers/gateway.ts';
import { pythonWithOpenAI, runPython } from './helpers/python-openai.ts';
import { chatText, events, rawStream } from './helpers/resume.ts';

// The openai SDKs stream a resumable request unchanged (issue 15): the same text as without resume, with heartbeats
// between the events (heartbeat_ms far below the inter-token gap), in both modes. `ids` mode matters for
// openai-python: a comment followed by a blank line after an `id:` line crashes it (DESIGN.md), so heartbeats there
// are lone comment lines.

const BODY = chatBody({ sim: { ttft_ms: 30, itl_ms: 30, tokens: 12, jitter_ms: 0 } });

async function setup(t: import('node:test').TestContext) {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url, dialect: 'vllm' }], heartbeat_ms: 10 });
  const whole = chatText(events((await rawStream(`${g.url}/chat/completions`, { body: BODY })).frames));
  assert.ok(whole.length > 0);
  return { g, whole };
}

test('the openai Node client streams a resumable request unchanged, in both modes', async (t) => {
  const { g, whole } = await setup(t);
  const client = new OpenAI({ baseURL: g.url, apiKey: 'unused', maxRetries: 0 });
  for (const mode of ['1', 'ids']) {
    const { data: stream, response } = await client.chat.completions
      .create({ model: 'sluice-sim', messages: [{ role: 'user', content: 'Hello' }], stream: true, sim: BODY['sim'] } as OpenAI.ChatCompletionCreateParamsStreaming, { headers: { 'X-Sluice-Resume': mode } })
      .withResponse();
    assert.match(response.headers.get('x-sluice-stream-id') ?? '', /^strm_/);
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    assert.equal(text, whole, `mode ${mode}`);
  }
});

const PY = `
import sys, openai
client = openai.OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0)
for mode in ("1", "ids"):
    with client.chat.completions.with_streaming_response.create(
        model="sluice-sim", messages=[{"role": "user", "content": "Hello"}], stream=True,
        extra_body={"sim": {"ttft_ms": 30, "itl_ms": 30, "tokens": 12, "jitter_ms": 0}},
        extra_headers={"X-Sluice-Resume": mode},
    ) as response:
        sid = response.headers.get("x-sluice-stream-id") or ""
        text = "".join((c.choices[0].delta.content or "") for c in response.parse() if c.choices)
    print(mode, sid.startswith("strm_"), repr(text))
`;

const python = pythonWithOpenAI();

test('openai-python streams a resumable request unchanged, in both modes', { skip: python === null ? 'openai-python is not installed (scripts/setup.sh puts it in .venv)' : false }, async (t) => {
  const { g, whole } = await setup(t);
  const r = await runPython(python as string, PY, [g.url]);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.deepEqual(lines, [`1 True ${pyRepr(whole)}`, `ids True ${pyRepr(whole)}`]);
});

/** Python's repr of a plain ASCII string without quotes or backslashes (the simulator's words). */
function pyRepr(s: string): string {
  assert.ok(!/["'\\]|[^\x20-\x7e]/.test(s));
  return `'${s}'`;
}
