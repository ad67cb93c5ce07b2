import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { chatBody, gateway, httpServer, post, sim } from './helpers/gateway.ts';
import { expectedText } from './helpers/ws.ts';
import { pythonWithOpenAI, runPython } from './helpers/python-openai.ts';

// The page's globals, as far as the callbacks run in Chromium use them (the project's lib has no DOM types).
interface El {
  textContent: string | null;
  value?: string;
  getAttribute(name: string): string | null;
}
declare const document: { querySelector(s: string): El | null; querySelectorAll(s: string): ArrayLike<El> & Iterable<El>; body: El; documentElement: { scrollWidth: number } };
declare function getComputedStyle(e: El): { backgroundColor: string };

const CHROMIUM = '/usr/bin/chromium';
/** Screenshots of each view, for the README (tmp/ is gitignored; docs/img/ holds the committed copies). */
const SHOTS = new URL('../tmp/console-screenshots/', import.meta.url).pathname;

/** The console in real Chromium against the real gateway over the simulator: the DOM decides, screenshots are kept. */

async function browser(t: TestContext, options: { httpCredentials?: { username: string; password: string } } = {}): Promise<{ context: BrowserContext; tab: Page }> {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is not installed: install Debian's chromium package (bash scripts/setup.sh does)`);
  const profile = mkdtempSync(join(tmpdir(), 'sluice-console-'));
  t.after(() => rmSync(profile, { recursive: true, force: true }));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    ...options,
  });
  t.after(() => context.close());
  const tab = context.pages()[0] ?? (await context.newPage());
  const problems: string[] = [];
  tab.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  tab.on('console', (m) => {
    if (m.type() === 'error' && !/401|Failed to load resource/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  t.after(() => assert.deepEqual(problems, [], 'no script errors and no CSP violations on the page'));
  return { context, tab };
}

async function shot(tab: Page, name: string): Promise<void> {
  mkdirSync(SHOTS, { recursive: true });
  await tab.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

/** Runs one request from the playground and waits for its end (complete, or an error shown). */
async function play(tab: Page, o: { api: 'chat' | 'responses'; transport: 'sse' | 'ws'; prompt: string; extra?: string }): Promise<void> {
  await tab.check(`input[name=api][value=${o.api}]`);
  await tab.check(`input[name=transport][value=${o.transport}]`);
  await tab.fill('#pg-prompt', o.prompt);
  if (o.extra !== undefined) {
    if (!(await tab.isVisible('#pg-extra'))) await tab.click('details summary');
    await tab.fill('#pg-extra', o.extra);
  } else if (await tab.isVisible('#pg-extra')) {
    await tab.fill('#pg-extra', '');
  }
  await tab.click('#pg-send');
  await tab.waitForSelector('#pg-status.ok, #pg-status.error', { timeout: 20_000 });
  // The gateway's record of the request (the upstream that served it) arrives just after.
  await tab.waitForFunction(() => document.querySelector('[data-fact=upstream]')?.textContent !== '…', null, { timeout: 5_000 });
}

async function timeline(tab: Page): Promise<{ ticks: number; chunks: number; heartbeats: number; marks: string[]; upstream: string; outcome: string; answer: string; status: string }> {
  return tab.evaluate(() => ({
    ticks: document.querySelectorAll('#pg-timeline svg line.tick').length,
    chunks: Number(document.querySelector('[data-fact=chunks]')?.textContent),
    heartbeats: document.querySelectorAll('#pg-timeline svg circle.hb').length,
    marks: [...document.querySelectorAll('#pg-timeline svg [data-mark]')].map((m) => m.getAttribute('data-mark') ?? ''),
    upstream: document.querySelector('[data-fact=upstream]')?.textContent ?? '',
    outcome: document.querySelector('[data-fact=outcome]')?.textContent ?? '',
    answer: document.querySelector('#pg-answer')?.textContent ?? '',
    status: document.querySelector('#pg-status')?.textContent ?? '',
  }));
}

test('the playground streams over SSE and WebSocket, chat and Responses: a tick per chunk, the first-token mark, heartbeats, the upstream', async (t) => {
  const tokens = 8;
  // A slow first token and fast heartbeats: the SSE stream carries `: keep-alive` comments before its first token.
  const s = await sim(t, { timing: { ttftMs: 400, itlMs: 40, tokens } });
  const g = await gateway(t, { upstreams: [{ url: s.url, name: 'gpu-a' }], heartbeatMs: 60 });
  const { tab } = await browser(t);
  await tab.goto(`http://127.0.0.1:${g.port}/console`);
  await tab.waitForSelector('body[data-ready]');
  assert.equal(await tab.inputValue('#pg-model'), 'sluice-sim', 'the model list comes from /v1/models');

  const prompt = 'Hello from the console';
  const expected = expectedText(JSON.stringify([{ role: 'user', content: prompt }]), tokens);
  for (const transport of ['sse', 'ws'] as const) {
    await play(tab, { api: 'chat', transport, prompt });
    const v = await timeline(tab);
    assert.equal(v.answer, expected, `${transport}: the whole answer is shown`);
    assert.equal(v.ticks, v.chunks, `${transport}: one tick per chunk received`);
    // The role chunk, one per token, the finish chunk, the usage chunk.
    assert.ok(v.chunks >= tokens + 1, `${transport}: ${v.chunks} chunks for ${tokens} tokens`);
    assert.deepEqual(v.marks.filter((m) => m !== 'sent' && m !== 'headers'), ['first-token', 'done'], `${transport}: first token, then the end, no error`);
    assert.equal(v.outcome, 'complete');
    assert.equal(v.upstream, 'gpu-a', `${transport}: the upstream that served it`);
    if (transport === 'sse') assert.ok(v.heartbeats > 0, 'SSE heartbeats before the first token are drawn');
    assert.match(await tab.textContent('[data-fact=usage]') ?? '', /^\d+ \/ 8$/, `${transport}: usage`);
    if (transport === 'sse') await shot(tab, 'playground');
  }

  await play(tab, { api: 'responses', transport: 'sse', prompt });
  const r = await timeline(tab);
  assert.equal(r.outcome, 'complete');
  assert.equal(r.ticks, r.chunks);
  assert.ok(r.chunks > tokens, `Responses events: ${r.chunks}`);
  assert.ok(r.marks.includes('first-token') && r.marks.includes('done'));
  assert.equal(r.answer.length > 0, true);
  assert.equal(r.upstream, 'gpu-a');
  await play(tab, { api: 'responses', transport: 'ws', prompt });
  const rw = await timeline(tab);
  assert.equal(rw.outcome, 'complete');
  assert.equal(rw.answer, r.answer, 'the same answer over the Responses WebSocket mode');
  assert.equal(rw.ticks, rw.chunks);

  // Copy as: the exact request, the key never in it.
  for (const kind of ['curl', 'python', 'typescript']) {
    await tab.click(`[data-copy=${kind}]`);
    const code = (await tab.textContent('#pg-code')) ?? '';
    assert.match(code, /sluice-sim/, `${kind}: names the model`);
    assert.match(code, kind === 'curl' ? /curl -N 'http:\/\/127\.0\.0\.1:\d+\/v1\/responses'/ : kind === 'python' ? /client\.responses\.create\(/ : /client\.responses\.create\(/);
  }

  // Keyboard: the form is reachable and sends with the keyboard alone.
  await tab.check('input[name=api][value=chat]');
  await tab.check('input[name=transport][value=sse]');
  await tab.focus('#pg-send');
  await tab.keyboard.press('Enter');
  await tab.waitForSelector('#pg-status.ok', { timeout: 20_000 });
});

test('an upstream cut shows as an error, not as a complete answer; Stop aborts the upstream (SSE and WebSocket)', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 20, itlMs: 20, tokens: 20 } });
  const g = await gateway(t, { upstreams: [{ url: s.url, name: 'gpu-a' }] });
  const { tab } = await browser(t);
  await tab.goto(`http://127.0.0.1:${g.port}/console`);
  await tab.waitForSelector('body[data-ready]');
  for (const transport of ['sse', 'ws'] as const) {
    await play(tab, { api: 'chat', transport, prompt: 'cut me', extra: '{"sim": {"fail": "drop", "fail_after": 3}}' });
    const v = await timeline(tab);
    assert.equal(v.outcome, 'error', `${transport}: the outcome is an error`);
    assert.ok(v.marks.includes('error') && !v.marks.includes('done'), `${transport}: an error mark and no end mark (${v.marks.join(', ')})`);
    assert.match(v.status, /^Error: .*not complete/);
    assert.ok(await tab.isVisible('#pg-answer.cut'), `${transport}: the partial answer is marked cut`);
    assert.equal(v.ticks, v.chunks);
    assert.match((await tab.textContent('[data-fact=gateway]')) ?? '', /upstream_error|truncated/);
    if (transport === 'sse') await shot(tab, 'playground-error');
  }
  // Stop: the fetch is aborted (SSE) or the generation cancelled (/v1/ws); the gateway sees its client leave.
  for (const transport of ['sse', 'ws'] as const) {
    await tab.check(`input[name=transport][value=${transport}]`);
    await tab.fill('#pg-extra', '{"sim": {"tokens": 500}}');
    await tab.click('#pg-send');
    await tab.waitForFunction(() => (document.querySelector('#pg-answer')?.textContent ?? '').length > 0, null, { timeout: 10_000 });
    await tab.click('#pg-stop');
    await tab.waitForFunction(() => document.querySelector('#pg-status')?.textContent === 'Stopped.', null, { timeout: 5_000 });
    await tab.waitForFunction(() => /client_aborted/.test(document.querySelector('[data-fact=gateway]')?.textContent ?? ''), null, { timeout: 5_000 });
    const v = await timeline(tab);
    assert.ok(v.marks.includes('stopped') && !v.marks.includes('done'), `${transport}: ${v.marks.join(', ')}`);
  }
});

test('the live view shows a stream in flight and its completion within a second; hostile text stays text; 360 px; dark mode', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 50, itlMs: 150, tokens: 12 } });
  // CORS open to any origin: the console still answers its own page only.
  const g = await gateway(t, { upstreams: [{ url: s.url, name: 'gpu-a' }], cors: { origins: ['*'] } });
  const { context, tab } = await browser(t);
  await tab.goto(`http://127.0.0.1:${g.port}/console#live`);
  await tab.waitForSelector('#live-upstreams tr[data-upstream="gpu-a"]');
  assert.match((await tab.textContent('#live-upstreams tr[data-upstream="gpu-a"]')) ?? '', /up/);

  // A request with a hostile model name: refused, and listed as text.
  const hostile = '<img src=x onerror="window.pwned=1">';
  await (await post(`${g.url}/chat/completions`, chatBody({ model: hostile }), { 'x-request-id': 'hostile-1' })).text();
  await tab.waitForSelector('#live-recent tr[data-request="hostile-1"]', { timeout: 1_000 });
  assert.equal(await tab.locator('#live-recent img').count(), 0);
  assert.match((await tab.textContent('#live-recent tr[data-request="hostile-1"]')) ?? '', /<img src=x/);
  assert.equal(await tab.evaluate(() => (globalThis as { pwned?: number }).pwned), undefined);

  const res = await post(`${g.url}/chat/completions`, chatBody(), { 'x-request-id': 'live-1' });
  await tab.waitForSelector('#live-inflight tr[data-request="live-1"]', { timeout: 1_000 });
  await tab.waitForFunction(() => /gpu-a/.test(document.querySelector('#live-inflight tr[data-request="live-1"]')?.textContent ?? ''), null, { timeout: 1_000 });
  await res.text();
  await tab.waitForSelector('#live-recent tr[data-request="live-1"][data-outcome="completed"]', { timeout: 1_000 });
  assert.equal(await tab.locator('#live-inflight tr[data-request="live-1"]').count(), 0, 'no longer in flight');
  assert.match((await tab.textContent('#live-recent tr[data-request="live-1"]')) ?? '', /gpu-a.*completed.*\/ 12/);
  await tab.waitForFunction(() => /\d+ ms \/ \d+ ms \(\d+\)/.test(document.querySelector('#live-upstreams tr[data-upstream="gpu-a"]')?.textContent ?? ''), null, { timeout: 3_000 });
  // For the picture: a second stream in flight beside the finished ones.
  const second = await post(`${g.url}/chat/completions`, chatBody(), { 'x-request-id': 'live-2' });
  await tab.waitForSelector('#live-inflight tr[data-request="live-2"]', { timeout: 1_000 });
  await shot(tab, 'live');
  await second.text();

  // 360 px wide: nothing overflows the page (wide tables scroll in their own box).
  // Another site's page reads nothing of the console, with fetch or EventSource.
  const other = await httpServer(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>another site</title>');
  });
  const evil = await context.newPage();
  await evil.goto(`http://localhost:${other.port}/`);
  const read = await evil.evaluate(async (base) => {
    const out: string[] = [];
    for (const p of ['/console/api/state', '/console/api/requests/live-1']) {
      try {
        const r = await fetch(base + p);
        out.push(`${r.status} ${await r.text()}`);
      } catch (e) {
        out.push(`blocked ${String(e)}`);
      }
    }
    const es = await new Promise<string>((resolve) => {
      const ES = (globalThis as unknown as { EventSource: new (u: string) => { onmessage: unknown; onerror: unknown; addEventListener(t: string, f: (e: { data: string }) => void): void; close(): void } }).EventSource;
      const src = new ES(`${base}/console/api/events`);
      src.addEventListener('snapshot', (e) => (src.close(), resolve(`snapshot ${e.data}`)));
      src.onerror = () => (src.close(), resolve('refused'));
    });
    return [...out, es];
  }, `http://127.0.0.1:${g.port}`);
  for (const r of read) assert.doesNotMatch(r, /upstreams|gpu-a|live-1/, r.slice(0, 200));
  assert.match(read[0] ?? '', /^403 .*origin_not_allowed/);
  await evil.close();

  await tab.setViewportSize({ width: 360, height: 800 });
  for (const view of ['#live', '#playground']) {
    await tab.goto(`http://127.0.0.1:${g.port}/console${view}`);
    await tab.waitForSelector('body[data-ready]');
    assert.ok(await tab.evaluate(() => document.documentElement.scrollWidth <= 360), `${view}: fits 360 px`);
  }
  await shot(tab, 'playground-360');
  // Dark mode follows prefers-color-scheme.
  const light = await tab.evaluate(() => getComputedStyle(document.body).backgroundColor);
  await tab.emulateMedia({ colorScheme: 'dark' });
  const dark = await tab.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.notEqual(light, dark);
  await shot(tab, 'playground-360-dark');
  void context;
});

test('with client keys, the console asks for the admin key (HTTP Basic in a browser) and the playground uses a client key', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 20, itlMs: 10, tokens: 4 } });
  const adminKey = 'admin-key-0123456789abcdef';
  const clientKey = 'sk-client-key-0123';
  const g = await gateway(t, { upstreams: [{ url: s.url, name: 'gpu-a' }], api_keys: [clientKey], admin_key: adminKey });
  const { tab } = await browser(t, { httpCredentials: { username: 'admin', password: adminKey } });
  await tab.goto(`http://127.0.0.1:${g.port}/console`);
  assert.ok(await tab.isVisible('#pg-key'), 'the page asks for a client key');
  await tab.fill('#pg-key', clientKey);
  await tab.waitForFunction(() => document.querySelector('#pg-model')?.value === 'sluice-sim', null, { timeout: 5_000 });
  for (const transport of ['sse', 'ws'] as const) {
    await play(tab, { api: 'chat', transport, prompt: 'with keys' });
    const v = await timeline(tab);
    assert.equal(v.outcome, 'complete', `${transport}: ${v.status}`);
    assert.equal(v.upstream, 'gpu-a');
  }
  await tab.click('[data-copy=curl]');
  const code = (await tab.textContent('#pg-code')) ?? '';
  assert.match(code, /\$SLUICE_API_KEY/);
  assert.doesNotMatch(code, new RegExp(clientKey), 'the key is never in the copied code');
});

test('"copy as" gives code that runs: curl, openai-python and openai-node stream the answer the playground showed', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 5, itlMs: 5, tokens: 6 } });
  const g = await gateway(t, { upstreams: [{ url: s.url, name: 'gpu-a' }] });
  const python = pythonWithOpenAI();
  const { tab } = await browser(t);
  await tab.goto(`http://127.0.0.1:${g.port}/console`);
  await tab.waitForSelector('body[data-ready]');
  // Inside the repository, so that the TypeScript file finds the `openai` package.
  mkdirSync(new URL('../tmp/', import.meta.url), { recursive: true });
  const dir = mkdtempSync(join(new URL('../tmp/', import.meta.url).pathname, 'copied-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (const api of ['chat', 'responses'] as const) {
    // An engine extra beside the SDK's own fields: Python sends it as extra_body, TypeScript as it is.
    await play(tab, { api, transport: 'sse', prompt: `it's "quoted" \\ and\nmultiline`, extra: '{"temperature": 0, "sim": {"tokens": 4}}' });
    const shown = (await timeline(tab)).answer;
    assert.ok(shown.length > 0);
    for (const kind of ['curl', 'python', 'typescript'] as const) {
      if (kind === 'python' && python === null) continue;
      await tab.click(`[data-copy=${kind}]`);
      const code = (await tab.textContent('#pg-code')) ?? '';
      let out: { code: number | null; stdout: string; stderr: string };
      if (kind === 'curl') out = await run('sh', ['-c', code]);
      else if (kind === 'python') out = await runPython(python as string, code, []);
      else {
        const file = join(dir, `${api}.ts`);
        writeFileSync(file, code);
        out = await run(process.execPath, [file]);
      }
      assert.equal(out.code, 0, `${api} ${kind}: ${out.stderr}`);
      if (kind === 'curl') {
        const text = out.stdout
          .split('\n')
          .filter((l) => l.startsWith('data: {'))
          .map((l) => JSON.parse(l.slice(6)) as { choices?: Array<{ delta?: { content?: string } }>; type?: string; delta?: string })
          .map((o) => (api === 'chat' ? (o.choices?.[0]?.delta?.content ?? '') : o.type === 'response.output_text.delta' ? (o.delta ?? '') : ''))
          .join('');
        assert.equal(text, shown, `${api} curl`);
      } else {
        assert.equal(out.stdout.replace(/\n$/, ''), shown, `${api} ${kind}`);
      }
    }
  }
});

/** Runs a command asynchronously (the gateway under test lives in this process). */
function run(cmd: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: new URL('..', import.meta.url).pathname });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    p.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
