import type { TestContext } from 'node:test';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const BIN = new URL('../../bin/sluice.mjs', import.meta.url).pathname;

/** A `sluice` process as the user runs it: its output so far and, once it has exited, its code. */
export interface CliRun {
  child: ChildProcess;
  stdout: string;
  stderr: string;
  code: number | null;
  /** Resolves with the exit code when the process has exited and its output is read. */
  exited: Promise<number | null>;
}

/** Starts `sluice ...` and returns at once. Environment: the test's plus `env`. */
export function startCli(args: string[], env: Record<string, string> = {}): CliRun {
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let onExit!: (code: number | null) => void;
  const r: CliRun = { child, stderr: '', stdout: '', code: null, exited: new Promise((res) => (onExit = res)) };
  child.stdout!.on('data', (d: Buffer) => (r.stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (r.stderr += d.toString()));
  child.on('close', (code) => {
    r.code = code;
    onExit(code);
  });
  return r;
}

/** Runs `sluice ...`; resolves once stderr matches `until`, or the process exits. */
export function runCli(args: string[], env: Record<string, string> = {}, until?: RegExp): Promise<CliRun> {
  const r = startCli(args, env);
  return new Promise((resolve) => {
    if (until) r.child.stderr!.on('data', () => until.test(r.stderr) && resolve(r));
    void r.exited.then(() => resolve(r));
  });
}

/**
 * Stops it as Ctrl-C does (SIGINT: no announce window, unlike SIGTERM) and waits for the exit, so that everything the
 * process printed has been read.
 */
export async function stop(r: CliRun): Promise<void> {
  if (r.code === null && r.child.exitCode === null) r.child.kill('SIGINT');
  await r.exited;
}

/** A file in a fresh temporary directory. */
export function tmpFile(name: string, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-test-'));
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

/** A loopback port that was free a moment ago (for a process that prints no banner to read its port from). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

/**
 * `sluice serve ARGS` on a port picked here, ready once GET /health answers; stopped after the test. For tests of
 * what it prints, which may be no banner at all.
 */
export async function serveOnPort(t: TestContext, args: string[], env: Record<string, string> = {}): Promise<CliRun & { root: string; url: string }> {
  const port = await freePort();
  const r = startCli(['serve', '--port', String(port), ...args], env);
  t.after(() => stop(r));
  const root = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (r.code !== null) throw new Error(`sluice serve exited with ${r.code}: ${r.stderr}`);
    try {
      if ((await fetch(`${root}/health`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`sluice serve did not answer /health within 20 s: ${r.stderr}`);
    await new Promise((res) => setTimeout(res, 50));
  }
  return Object.assign(r, { root, url: `${root}/v1` });
}
