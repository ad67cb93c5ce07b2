import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const RUN = fileURLToPath(new URL('../../bench/run.ts', import.meta.url));

/** `sluice bench [flags]`: the benchmark harness (bench/run.ts, also `npm run bench`), in its own process. */
export async function benchCommand(argv: string[]): Promise<number> {
  const child = spawn(process.execPath, [RUN, ...argv], { stdio: 'inherit' });
  return new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}
