import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, ConfigError } from '../src/config/load.ts';
import { sim } from './helpers/gateway.ts';
import { TestSocket } from './helpers/ws.ts';

const BIN = new URL('../bin/sluice.mjs', import.meta.url).pathname;

/** Runs `sluice ...` and resolves once stderr matches `until` (or the process exits). */
interface Run {
  child: ChildProcess;
  stderr: string;
  stdout: string;
  code: number | null;
}

function run(args: string[], env: Record<string, string> = {}, until?: RegExp): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const r: Run = { child, stderr: '', stdout: '', code: null };
    child.stdout!.on('data', (d: Buffer) => (r.stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => {
      r.stderr += d.toString();
      if (until && until.test(r.stderr)) resolve(r);
    });
    child.on('close', (code) => {
      r.code = code;
      resolve(r);
    });
  });
}

function tmpFile(name: string, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-test-'));
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

test('serve with no upstream starts the simulator, says so, and prints a working curl line', async (t) => {
  const r = await run(['serve', '--port', '0'], {}, /try: curl[^\n]*\n/);
  t.after(() => r.child.kill('SIGTERM'));
  assert.match(r.stderr, /built-in simulator/);
  const url = /listening on (http:\/\/\S+\/v1)/.exec(r.stderr)?.[1];
  assert.ok(url);
  const curl = /try: (curl -N .*)/.exec(r.stderr)?.[1];
  assert.ok(curl?.includes(`${url}/chat/completions`));
  const res = await fetch(`${url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'sluice-sim', stream: true, messages: [{ role: 'user', content: 'Hello' }] }) });
  assert.ok((await res.text()).endsWith('data: [DONE]\n\n'));
  r.child.kill('SIGTERM');
  await new Promise((resolve) => r.child.once('close', resolve));
  assert.match(r.stdout, /"outcome":"completed"/, 'one JSON log line per request');
});

test('serve warns loudly when bound beyond loopback without keys', async (t) => {
  const s = await sim(t);
  const r = await run(['serve', '--port', '0', '--host', '0.0.0.0', '--upstream', s.url], {}, /WARNING[\s\S]*bind 127/);
  t.after(() => r.child.kill('SIGTERM'));
  assert.match(r.stderr, /WARNING: listening on 0\.0\.0\.0 without API keys/);
});

test('a bad config value stops start-up with one line naming key, value and what is allowed', async () => {
  const file = tmpFile('sluice.yaml', 'port: 8080\ntimeouts:\n  idle_ms: -5\n');
  const r = await run(['serve', '--config', file]);
  assert.equal(r.code, 2);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0] ?? '', /timeouts\.idle_ms = -5: .*>=0/);
});

test('unknown config keys and bad upstream URLs are named', () => {
  const unknown = tmpFile('a.yaml', 'upstreams:\n  - url: http://127.0.0.1:8000/v1\n    modle: x\n');
  assert.throws(() => loadConfig(unknown, {}, {}), (e: unknown) => e instanceof ConfigError && /unknown key 'upstreams\[0\]\.modle'/.test(e.message));
  const badUrl = tmpFile('b.yaml', 'upstreams:\n  - url: http://127.0.0.1:8000\n');
  assert.throws(() => loadConfig(badUrl, {}, {}), (e: unknown) => e instanceof ConfigError && /upstreams\[0\]\.url = "http:\/\/127\.0\.0\.1:8000": must be a base URL ending in \/v1/.test(e.message));
  const notYaml = tmpFile('c.yaml', 'port: [1,\n');
  assert.throws(() => loadConfig(notYaml, {}, {}), /not valid YAML/);
});

test('precedence: flags > environment > file > defaults', () => {
  const file = tmpFile('p.yaml', 'port: 1111\nheartbeat_ms: 5000\nupstreams:\n  - url: http://file:1/v1\n');
  const fromFile = loadConfig(file, {}, {});
  assert.equal(fromFile.port, 1111);
  assert.equal(fromFile.timeouts.idle_ms, 60_000, 'defaults fill the rest');
  const fromEnv = loadConfig(file, { SLUICE_PORT: '2222', SLUICE_UPSTREAMS: 'http://a:1/v1, http://b:2/v1', SLUICE_API_KEYS: 'key-one-123,key-two-456' }, {});
  assert.equal(fromEnv.port, 2222);
  assert.deepEqual(fromEnv.upstreams.map((u) => u.url), ['http://a:1/v1', 'http://b:2/v1']);
  assert.deepEqual(fromEnv.api_keys, ['key-one-123', 'key-two-456']);
  const fromFlags = loadConfig(file, { SLUICE_PORT: '2222' }, { port: 3333, upstreams: ['http://c:3/v1'] });
  assert.equal(fromFlags.port, 3333);
  assert.deepEqual(fromFlags.upstreams.map((u) => u.url), ['http://c:3/v1']);
  assert.throws(() => loadConfig(undefined, { SLUICE_PORT: 'eighty' }, {}), /port = "eighty"/);
  // A value that is no URL at all is a config error naming the key, not a TypeError from deep in validation.
  assert.throws(() => loadConfig(undefined, { SLUICE_UPSTREAMS: '12345' }, {}), (e: unknown) => e instanceof ConfigError && /upstreams\[0\]\.url = "12345"/.test(e.message));
});

test('sim and serve reject bad flags with exit code 2', async () => {
  const a = await run(['sim', '--fail', 'explode']);
  assert.equal(a.code, 2);
  assert.match(a.stderr, /--fail: 'explode' is not one of/);
  const b = await run(['serve', '--port', 'x']);
  assert.equal(b.code, 2);
  const c = await run(['frobnicate']);
  assert.equal(c.code, 2);
});

test('sluice --version, -v and version print the version from package.json and exit 0', async () => {
  const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  for (const arg of ['--version', '-v', 'version']) {
    const r = await run([arg]);
    assert.equal(r.code, 0, arg);
    assert.equal(r.stdout, `sluice ${version} (Node.js ${process.version})\n`, arg);
    assert.equal(r.stderr, '', arg);
  }
});

test('every URL the banner prints answers: the base URLs, both WebSocket endpoints, the probes and the metrics', async (t) => {
  const r = await run(['serve', '--port', '0'], {}, /try: curl[^\n]*\n/);
  t.after(() => r.child.kill('SIGTERM'));
  const banner = r.stderr.slice(0, r.stderr.indexOf('try: curl')); // the curl line is run by the first test
  const urls = [...new Set(banner.match(/\b(?:https?|wss?):\/\/[^\s,;()'"]+/g) ?? [])];
  const ws = urls.filter((u) => u.startsWith('ws'));
  assert.deepEqual(ws.map((u) => new URL(u).pathname).sort(), ['/v1/responses', '/v1/ws']);
  assert.ok(urls.some((u) => u.endsWith('/health')) && urls.some((u) => u.endsWith('/ready')) && urls.some((u) => u.endsWith('/metrics')), banner);
  for (const url of urls) {
    if (url.startsWith('ws')) {
      const socket = new TestSocket(url);
      await socket.opened; // a 404 rejects the handshake
      socket.ws.close();
    } else {
      // A base URL is what an SDK's baseURL takes: it lists models; any other URL is a GET endpoint.
      const res = await fetch(url.endsWith('/v1') ? `${url}/models` : url);
      assert.equal(res.status, 200, url);
      await res.arrayBuffer();
    }
  }
});
