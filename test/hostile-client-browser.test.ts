import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { connect as h2connect } from 'node:http2';
import OpenAI from 'openai';
import { ConfigError, loadConfig } from '../src/config/load.ts';
import { HostPolicy } from '../src/auth/host-check.ts';
import { chatBody, gateway, sim } from './helpers/gateway.ts';

/**
 * What a hostile web page can do to a gateway on loopback without keys (the default): send a cross-site "simple"
 * POST (no CORS preflight), or read answers through DNS rebinding (its own name, re-pointed at 127.0.0.1, in Host).
 */

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** An HTTP/1.1 request with the exact headers given (Host included, which fetch does not let a caller set). */
function raw(url: string, method: string, path: string, headers: Record<string, string>, body?: string): Promise<Answer> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const errorCode = (a: Answer): string | null | undefined => (JSON.parse(a.body) as { error?: { code: string | null } }).error?.code;

test('a POST body that is not declared application/json gets 415 on every generation endpoint, and no upstream work', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 0, tokens: 2 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }] });
  const body = JSON.stringify(chatBody({ stream: false }));
  const host = new URL(g.url).host;
  for (const path of ['/v1/chat/completions', '/v1/completions', '/v1/responses', '/v1/embeddings']) {
    // What a cross-site page may send without a preflight (text/plain, form, multipart), and no type at all.
    for (const type of ['text/plain;charset=UTF-8', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', undefined]) {
      const a = await raw(g.url, 'POST', path, { host, ...(type ? { 'content-type': type } : {}) }, body);
      assert.equal(a.status, 415, `${path} ${type}`);
      assert.equal(errorCode(a), 'sluice_unsupported_media_type');
      assert.match(JSON.parse(a.body).error.message, /Content-Type: application\/json/);
    }
  }
  // fetch with a string body and no header sends text/plain, as a page's simple request does.
  const simple = await fetch(`${g.url}/chat/completions`, { method: 'POST', body });
  assert.equal(simple.status, 415);
  assert.equal(s.stats.started, 0, 'nothing reached the upstream');

  // The media type is case-insensitive and may carry parameters.
  for (const type of ['application/json; charset=utf-8', 'Application/JSON', ' application/json ;charset=UTF-8']) {
    const a = await raw(g.url, 'POST', '/v1/chat/completions', { host, 'content-type': type }, body);
    assert.equal(a.status, 200, type);
  }
  // The real SDK sends application/json (openai-node's FallbackEncoder sets it on every JSON body).
  const client = new OpenAI({ baseURL: g.url, apiKey: 'unused', maxRetries: 0 });
  const answer = await client.chat.completions.create({ model: 'sluice-sim', messages: [{ role: 'user', content: 'Hi' }] });
  assert.equal(answer.object, 'chat.completion');
  assert.equal((await fetch(`${g.url.replace(/\/v1$/, '')}/health`)).status, 200);
});

test('DNS rebinding: on loopback, a Host that is not localhost, an IP or an allowed name gets 403 host_not_allowed', async (t) => {
  const s = await sim(t, { timing: { ttftMs: 0, itlMs: 0, tokens: 2 } });
  const g = await gateway(t, { upstreams: [{ url: s.url }], cors: { origins: ['*'] } });
  const json = { 'content-type': 'application/json' };
  const evil = 'attacker.example:8080';
  for (const [method, path] of [['GET', '/v1/models'], ['GET', '/ready'], ['POST', '/v1/chat/completions'], ['OPTIONS', '/v1/chat/completions'], ['GET', '/nowhere']] as const) {
    const a = await raw(g.url, method, path, { host: evil, ...json, origin: 'http://attacker.example:8080', 'access-control-request-method': 'POST' }, method === 'POST' ? JSON.stringify(chatBody()) : undefined);
    assert.equal(a.status, 403, `${method} ${path}`);
    assert.equal(errorCode(a), 'host_not_allowed');
    const message = (JSON.parse(a.body) as { error: { message: string; type: string } }).error;
    assert.match(message.message, /Host 'attacker\.example:8080' is not allowed.*allowed_hosts \(--allowed-host, SLUICE_ALLOWED_HOSTS\)/);
    assert.equal(message.type, 'invalid_request_error');
  }
  assert.equal(s.stats.started, 0, 'no generation ran for the rebound page');
  // /health answers any Host: probes use whatever name they have, and it tells nothing.
  assert.equal((await raw(g.url, 'GET', '/health', { host: evil })).status, 200);

  // Loopback names and addresses, any IP literal (rebinding needs a name), with or without a port, pass.
  const { port } = new URL(g.url);
  for (const host of [`127.0.0.1:${port}`, 'localhost', 'LOCALHOST:1', 'localhost.:80', '[::1]:9', '[::1]', '127.0.0.2', '10.0.0.7:8080', '[2001:db8::1]:443']) {
    assert.equal((await raw(g.url, 'GET', '/v1/models', { host })).status, 200, host);
  }
  // Names that only look like loopback do not.
  for (const host of ['localhost.attacker.example', '127.0.0.1.nip.io', 'evil-localhost', '[::1]x', 'a:b:c']) {
    assert.equal((await raw(g.url, 'GET', '/v1/models', { host })).status, 403, host);
  }
  // The gateway is unharmed.
  assert.equal((await fetch(`${g.url}/models`)).status, 200);
});

test('allowed_hosts adds names (".example.com" with its subdomains); "*" turns the check off', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url }], allowed_hosts: ['llm.example.com', '.corp.example'] });
  for (const [host, status] of [['llm.example.com', 200], ['LLM.example.com:8443', 200], ['corp.example', 200], ['a.b.corp.example:1', 200], ['localhost:3', 200], ['example.com', 403], ['xcorp.example', 403], ['llm.example.com.evil', 403]] as const) {
    assert.equal((await raw(g.url, 'GET', '/v1/models', { host })).status, status, host);
  }
  const any = await gateway(t, { upstreams: [{ url: s.url }], allowed_hosts: ['*'] });
  assert.equal((await raw(any.url, 'GET', '/v1/models', { host: 'anything.example' })).status, 200);
});

test('bound beyond loopback (0.0.0.0), the Host check is off unless allowed_hosts is set', async (t) => {
  const s = await sim(t);
  const open = await gateway(t, { host: '0.0.0.0', upstreams: [{ url: s.url }] });
  assert.equal((await raw(open.url, 'GET', '/v1/models', { host: 'llm.public.example' })).status, 200);
  const listed = await gateway(t, { host: '0.0.0.0', upstreams: [{ url: s.url }], allowed_hosts: ['llm.public.example'] });
  assert.equal((await raw(listed.url, 'GET', '/v1/models', { host: 'llm.public.example' })).status, 200);
  assert.equal((await raw(listed.url, 'GET', '/v1/models', { host: 'attacker.example' })).status, 403);
  assert.equal((await raw(listed.url, 'GET', '/v1/models', { host: '192.168.1.20:8080' })).status, 200);
});

test('HTTP/2: the :authority of a rebound page gets 403 too', async (t) => {
  const s = await sim(t);
  const g = await gateway(t, { upstreams: [{ url: s.url }], h2c: true });
  const session = h2connect(new URL(g.url).origin);
  session.on('error', () => {});
  t.after(() => session.destroy());
  const get = (authority: string): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      const stream = session.request({ ':path': '/v1/models', ':authority': authority });
      let body = '';
      let status = 0;
      stream.on('response', (h) => (status = Number(h[':status'])));
      stream.on('data', (d: Buffer) => (body += d.toString('utf8')));
      stream.on('end', () => resolve({ status, body }));
      stream.on('error', reject);
      stream.end();
    });
  const refused = await get('attacker.example');
  assert.equal(refused.status, 403);
  assert.equal((JSON.parse(refused.body) as { error: { code: string } }).error.code, 'host_not_allowed');
  assert.equal((await get(`localhost:${new URL(g.url).port}`)).status, 200);
});

test('allowed_hosts from the config file, SLUICE_ALLOWED_HOSTS and --allowed-host; a name with a port stops start-up', () => {
  assert.equal(loadConfig(undefined, {}, {}).allowed_hosts, undefined);
  assert.deepEqual(loadConfig(undefined, { SLUICE_ALLOWED_HOSTS: 'a.example, .b.example' }, {}).allowed_hosts, ['a.example', '.b.example']);
  assert.deepEqual(loadConfig(undefined, { SLUICE_ALLOWED_HOSTS: 'a.example' }, { allowedHosts: ['c.example', '*'] }).allowed_hosts, ['c.example', '*']);
  assert.throws(
    () => loadConfig(undefined, { SLUICE_ALLOWED_HOSTS: 'llm.example.com:8080' }, {}),
    (e: Error) => e instanceof ConfigError && /allowed_hosts\[0\] = "llm\.example\.com:8080": must be a host name without port/.test(e.message),
  );
  // The policy on its own: loopback binds check, others do not, unless told.
  assert.equal(new HostPolicy('127.0.0.1', undefined).allows('evil.example'), false);
  assert.equal(new HostPolicy('localhost', undefined).allows('evil.example'), false);
  assert.equal(new HostPolicy('::1', undefined).allows('evil.example'), false);
  assert.equal(new HostPolicy('0.0.0.0', undefined).allows('evil.example'), true);
  assert.equal(new HostPolicy('0.0.0.0', []).allows('evil.example'), false);
  assert.equal(new HostPolicy('gpu-box.lan', []).allows('GPU-BOX.lan:8080'), true, 'the configured host name itself passes');
  assert.equal(new HostPolicy('127.0.0.1', undefined).allows(undefined), true, 'HTTP/1.0 without Host');
});
