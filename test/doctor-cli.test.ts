import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSimulator } from '../src/sim/server.ts';
import { freePort } from './helpers/proxies.ts';

/** `sluice doctor` as a user runs it: the real CLI in a child process, its output and exit code. */

const BIN = new URL('../bin/sluice.mjs', import.meta.url).pathname;

function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, 'doctor', ...args], { env: { ...process.env, NO_COLOR: '1', ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

async function simUrl(t: TestContext): Promise<string> {
  const s = await startSimulator({ port: 0 });
  t.after(() => s.close());
  return s.url;
}

test('--json: a machine-readable report, exit code 1 for warnings only', async (t) => {
  const url = await simUrl(t);
  const { code, stdout, stderr } = await run([url, '--json']);
  assert.equal(stderr, '', stdout);
  assert.equal(code, 1, stdout.slice(0, 3000));
  assert.equal(code, 1);
  const report = JSON.parse(stdout) as { status: string; exitCode: number; checks: Array<{ id: string; status: string }>; probes: Array<{ metrics: { ttftMs: number; itlMs: { p50: number } }; timeline: { reads: unknown[]; tokens: Array<[number, number, number | null]> } }> };
  assert.equal(report.status, 'warn');
  assert.equal(report.exitCode, 1);
  assert.ok(report.checks.some((c) => c.id === 'buffering' && c.status !== 'fail'));
  const probe = report.probes[0];
  assert.ok(probe && probe.timeline.tokens.length === 40);
  assert.ok(probe.timeline.tokens.every(([, , delay]) => typeof delay === 'number'), 'each token carries its probe delay');
});

test('terminal report and --html: timeline, verdict, an SVG file', async (t) => {
  const url = await simUrl(t);
  const dir = await mkdtemp(join(tmpdir(), 'sluice-doctor-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const html = join(dir, 'report.html');
  const { code, stdout } = await run([url, '--html', html]);
  assert.equal(code, 1);
  assert.match(stdout, /arrivals \|/);
  assert.match(stdout, /(PASS|WARN)\s+Tokens stream as they are generated/);
  assert.match(stdout, /WARN\s+0 failures, \d+ warnings \(exit 1\)/);
  assert.doesNotMatch(stdout, /\x1b\[/, 'no colour when not a TTY');
  const page = await readFile(html, 'utf8');
  assert.match(page, /<svg[^>]*viewBox/);
  assert.match(page, /Tokens stream as they are generated/);
});

test('exit code 2 and one clear line for an unreachable URL; usage errors', async () => {
  const port = await freePort();
  const down = await run([`http://127.0.0.1:${port}/v1`]);
  assert.equal(down.code, 2);
  assert.match(down.stderr, /cannot reach 127\.0\.0\.1:\d+: connection refused .*SLUICE_DOCTOR_UNREACHABLE/);
  const json = await run([`http://127.0.0.1:${port}/v1`, '--json']);
  assert.equal((JSON.parse(json.stdout) as { error: { code: string } }).error.code, 'SLUICE_DOCTOR_UNREACHABLE');
  const usage = await run([]);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /give the URL/);
  const badHeader = await run(['http://x/v1', '--header', 'nocolon']);
  assert.equal(badHeader.code, 2);
  assert.match(badHeader.stderr, /--header/);
});
