import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli, tmpFile } from './helpers/cli.ts';

// Mistakes that stop `sluice serve` before it listens: each is one line on stderr naming it, never a stack trace, and
// the exit code says whose it is (2: what was typed or configured; 1: the machine's state). Issue 13.

async function startupError(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; line: string }> {
  const r = await runCli(['serve', ...args], env);
  assert.notEqual(r.code, null, 'the process exited');
  assert.equal(r.stdout, '', `${args.join(' ')}: nothing on stdout`);
  const lines = r.stderr.split('\n').filter((l) => l.length > 0);
  assert.equal(lines.length, 1, `${args.join(' ')}: one line on stderr, got:\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
  return { code: r.code, line: lines[0] as string };
}

test('an upstream URL without a scheme, or without /v1, is a usage error that shows the form wanted', async () => {
  const noScheme = await startupError(['--upstream', '127.0.0.1:8000']);
  assert.equal(noScheme.code, 2);
  assert.match(noScheme.line, /^sluice serve: .*upstreams\[0\]\.url = "127\.0\.0\.1:8000": must be an http:\/\/ or https:\/\/ base URL ending in \/v1, such as http:\/\/127\.0\.0\.1:8000\/v1$/);
  const hostPort = await startupError(['--upstream', 'gpu1:8000']); // parses as a URL with the scheme "gpu1:"
  assert.equal(hostPort.code, 2);
  assert.match(hostPort.line, /upstreams\[0\]\.url = "gpu1:8000": must be an http:\/\/ or https:\/\//);
  const noV1 = await startupError(['--upstream', 'http://x']);
  assert.equal(noV1.code, 2);
  assert.match(noV1.line, /upstreams\[0\]\.url = "http:\/\/x": must be a base URL ending in \/v1/);
});

test('a port out of range, an unknown flag, a bad log level: one line each, exit 2', async () => {
  const port = await startupError(['--port', '99999']);
  assert.equal(port.code, 2);
  assert.equal(port.line, "sluice serve: --port: '99999' is not a whole number from 0 to 65535 (see 'sluice serve --help')");
  const flag = await startupError(['--prot', '8080']);
  assert.equal(flag.code, 2);
  assert.match(flag.line, /^sluice serve: Unknown option '--prot'.*\(see 'sluice serve --help'\)$/);
  const level = await startupError(['--log-level', 'loud']);
  assert.equal(level.code, 2);
  assert.match(level.line, /log\.level = "loud": .*"error"\|"warn"\|"info"\|"debug"/);
});

test('a config file that is missing or a directory', async () => {
  const missing = await startupError(['--config', 'missing.yaml']);
  assert.equal(missing.code, 2);
  assert.match(missing.line, /^sluice serve: config: cannot read missing\.yaml: ENOENT/);
  const dir = mkdtempSync(join(tmpdir(), 'sluice-test-'));
  const isDir = await startupError(['--config', dir]);
  assert.equal(isDir.code, 2);
  assert.match(isDir.line, /cannot read .*EISDIR/);
});

test('a port already in use: one line naming the address, exit 1', async (t) => {
  const holder = createServer();
  await new Promise<void>((r) => holder.listen(0, '127.0.0.1', () => r()));
  t.after(() => holder.close());
  const { port } = holder.address() as AddressInfo;
  const r = await startupError(['--port', String(port)]);
  assert.equal(r.code, 1);
  assert.equal(r.line, `sluice serve: cannot listen on 127.0.0.1:${port}: the port is already in use (choose another --port, or stop what holds it)`);
});

test('a --host that is not an address of this machine, or does not resolve, exit 2', async () => {
  // 192.0.2.1 is TEST-NET-1 (RFC 5737): never a local address; binding it fails without sending anything.
  const foreign = await startupError(['--host', '192.0.2.1', '--port', '0']);
  assert.equal(foreign.code, 2);
  assert.match(foreign.line, /cannot listen on 192\.0\.2\.1:0: 192\.0\.2\.1 is not an address of this machine \(check --host\)$/);
  // .invalid never resolves (RFC 6761).
  const unknown = await startupError(['--host', 'gateway.invalid', '--port', '0']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.line, /the host name gateway\.invalid does not resolve \(check --host\)$/);
});

test('TLS files that are missing, a directory, or not PEM: one line naming the key or the files, exit 2', async () => {
  const missing = await startupError(['--port', '0', '--tls-cert', '/nonexistent/cert.pem', '--tls-key', '/nonexistent/key.pem']);
  assert.equal(missing.code, 2);
  assert.match(missing.line, /^sluice serve: tls\.cert_file: cannot read \/nonexistent\/cert\.pem: ENOENT/);
  const dir = mkdtempSync(join(tmpdir(), 'sluice-test-'));
  const isDir = await startupError(['--port', '0', '--tls-cert', dir, '--tls-key', dir]);
  assert.equal(isDir.code, 2);
  assert.match(isDir.line, /tls\.cert_file: cannot read .*EISDIR/);
  const junk = tmpFile('cert.pem', 'not a certificate\n');
  const notPem = await startupError(['--port', '0', '--tls-cert', junk, '--tls-key', junk]);
  assert.equal(notPem.code, 2);
  assert.match(notPem.line, new RegExp(`^sluice serve: tls: .*PEM.* \\(tls\\.cert_file ${junk}, tls\\.key_file ${junk}: a PEM certificate and its private key\\)$`));
});

test('an upstream host name that does not resolve stops start-up, naming it; one that resolves but is down does not', async () => {
  const r = await startupError(['--port', '0', '--upstream', 'http://no-such-engine.invalid:8000/v1']);
  assert.equal(r.code, 2);
  assert.equal(r.line, "sluice serve: upstreams[0].url: the host name 'no-such-engine.invalid' does not resolve (ENOTFOUND); check the name");
  // From a config file, the index names the entry.
  const file = tmpFile('sluice.yaml', 'upstreams:\n  - url: http://localhost:1/v1\n  - url: http://gpu-typo.invalid/v1\n');
  const second = await startupError(['--port', '0', '--config', file]);
  assert.equal(second.code, 2);
  assert.match(second.line, /upstreams\[1\]\.url: the host name 'gpu-typo\.invalid' does not resolve/);
  // localhost resolves; nothing listens on port 1: the gateway starts and says where to look.
  const down = await runCli(['serve', '--port', '0', '--upstream', 'http://localhost:1/v1'], {}, /try: curl/);
  down.child.kill('SIGTERM');
  await down.exited;
  assert.match(down.stderr, /models: \(none discovered yet; see http:\/\/127\.0\.0\.1:\d+\/ready\)/);
});
