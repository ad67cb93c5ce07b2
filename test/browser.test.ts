import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { gateway, httpServer, sim } from './helpers/gateway.ts';
import { testCert } from './helpers/tls.ts';
import { expectedText } from './helpers/ws.ts';

const CHROMIUM = '/usr/bin/chromium';

/** The page a browser app would be: streams a chat over SSE (fetch) or over /v1/ws and shows the text. */
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>Sluice browser test</title>
<pre id="out"></pre>
<script>
const messages = [{ role: 'user', content: 'Hello from a browser' }];
function show(id) {
  const el = document.createElement('p');
  el.id = id;
  document.body.append(el);
  return el;
}
// SSE over fetch: the way browser apps read an OpenAI stream.
window.sse = async (base, key, id) => {
  const out = show(id);
  const t0 = performance.now();
  const times = [];
  const res = await fetch(base + '/chat/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer ' + key },
    body: JSON.stringify({ model: 'sluice-sim', stream: true, messages }),
  });
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  let done = false;
  for (;;) {
    const r = await reader.read();
    if (r.done) break;
    buf += r.value;
    let i;
    while ((i = buf.indexOf('\\n\\n')) >= 0) {
      const frame = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (!frame.startsWith('data: ')) continue;
      if (frame === 'data: [DONE]') { done = true; continue; }
      const c = JSON.parse(frame.slice(6)).choices[0]?.delta?.content;
      if (c) { out.textContent += c; times.push(performance.now() - t0); }
    }
  }
  return { times, done, status: res.status };
};
// /v1/ws with the key in a subprotocol (browsers cannot set headers on a WebSocket).
window.ws = (base, key, id) => new Promise((resolve, reject) => {
  const out = show(id);
  const t0 = performance.now();
  const times = [];
  const sock = new WebSocket(base.replace(/^http/, 'ws') + '/ws', ['sluice.v1', 'sluice-api-key.' + key]);
  sock.onopen = () => sock.send(JSON.stringify({ type: 'create', id: 'g1', body: { model: 'sluice-sim', messages } }));
  sock.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.type === 'chunk') {
      const c = m.data.choices[0]?.delta?.content;
      if (c) { out.textContent += c; times.push(performance.now() - t0); }
    } else if (m.type === 'done') {
      sock.close();
      resolve({ times, done: true, protocol: sock.protocol });
    } else if (m.type === 'error') {
      reject(new Error(m.error.message));
    }
  };
  sock.onerror = () => reject(new Error('WebSocket failed'));
});
</script>`;

test('Chromium streams a chat from Sluice over SSE and WebSocket, on HTTP/1.1 and on HTTP/2 (TLS)', async (t) => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is not installed: install Debian's chromium package (bash scripts/setup.sh does)`);
  const tokens = 8;
  const s = await sim(t, { timing: { ttftMs: 5, itlMs: 30, tokens } });
  const page = await httpServer(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(PAGE);
  });
  const origin = `http://127.0.0.1:${page.port}`;
  const key = 'sk-browser-test-key';
  const cert = await testCert();
  const plain = await gateway(t, { upstreams: [{ url: s.url }], api_keys: [key], cors: { origins: [origin] } });
  const secure = await gateway(t, { upstreams: [{ url: s.url }], api_keys: [key], cors: { origins: [origin] }, tls: { cert_file: cert.certFile, key_file: cert.keyFile } });
  const h2Paths: string[] = [];
  secure.server.on('stream', (_stream: unknown, headers: Record<string, string>) => h2Paths.push(headers[':path'] ?? ''));

  const profile = mkdtempSync(join(tmpdir(), 'sluice-chromium-'));
  t.after(() => rmSync(profile, { recursive: true, force: true }));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    // The test certificate is self-signed; everything else about TLS and HTTP/2 is real.
    ignoreHTTPSErrors: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  t.after(() => context.close());
  const tab = context.pages()[0] ?? (await context.newPage());
  await tab.goto(`${origin}/`);

  const expected = expectedText(JSON.stringify([{ role: 'user', content: 'Hello from a browser' }]), tokens);
  const runs = [
    { id: 'sse-h1', fn: 'sse', base: plain.url },
    { id: 'ws-h1', fn: 'ws', base: plain.url },
    { id: 'sse-h2', fn: 'sse', base: secure.url },
    { id: 'ws-tls', fn: 'ws', base: secure.url },
  ];
  for (const r of runs) {
    const result = await tab.evaluate(
      ([fn, base, k, id]) => (globalThis as unknown as Record<string, (b: string, k: string, i: string) => Promise<{ times: number[]; done: boolean; protocol?: string }>>)[fn as string]!(base as string, k as string, id as string),
      [r.fn, r.base, key, r.id],
    );
    assert.equal(await tab.textContent(`#${r.id}`), expected, `${r.id}: the page shows the whole answer`);
    assert.ok(result.done, `${r.id}: the stream ended with its end marker`);
    assert.equal(result.times.length, tokens, `${r.id}: one update per token`);
    const spread = result.times.at(-1)! - result.times[0]!;
    assert.ok(spread > 100, `${r.id}: tokens arrived over ${Math.round(spread)} ms, not in one burst`);
    if (r.fn === 'ws') assert.equal(result.protocol, 'sluice.v1');
  }
  assert.ok(h2Paths.includes('/v1/chat/completions'), `Chromium used HTTP/2 for the TLS gateway's SSE (h2 streams: ${h2Paths.join(', ')})`);
});
