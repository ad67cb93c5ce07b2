import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { gateway, httpServer, post, sim } from './helpers/gateway.ts';
import { pythonWithOpenAI, runPython } from './helpers/python-openai.ts';
import { pointAt, recipe, startNginx } from './helpers/proxies.ts';

/**
 * Issue 18, Sluice's own upstream side: `Via: 1.1 sluice` on responses; with `X-Sluice-Hop-Report: 1`, one
 * `: sluice-hop {…}` comment before `data: [DONE]` saying how the upstream's stream arrived; the buffering signature
 * of a real nginx (default `proxy_buffering`) placed between Sluice and the simulator, in the hop report, the log,
 * `/ready` and the metrics; and both OpenAI SDKs reading a stream that carries the comment.
 */

const HOP = { 'x-sluice-hop-report': '1' };
/** A stream long enough to fill nginx's 4 KiB buffers many times: 120 tokens 20 ms apart. */
const LONG = { ttft_ms: 50, itl_ms: 20, tokens: 120 };

type Json = Record<string, unknown>;

/** The hop report comments of an SSE body, parsed; and the body's frames. */
function hopReports(body: string): Json[] {
  return body
    .split('\n\n')
    .filter((f) => f.startsWith(': sluice-hop '))
    .map((f) => JSON.parse(f.slice(': sluice-hop '.length)) as Json);
}

async function stream(url: string, extra: Json, headers: Record<string, string> = HOP, path = '/chat/completions'): Promise<{ res: Response; body: string }> {
  const body =
    path === '/responses'
      ? { model: 'sluice-sim', input: 'Hello', stream: true, ...extra }
      : { model: 'sluice-sim', messages: [{ role: 'user', content: 'Hello' }], stream: true, ...extra };
  const res = await post(`${url}${path}`, body, headers);
  return { res, body: await res.text() };
}

test('Via on every response; the hop report only when asked, once, before [DONE]; nothing buffered straight from the simulator', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url, name: 'engine' }] });
  const plain = await stream(g.url, { sim: { itl_ms: 5, tokens: 10 } }, {});
  assert.equal(plain.res.headers.get('via'), '1.1 sluice');
  assert.deepEqual(hopReports(plain.body), [], 'no report unless asked');
  assert.ok(!plain.body.includes('sluice-hop'));
  assert.equal((await fetch(`${g.url.replace(/\/v1$/, '')}/health`)).headers.get('via'), '1.1 sluice');

  const asked = await stream(g.url, { sim: { ...LONG, itl_ms: 10, tokens: 30 } });
  const reports = hopReports(asked.body);
  assert.equal(reports.length, 1);
  const r = reports[0] as Json;
  const frames = asked.body.split('\n\n').filter(Boolean);
  assert.equal(frames.at(-1), 'data: [DONE]');
  assert.match(frames.at(-2) ?? '', /^: sluice-hop \{/, 'the report comes right before [DONE]');
  assert.equal(r['upstream'], 'engine');
  assert.equal(r['buffered'], false);
  assert.ok((r['events'] as number) >= 30, JSON.stringify(r));
  assert.ok((r['events_per_read'] as number) < 2, `one event per read from the simulator: ${JSON.stringify(r)}`);
  assert.ok((r['first_event_ms'] as number) >= (r['headers_ms'] as number));
  assert.ok((r['headers_ms'] as number) >= (r['dispatch_ms'] as number));

  // Responses: after the terminal event (no [DONE] in that API).
  const resp = await stream(g.url, { sim: { itl_ms: 5, tokens: 10 } }, HOP, '/responses');
  const rf = resp.body.split('\n\n').filter(Boolean);
  assert.equal(hopReports(resp.body).length, 1);
  assert.match(rf.at(-1) ?? '', /^: sluice-hop /);
  assert.match(rf.at(-2) ?? '', /^event: response\.completed/);
});

test('nginx with default buffering behind Sluice: the hop report, the log, /ready and the metrics name the buffered upstream', async (t) => {
  const s = await sim(t);
  const nginx = await startNginx(t, pointAt(await recipe('nginx.md', 'nginx-default'), s.url));
  const g = await gateway(t, { upstreams: [{ url: nginx.url, name: 'behind-nginx' }] });
  const first = await stream(g.url, { sim: LONG });
  const r = hopReports(first.body)[0] as Json;
  assert.ok(r, 'a hop report');
  assert.equal(r['buffered'], true, JSON.stringify(r));
  assert.match(String(r['server']), /^nginx/);
  assert.ok((r['events_per_read'] as number) >= 3, JSON.stringify(r));
  assert.ok((r['burst_bytes_max'] as number) >= 4096, JSON.stringify(r));
  assert.match(String(r['reason']), /events per read/);

  // The log: one warning naming the upstream and nginx; a second buffered stream within the interval adds none.
  const warnings = (): string[] => g.notices.filter((l) => /streams in bursts/.test(l));
  assert.equal(warnings().length, 1, g.notices.join('\n'));
  assert.match(warnings()[0] as string, /upstream behind-nginx streams in bursts: .*events per read.*Server header: nginx/);
  await stream(g.url, { sim: LONG }, {});
  assert.equal(warnings().length, 1, 'rate-limited');

  const ready = (await (await fetch(`${g.url.replace(/\/v1$/, '')}/ready`)).json()) as { upstreams: Array<{ name: string; arrivals: Json }> };
  const a = ready.upstreams[0]?.arrivals as Json;
  assert.equal(a['buffering'], true);
  assert.equal(a['streams'], 2);
  assert.equal(a['buffered_streams'], 2);
  assert.match(String((a['last_buffered'] as Json)['server']), /^nginx/);

  const metrics = await (await fetch(`${g.url.replace(/\/v1$/, '')}/metrics`)).text();
  assert.match(metrics, /^sluice_upstream_buffering\{upstream="behind-nginx"\} 1$/m);
  assert.match(metrics, /^sluice_upstream_buffered_streams_total\{upstream="behind-nginx"\} 2$/m);
  const perRead = /^sluice_upstream_events_per_read\{upstream="behind-nginx"\} ([\d.]+)$/m.exec(metrics);
  assert.ok(perRead && Number(perRead[1]) >= 3, metrics);
});

test('a hostile upstream: its Server header is sanitized and bounded; no credential or URL reaches the client', async (t) => {
  const up = await httpServer(t, (req, res) => {
    if (req.url === '/v1/models') return void res.end(JSON.stringify({ data: [{ id: 'm' }] }));
    res.writeHead(200, { 'content-type': 'text/event-stream', server: `evil\u00e9${'x'.repeat(500)}`, via: '1.1 secret-hop' });
    for (let i = 0; i < 3; i++) res.write(`data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n`);
    res.end('data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n');
  });
  const withCreds = up.url.replace('http://', 'http://admin:hunter2secret@');
  const g = await gateway(t, { upstreams: [{ url: withCreds }] });
  const { body } = await stream(g.url, { model: 'm' });
  const r = hopReports(body)[0] as Json;
  assert.ok(r);
  const server = String(r['server']);
  assert.ok(server.length <= 80, server);
  assert.match(server, /^evil\?x+\.\.\.$/);
  assert.equal(r['upstream'], `127.0.0.1:${up.port}`, 'the name /ready shows: host:port, no userinfo');
  assert.ok(!body.includes('hunter2secret') && !body.includes('admin:'), body);
  assert.ok(!body.includes(up.url), 'no upstream URL');
});

const python = pythonWithOpenAI();

const PY = `
import json, sys
from openai import OpenAI
client = OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0, default_headers={"X-Sluice-Hop-Report": "1"})
text = ""
for chunk in client.chat.completions.create(model="sluice-sim", messages=[{"role": "user", "content": "hi"}], stream=True, extra_body={"sim": {"itl_ms": 2, "tokens": 8}}):
    if chunk.choices and chunk.choices[0].delta.content:
        text += chunk.choices[0].delta.content
rtext = ""
with client.responses.stream(model="sluice-sim", input="hi", extra_body={"sim": {"itl_ms": 2, "tokens": 8}}) as stream:
    for event in stream:
        if event.type == "response.output_text.delta":
            rtext += event.delta
    final = stream.get_final_response()
print(json.dumps({"chat": len(text), "responses": len(rtext), "final": final.output_text == rtext}))
`;

test('both OpenAI SDKs read chat and Responses streams that carry the hop report', async (t) => {
  assert.ok(python !== null, 'openai-python is needed (.venv, scripts/setup.sh)');
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url }] });
  const client = new OpenAI({ baseURL: g.url, apiKey: 'unused', maxRetries: 0, defaultHeaders: HOP });
  const chat = await client.chat.completions.create({ model: 'sluice-sim', messages: [{ role: 'user', content: 'hi' }], stream: true, sim: { itl_ms: 2, tokens: 8 } } as OpenAI.ChatCompletionCreateParamsStreaming);
  let text = '';
  let chunks = 0;
  for await (const c of chat) {
    chunks++;
    text += c.choices[0]?.delta.content ?? '';
  }
  assert.ok(text.length > 0 && chunks >= 8);
  const rs = client.responses.stream({ model: 'sluice-sim', input: 'hi', sim: { itl_ms: 2, tokens: 8 } } as unknown as OpenAI.Responses.ResponseCreateParamsStreaming);
  let rtext = '';
  for await (const ev of rs) if (ev.type === 'response.output_text.delta') rtext += ev.delta;
  assert.equal((await rs.finalResponse()).output_text, rtext);
  assert.ok(rtext.length > 0);

  const py = await runPython(python as string, PY, [g.url]);
  assert.equal(py.code, 0, py.stderr);
  const out = JSON.parse(py.stdout) as { chat: number; responses: number; final: boolean };
  assert.ok(out.chat > 0 && out.responses > 0 && out.final, py.stdout);
  // The gateway did send the reports these clients skipped.
  assert.equal(hopReports((await stream(g.url, { sim: { itl_ms: 2, tokens: 8 } })).body).length, 1);
});
