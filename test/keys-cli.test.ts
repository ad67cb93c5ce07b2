import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chatBody, post } from './helpers/gateway.ts';
import { openSocket, wsUrl } from './helpers/ws.ts';

// Keys through the real command line (issue 14): `sluice keys` and `sluice usage` as users run them, each a process
// of its own on a temporary SQLite file, and `sluice serve` on the same file.

const BIN = new URL('../bin/sluice.mjs', import.meta.url).pathname;

interface Done {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `sluice ...` to its end. */
function sluice(args: string[], env: Record<string, string> = {}): Promise<Done> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const r: Done = { code: null, stdout: '', stderr: '' };
    child.stdout.on('data', (d: Buffer) => (r.stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (r.stderr += d.toString()));
    child.on('close', (code) => resolve({ ...r, code }));
  });
}

/** Starts `sluice serve` on a free port; resolves with its base URL once it listens. Stopped (SIGTERM) after the test. */
async function serve(t: TestContext, args: string[]): Promise<{ url: string; child: ChildProcess; stopped: Promise<number | null> }> {
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--quiet', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  const stopped = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  t.after(async () => {
    child.kill('SIGTERM');
    await stopped;
  });
  let err = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      const m = /state: [^\n]*\n/.test(err) ? /listening on (http:\/\/\S+\/v1)/.exec(err) : null;
      if (m) resolve(m[1] as string);
    });
    child.on('close', () => reject(new Error(`serve ended: ${err}`)));
  });
  return { url, child, stopped };
}

function tempState(): { dir: string; state: string } {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-keys-'));
  return { dir, state: `sqlite:${join(dir, 'state.db')}` };
}

test('keys create, list, update, revoke through the CLI; the key is printed once and only its hash is stored', async () => {
  const { dir, state } = tempState();
  const made = await sluice(['keys', 'create', 'team-a', '--rpm', '60', '--tpm', '10000', '--concurrency', '4', '--models', 'sluice-sim,other', '--expires', '2099-01-31', '--state', state]);
  assert.equal(made.code, 0, made.stderr);
  const key = made.stdout.trim();
  assert.match(key, /^sk-sluice-[A-Za-z0-9_-]{43}$/);
  assert.match(made.stderr, /only time it is shown/);
  assert.doesNotMatch(made.stderr, /ExperimentalWarning/, 'node:sqlite loads without its warning');

  const again = await sluice(['keys', 'create', 'team-a', '--state', state]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /exists/);

  const listed = await sluice(['keys', 'list', '--json', '--state', state]);
  assert.equal(listed.code, 0, listed.stderr);
  const rows = JSON.parse(listed.stdout) as Array<Record<string, unknown>>;
  assert.equal(rows.length, 1);
  assert.deepEqual({ ...rows[0], created_at: undefined }, {
    name: 'team-a',
    prefix: key.slice(0, 16),
    rpm: 60,
    tpm: 10000,
    concurrency: 4,
    models: ['sluice-sim', 'other'],
    expires_at: '2099-01-31T00:00:00.000Z',
    created_at: undefined,
    last_used_at: null,
    revoked_at: null,
    status: 'active',
  });
  // The key's secret part is nowhere in the state's files (the database, its WAL).
  const secret = key.slice(16);
  for (const f of readdirSync(dir)) assert.ok(!readFileSync(join(dir, f)).includes(secret), `${f} holds the key`);

  const updated = await sluice(['keys', 'update', 'team-a', '--rpm', 'none', '--concurrency', '2', '--state', state]);
  assert.equal(updated.code, 0, updated.stderr);
  const table = await sluice(['keys', 'list', '--state', state]);
  assert.match(table.stdout, /^NAME\s+KEY\s+RPM\s+TPM\s+CONC/m);
  assert.match(table.stdout, /team-a\s+sk-sluice-\S+…\s+-\s+10000\s+2\s+sluice-sim,other/);

  assert.equal((await sluice(['keys', 'update', 'nobody', '--rpm', '1', '--state', state])).code, 1);
  assert.equal((await sluice(['keys', 'revoke', 'team-a', '--state', state])).code, 0);
  assert.equal((await sluice(['keys', 'revoke', 'team-a', '--state', state])).code, 1, 'revoked already');
  const after = JSON.parse((await sluice(['keys', 'list', '--json', '--state', state])).stdout) as Array<Record<string, unknown>>;
  assert.equal(after[0]?.['status'], 'revoked');
  // A revoked name can be given a new key.
  const renewed = await sluice(['keys', 'create', 'team-a', '--state', state]);
  assert.equal(renewed.code, 0, renewed.stderr);
  assert.notEqual(renewed.stdout.trim(), key);

  const bad = await sluice(['keys', 'create', 'x', '--rpm', 'lots', '--state', state]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--rpm/);
  const env = await sluice(['keys', 'list', '--json'], { SLUICE_STATE: state });
  assert.equal((JSON.parse(env.stdout) as unknown[]).length, 1, 'SLUICE_STATE names the store');
});

test('a running gateway refuses a revoked key within 1 s, on HTTP and on an open WebSocket; static keys keep working', async (t) => {
  const { state } = tempState();
  const key = (await sluice(['keys', 'create', 'app', '--state', state])).stdout.trim();
  const other = (await sluice(['keys', 'create', 'other', '--state', state])).stdout.trim();
  const g = await serve(t, ['--state', state, '--api-key', 'sk-static-0123456789']);
  const auth = (k: string) => ({ authorization: `Bearer ${k}` });
  const body = chatBody({ sim: { ttft_ms: 0, itl_ms: 0, tokens: 2 } });
  assert.equal((await post(`${g.url}/chat/completions`, body, auth(key))).status, 200);
  assert.equal((await post(`${g.url}/chat/completions`, body, auth('sk-sluice-wrong'))).status, 401);
  assert.equal((await post(`${g.url}/chat/completions`, body)).status, 401);
  const socket = await openSocket(t, wsUrl(g.url, '/ws'), [], { headers: auth(key) });

  // A key created while the gateway runs works within the refresh period too.
  const late = (await sluice(['keys', 'create', 'late', '--state', state])).stdout.trim();
  const lateDeadline = Date.now() + 1_000;
  while ((await post(`${g.url}/chat/completions`, body, auth(late))).status !== 200) assert.ok(Date.now() < lateDeadline, 'the new key works within 1 s');

  assert.equal((await sluice(['keys', 'revoke', 'app', '--state', state])).code, 0);
  const revokedAt = performance.now();
  let status = 200;
  while (status === 200) status = (await post(`${g.url}/chat/completions`, body, auth(key))).status;
  const took = performance.now() - revokedAt;
  assert.equal(status, 401);
  assert.ok(took <= 1_000, `refused ${took.toFixed(0)} ms after the revoke`);
  // The socket opened with the key: its next generation is refused.
  socket.send({ type: 'create', id: 'after', endpoint: '/v1/chat/completions', body });
  const refused = await socket.waitFor((m) => m['id'] === 'after' && m['type'] === 'error');
  assert.equal((refused['error'] as { code: string }).code, 'invalid_api_key');
  assert.equal((await post(`${g.url}/chat/completions`, body, auth(other))).status, 200, 'other keys are untouched');
  assert.equal((await post(`${g.url}/chat/completions`, body, auth('sk-static-0123456789'))).status, 200, 'static api_keys keep working');
});

test('the ledger survives a restart: sluice usage after two gateway runs on one file', async (t) => {
  const { state } = tempState();
  const key = (await sluice(['keys', 'create', 'billing', '--state', state])).stdout.trim();
  const body = chatBody({ sim: { ttft_ms: 0, itl_ms: 0, tokens: 3 } });
  for (let run = 0; run < 2; run++) {
    const g = await serve(t, ['--state', state]);
    for (let i = 0; i < 2; i++) await (await post(`${g.url}/chat/completions`, body, { authorization: `Bearer ${key}` })).text();
    // SIGTERM: the gateway drains and flushes its ledger before it exits.
    g.child.kill('SIGTERM');
    assert.equal(await g.stopped, 0);
  }
  const usage = await sluice(['usage', '--json', '--state', state]);
  assert.equal(usage.code, 0, usage.stderr);
  const rows = JSON.parse(usage.stdout) as Array<Record<string, unknown>>;
  assert.equal(rows.length, 1);
  assert.equal(rows[0]?.['key'], 'billing');
  assert.equal(rows[0]?.['requests'], 4);
  assert.equal(rows[0]?.['completion_tokens'], 12);
  assert.deepEqual(rows[0]?.['outcomes'], { completed: 4 });
  const csv = await sluice(['usage', '--by', 'model', '--csv', '--state', state]);
  assert.equal(csv.stdout, `model,requests,prompt_tokens,completion_tokens,counted,completed\r\nsluice-sim,4,${rows[0]?.['prompt_tokens']},12,0,4\r\n`);
  const list = JSON.parse((await sluice(['keys', 'list', '--json', '--state', state])).stdout) as Array<Record<string, unknown>>;
  assert.ok(typeof list[0]?.['last_used_at'] === 'string', 'last used comes from the ledger');
  const none = await sluice(['usage', '--json', '--since', '2099-01-01', '--state', state]);
  assert.deepEqual(JSON.parse(none.stdout), []);
});
