/**
 * The Redis limiter alone, in this process, against a redis-server of its own (started on a free port, no
 * persistence, stopped by pid): waves of `--width` admissions made in one turn of the event loop, each settled once
 * all of the wave are admitted, as requests that start and end together would. Prints this process's CPU (user +
 * system) per admission and settlement, and with `--root DIR` runs another checkout's limiter (e.g. a `git archive`
 * of an earlier commit with node_modules linked) beside this one, rounds alternating.
 *
 *   node bench/micro/limiter.ts [--waves 2000] [--width 1] [--rounds 5] [--root /tmp/base]
 *
 * For a count that does not depend on the machine's other load, run it under callgrind twice with different
 * `--waves` and `--rounds 1`, and divide the difference in instructions by the difference in admissions:
 *
 *   valgrind --tool=callgrind --callgrind-out-file=/dev/null node bench/micro/limiter.ts --waves 200 --rounds 1
 */
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { freePort, listening, stopChild } from '../processes.ts';
import { REDIS_SERVER } from '../keys.ts';
import type { KeyLimits } from '../../src/state/store.ts';
import type { RateLimiter } from '../../src/limits/limiter.ts';

const { values } = parseArgs({
  options: {
    waves: { type: 'string', default: '2000' },
    width: { type: 'string', default: '1' },
    rounds: { type: 'string', default: '5' },
    root: { type: 'string' },
  },
});
const waves = Number(values.waves);
const width = Number(values.width);
const rounds = Number(values.rounds);
const HERE = resolve(new URL('../..', import.meta.url).pathname);

const port = await freePort();
const server = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', mkdtempSync(join(tmpdir(), 'sluice-limiter-')), '--loglevel', 'warning'], {
  stdio: ['ignore', 'ignore', 'inherit'],
});
const url = `redis://127.0.0.1:${port}`;

interface Subject {
  label: string;
  limiter: RateLimiter;
  close(): Promise<void>;
  usPerCall: number[];
}

/** The limiter of the checkout at `root`, on a connection of its own. */
async function open(root: string, label: string): Promise<Subject> {
  const { openStore } = (await import(join(root, 'src/state/store.ts'))) as typeof import('../../src/state/store.ts');
  const { RedisLimiter } = (await import(join(root, 'src/limits/redis-limiter.ts'))) as typeof import('../../src/limits/redis-limiter.ts');
  const store = (await openStore(url)) as import('../../src/state/redis-store.ts').RedisStore;
  const limiter = new RedisLimiter(store.redis, store.health, { outageGraceMs: 60_000 });
  return {
    label,
    limiter,
    usPerCall: [],
    close: async () => {
      limiter.close?.();
      await store.close();
    },
  };
}

// Far above what the run reaches, as bench/keys.ts sets them: every admission pays the whole script.
const LIMITS: KeyLimits = { rpm: 1_000_000_000, tpm: 1_000_000_000_000, concurrency: 1_000_000, models: null, expires_at: null };

async function run(s: Subject, n: number): Promise<void> {
  for (let w = 0; w < n; w++) {
    const wave = [];
    for (let i = 0; i < width; i++) wave.push(Promise.resolve(s.limiter.admit(s.label, LIMITS, 100)));
    for (const a of await Promise.all(wave)) a.reservation.settle(60);
  }
  // The last settlements' answers: one more admission after them on the same connection comes back after them.
  (await s.limiter.admit(s.label, LIMITS, 0)).reservation.settle(0);
  await new Promise((r) => setTimeout(r, 50));
}

const subjects: Subject[] = [];
try {
  const until = Date.now() + 10_000;
  while (!(await listening(port))) {
    if (server.exitCode !== null || Date.now() > until) throw new Error(`redis-server did not listen on ${port}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  subjects.push(await open(HERE, 'this checkout'));
  if (values.root) subjects.push(await open(resolve(values.root), values.root));
  for (const s of subjects) await run(s, 300); // warm-up: JIT, the scripts loaded
  for (let r = 0; r < rounds; r++) {
    for (const s of r % 2 === 0 ? subjects : [...subjects].reverse()) {
      const c0 = process.cpuUsage();
      await run(s, waves);
      const c = process.cpuUsage(c0);
      s.usPerCall.push((c.user + c.system) / (waves * width));
    }
  }
  console.log(`CPU per admission + settlement (${rounds} rounds × ${waves} waves of ${width} admitted in one turn):`);
  for (const s of subjects) {
    const v = [...s.usPerCall].sort((a, b) => a - b);
    console.log(`  ${s.label}: median ${(v[Math.floor((v.length - 1) / 2)] as number).toFixed(1)} µs (${(v[0] as number).toFixed(1)} to ${(v.at(-1) as number).toFixed(1)})`);
  }
} finally {
  for (const s of subjects) await s.close();
  await stopChild(server);
}
