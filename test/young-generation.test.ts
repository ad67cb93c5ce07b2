import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';

const BIN = new URL('../bin/sluice.mjs', import.meta.url).pathname;

/**
 * A preload for the gateway's process: on SIGUSR2 it writes V8's young generation (both semi-spaces, as V8 counts
 * `new_space`) to stderr. It adds a listener and nothing else, so `bin/sluice.mjs` starts as it always does.
 */
const REPORTER = `data:text/javascript,${encodeURIComponent(
  "import { getHeapSpaceStatistics } from 'node:v8';" +
    "process.on('SIGUSR2', () => { const s = getHeapSpaceStatistics().find((x) => x.space_name === 'new_space');" +
    " process.stderr.write('new_space ' + s.space_size + '\\n'); });",
)}`;

const MiB = 1024 * 1024;

/** Starts `sluice serve` on a free port, waits for its banner, asks for the young generation's size, stops it. */
async function youngGenerationAfterStart(env: Record<string, string>): Promise<number> {
  const child = spawn(process.execPath, ['--import', REPORTER, BIN, 'serve', '--host', '127.0.0.1', '--port', '0'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  const exited = once(child, 'exit');
  try {
    const size = await new Promise<number>((resolve, reject) => {
      child.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (/listening on http:\/\/127\.0\.0\.1:\d+/.test(stderr) && !stderr.includes('new_space') && !child.killed) child.kill('SIGUSR2');
        const m = /new_space (\d+)/.exec(stderr);
        if (m) resolve(Number(m[1]));
      });
      child.once('exit', (code) => reject(new Error(`sluice serve exited (${code}) before it answered:\n${stderr}`)));
    });
    return size;
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
}

test('sluice serve starts with a young generation of at most 2 × 8 MiB, however much code loading the CLI allocated', async () => {
  // Loading the CLI's modules grows it from 1 MiB; before the fix it had reached 2 × 16 MiB by the time `serve` froze
  // it, and those pages fill and stay resident once streams open (docs/performance.md, finding 12).
  const size = await youngGenerationAfterStart({ NODE_OPTIONS: '' });
  assert.ok(size > 0, `new_space ${size}`);
  assert.ok(size <= 16 * MiB, `the young generation is ${(size / MiB).toFixed(1)} MiB at start; at most 16 (2 × 8) expected`);
});
