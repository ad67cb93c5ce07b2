import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { freePort, runCli, startCli, stop, tmpFile, type CliRun } from './helpers/cli.ts';
import { waitFor } from './helpers/hostile.ts';

/** One request on a connection of its own (the primary hands out connections, not requests), to `url`. */
function chatOnce(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ model: 'sluice-sim', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 });
    const req = request(`${url}/chat/completions`, { method: 'POST', agent: false, headers: { 'content-type': 'application/json', connection: 'close' } }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** `sluice serve --workers 2` on the simulator, ready once every worker listens. */
async function cluster(args: string[] = []): Promise<CliRun & { url: string; root: string }> {
  const port = await freePort();
  const config = tmpFile('sluice.yaml', 'sim: { ttft_ms: 5, itl_ms: 5, tokens: 3 }\ndrain: { announce_ms: 0 }\n');
  // Both lines: the primary's, once every worker listens, and the first worker's banner, which may come after it.
  const ready = /^(?=[\s\S]*workers: 2 processes share the port)(?=[\s\S]*sluice gateway listening on)/;
  const r = await runCli(['serve', '--workers', '2', '--port', String(port), '--config', config, ...args], {}, ready);
  assert.equal(r.code, null, r.stderr);
  const root = `http://127.0.0.1:${port}`;
  return Object.assign(r, { root, url: `${root}/v1` });
}

/** The request log's ids: each process numbers its own requests after a prefix of its own (src/generation/request-id.ts). */
function servers(stdout: string): Set<string> {
  const prefixes = new Set<string>();
  for (const line of stdout.split('\n')) {
    const id = /"id":"(req_[0-9a-f]{12})[0-9a-f]{6}"/.exec(line);
    if (id) prefixes.add(id[1] as string);
  }
  return prefixes;
}

test('--workers 2: two processes share the port, each serves connections, and /metrics sums them', async (t) => {
  const gw = await cluster();
  t.after(() => stop(gw));
  const pids = /pids (\d+), (\d+); primary (\d+)/.exec(gw.stderr);
  assert.ok(pids, gw.stderr);
  assert.equal(Number(pids[3]), gw.child.pid);
  // The banner is printed once, by the first worker.
  assert.equal(gw.stderr.match(/sluice gateway listening on/g)?.length, 1, gw.stderr);
  for (let i = 0; i < 10; i++) assert.equal((await chatOnce(gw.url)).status, 200);
  assert.ok(await waitFor(() => servers(gw.stdout).size === 2 && gw.stdout.split('\n').filter((l) => l.includes('"outcome":"completed"')).length === 10, 5_000), gw.stdout);
  // Every worker's figures in one answer, whichever worker a scrape reaches.
  for (let i = 0; i < 2; i++) {
    const text = await (await fetch(`${gw.root}/metrics`, { headers: { connection: 'close' } })).text();
    assert.match(text, /^sluice_requests_total\{endpoint="\/v1\/chat\/completions",model="sluice-sim",upstream="simulator",outcome="completed"\} 10$/m, text);
    assert.match(text, /^sluice_upstream_up\{upstream="simulator"\} 1$/m);
  }
});

test('--workers 2: a worker that dies is replaced, and the gateway keeps serving', async (t) => {
  const gw = await cluster();
  t.after(() => stop(gw));
  const [, a, b] = /pids (\d+), (\d+);/.exec(gw.stderr) as RegExpExecArray;
  process.kill(Number(a), 'SIGKILL');
  assert.ok(await waitFor(() => /worker 1 \(pid \d+\) died \(SIGKILL\); starting another/.test(gw.stderr), 10_000), gw.stderr);
  for (let i = 0; i < 6; i++) assert.equal((await chatOnce(gw.url)).status, 200);
  process.kill(Number(b), 0); // the other one was left alone
  await stop(gw);
  assert.equal(gw.code, 0, gw.stderr);
});

test('--workers 2: SIGTERM drains a stream in flight on any worker, then every process exits 0', async () => {
  const port = await freePort();
  const config = tmpFile('sluice.yaml', 'sim: { ttft_ms: 5, itl_ms: 40, tokens: 25 }\ndrain: { announce_ms: 0 }\n');
  const gw = await runCli(['serve', '--workers', '2', '--port', String(port), '--config', config], {}, /workers: 2 processes share the port/);
  const pids = (/pids (\d+), (\d+);/.exec(gw.stderr) as RegExpExecArray).slice(1).map(Number);
  const res = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'sluice-sim', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
  });
  const reader = res.body!.getReader();
  await reader.read();
  gw.child.kill('SIGTERM');
  let text = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    text += Buffer.from(value).toString();
  }
  assert.match(text, /data: \[DONE\]\n\n$/);
  assert.equal(await gw.exited, 0, gw.stderr);
  for (const pid of pids) assert.throws(() => process.kill(pid, 0), /ESRCH/);
});

test('--workers 2: workers whose primary is killed drain and exit instead of lingering', async () => {
  const gw = await cluster();
  const pids = (/pids (\d+), (\d+);/.exec(gw.stderr) as RegExpExecArray).slice(1).map(Number);
  gw.child.kill('SIGKILL');
  const gone = (pid: number): boolean => {
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  };
  assert.ok(await waitFor(() => pids.every(gone), 15_000), `workers ${pids.join(', ')} still running`);
});

test('--workers 2 on a port in use: exits non-zero, saying the port is in use', async (t) => {
  const first = await cluster();
  t.after(() => stop(first));
  const second = startCli(['serve', '--workers', '2', '--port', new URL(first.root).port]);
  const code = await second.exited;
  assert.notEqual(code, 0);
  assert.match(second.stderr, /address already in use|in use/i, second.stderr);
});

test('workers: a bad value is one line naming the key', async () => {
  const r = await runCli(['serve', '--workers', 'many']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--workers/);
  const e = await runCli(['serve', '--port', '0'], { SLUICE_WORKERS: '0' });
  assert.equal(e.code, 2);
  assert.match(e.stderr, /workers/);
});
