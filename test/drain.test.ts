import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { Agent, request } from 'node:http';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chatBody, frames, post, sim } from './helpers/gateway.ts';
import { TestSocket } from './helpers/ws.ts';

// Issue 13, "Readiness, liveness, drain": what `sluice serve` does on SIGTERM, on a real process. Streams from the
// simulator last about 2 s (20 tokens, 100 ms apart); the announce window is short so the tests are too.

const BIN = new URL('../bin/sluice.mjs', import.meta.url).pathname;

interface Served {
  child: ChildProcess;
  /** Base URL ending in /v1. */
  url: string;
  /** Everything written to stderr so far. */
  stderr(): string;
  /** Resolves when stderr matches (fails after `ms`). */
  said(pattern: RegExp, ms?: number): Promise<void>;
  /** The exit code (null when killed by a signal), once the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Runs `sluice serve --port 0` with a YAML config; resolves once it listens. Killed after the test if still running. */
async function serve(t: TestContext, upstream: string, yaml: string): Promise<Served> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-drain-'));
  const file = join(dir, 'sluice.yaml');
  writeFileSync(file, yaml);
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--quiet', '--upstream', upstream, '--config', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  const waiters = new Set<() => void>();
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    for (const w of waiters) w();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const said = (pattern: RegExp, ms = 20_000): Promise<void> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        if (!pattern.test(err)) return;
        waiters.delete(check);
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`stderr never matched ${pattern}:\n${err}`));
      }, ms);
      waiters.add(check);
      check();
    });
  void exited.then(() => {
    for (const w of waiters) w();
  });
  await said(/listening on http:\/\/\S+\/v1/);
  const url = /listening on (http:\/\/\S+\/v1)/.exec(err)?.[1] as string;
  return { child, url, stderr: () => err, said, exited };
}

/** A streamed chat request on a connection of its own (no keep-alive pool): its status and whole body, or the error. */
function onNewConnection(url: string, body: unknown): Promise<{ status: number; connection: string | undefined; text: string } | { error: NodeJS.ErrnoException }> {
  return new Promise((resolve) => {
    // An agent of its own: a new connection, which asks to be kept alive (as load balancers' and SDKs' do).
    const agent = new Agent({ keepAlive: true });
    const done = (r: { status: number; connection: string | undefined; text: string } | { error: NodeJS.ErrnoException }): void => {
      agent.destroy();
      resolve(r);
    };
    const req = request(`${url}/chat/completions`, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => done({ status: res.statusCode ?? 0, connection: res.headers.connection, text }));
      res.on('error', (error: NodeJS.ErrnoException) => done({ error }));
    });
    req.on('error', (error: NodeJS.ErrnoException) => done({ error }));
    req.end(JSON.stringify(body));
  });
}

const TWO_SECONDS = { sim: { ttft_ms: 0, itl_ms: 100, tokens: 20 } };
const base = (url: string): string => url.replace(/\/v1$/, '');

test('SIGTERM with 50 streams open: /ready 503 at once, new connections served during the announce window and refused after it, every stream completes, exit 0', async (t) => {
  const s = await sim(t);
  const g = await serve(t, s.url, 'drain:\n  announce_ms: 1000\n  timeout_ms: 60000\n');
  assert.equal((await fetch(`${base(g.url)}/ready`)).status, 200);

  const responses = await Promise.all(Array.from({ length: 50 }, () => post(`${g.url}/chat/completions`, chatBody(TWO_SECONDS))));
  assert.ok(responses.every((r) => r.status === 200));
  // Settled either way, so that a failure below does not leave 50 rejections behind it.
  const bodies = responses.map((r) => r.text().catch((err: unknown) => `(read failed: ${String(err)})`));
  g.child.kill('SIGTERM');
  await g.said(/SIGTERM: draining/);

  const ready = await fetch(`${base(g.url)}/ready`);
  assert.equal(ready.status, 503, '/ready turns 503 at once');
  assert.equal(((await ready.json()) as { status: string }).status, 'draining');
  assert.equal((await fetch(`${base(g.url)}/health`)).status, 200, '/health stays 200: the process is alive');
  // A load balancer that has not deregistered the instance yet still gets its new streams served to the end.
  const during = await onNewConnection(g.url, chatBody({ sim: { ttft_ms: 0, itl_ms: 20, tokens: 10 } }));
  assert.ok('status' in during, `a request during the announce window failed: ${'error' in during ? during.error.code : ''}`);
  assert.equal(during.status, 200);
  assert.ok(during.text.endsWith('data: [DONE]\n\n'), during.text.slice(-200));
  assert.equal(during.connection, 'close', 'its connection is not kept alive: the next request opens a new one, which the balancer sends elsewhere');

  await g.said(/no longer accepting connections/);
  const after = await onNewConnection(g.url, chatBody());
  if ('error' in after) assert.equal(after.error.code, 'ECONNREFUSED');
  else assert.equal(after.status, 503, 'a request after the window is refused');

  const texts = await Promise.all(bodies);
  for (const [i, text] of texts.entries()) {
    assert.ok(text.endsWith('data: [DONE]\n\n'), `stream ${i} did not complete: ${text.slice(-300)}`);
    assert.doesNotMatch(text, /"error"/);
  }
  assert.deepEqual(await g.exited, { code: 0, signal: null });
  assert.doesNotMatch(g.stderr(), /drain\.timeout_ms reached/, 'no stream had to be ended');
});

test('a second SIGTERM during the drain ends every stream at once, cut (an error or a reset, never [DONE]); exit 0', async (t) => {
  const s = await sim(t);
  const g = await serve(t, s.url, 'drain:\n  announce_ms: 200\n  timeout_ms: 600000\n');
  const long = { sim: { ttft_ms: 0, itl_ms: 50, tokens: 100_000 } };
  const responses = await Promise.all(Array.from({ length: 10 }, () => post(`${g.url}/chat/completions`, chatBody(long))));
  const bodies = responses.map((r) => r.text().then((text) => ({ text }), (err: unknown) => ({ err })));
  g.child.kill('SIGTERM');
  await g.said(/no longer accepting connections; 10 generations in flight/);
  g.child.kill('SIGTERM');
  await g.said(/SIGTERM again: ending 10 streams in flight at once/);
  for (const outcome of await Promise.all(bodies)) {
    if ('err' in outcome) continue; // a reset
    assert.doesNotMatch(outcome.text, /data: \[DONE\]/);
    const last = frames(outcome.text).at(-1) ?? '';
    assert.match(last, /"code":"sluice_shutting_down"/, `the last frame is the shutdown error: ${last}`);
  }
  assert.deepEqual(await g.exited, { code: 0, signal: null });
});

test('WebSocket: a generation running at SIGTERM completes, then the socket closes with 1001 (/v1/ws and /v1/responses)', async (t) => {
  const s = await sim(t);
  const g = await serve(t, s.url, 'drain:\n  announce_ms: 300\n  timeout_ms: 60000\n');
  const wsBase = g.url.replace(/^http/, 'ws');
  const mux = new TestSocket(`${wsBase}/ws`);
  const responses = new TestSocket(`${wsBase}/responses`);
  t.after(() => {
    mux.ws.terminate();
    responses.ws.terminate();
  });
  await Promise.all([mux.opened, responses.opened]);
  mux.send({ type: 'create', id: 'a', body: { model: 'sluice-sim', messages: [{ role: 'user', content: 'x' }], ...TWO_SECONDS } });
  responses.send({ type: 'response.create', model: 'sluice-sim', input: 'x', ...TWO_SECONDS });
  await mux.waitFor((m) => m['type'] === 'chunk');
  await responses.waitFor((m) => m['type'] === 'response.output_text.delta');

  g.child.kill('SIGTERM');
  const [muxClosed, responsesClosed] = await Promise.all([mux.closed, responses.closed]);
  assert.equal(muxClosed.code, 1001);
  assert.equal(responsesClosed.code, 1001);
  const muxTypes = mux.of('a').map((r) => r.msg['type']);
  assert.equal(muxTypes.at(-1), 'done', `the generation completed before the close: ${muxTypes.join(',')}`);
  assert.ok(!muxTypes.includes('error'));
  const responseTypes = responses.received.map((r) => r.msg['type']);
  assert.equal(responseTypes.at(-1), 'response.completed', `the response completed before the close: ${responseTypes.slice(-5).join(',')}`);
  assert.ok(!responseTypes.includes('error'));
  assert.deepEqual(await g.exited, { code: 0, signal: null });
});
