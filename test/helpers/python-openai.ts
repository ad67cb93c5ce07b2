import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/**
 * openai-python for the tests that drive it: the interpreter of the repository's `.venv` (scripts/setup.sh makes it
 * with `pip install openai`), else `$SLUICE_PYTHON`, else `python3`; null when none of them can import `openai`.
 */
export function pythonWithOpenAI(): string | null {
  const venv = new URL('../../.venv/bin/python', import.meta.url).pathname;
  const candidates = [process.env['SLUICE_PYTHON'], existsSync(venv) ? venv : undefined, 'python3'].filter((c): c is string => c !== undefined && c !== '');
  for (const py of candidates) {
    const r = spawnSync(py, ['-c', 'import openai'], { stdio: 'ignore', timeout: 30_000 });
    if (r.status === 0) return py;
  }
  return null;
}

/** Runs a Python script (asynchronously: the gateway under test lives in this process) and returns its output. */
export function runPython(python: string, script: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(python, ['-c', script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    p.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
