import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { freePort, listening, stopChild } from './processes.ts';

/**
 * Keys and limits on for a benchmarked Sluice (`--sluice-keys sqlite|redis`, `--sluice-b-keys …`): a state store of
 * its own (a fresh SQLite file, or a redis-server started for the run on a free port, without persistence), one key
 * made with `sluice keys create` with all three limits set far above what the load reaches (so every request goes
 * through reservation and settlement, and none is refused), and the serve flags and `Authorization` header to use
 * it. The serve config for each store is bench/keys-sqlite.yaml or bench/keys-redis.yaml.
 */

export const KEY_STORES = ['sqlite', 'redis'] as const;
export type KeyStore = (typeof KEY_STORES)[number];

const ROOT = new URL('..', import.meta.url).pathname;
export const REDIS_SERVER = '/usr/bin/redis-server';

/** Limits no benchmark profile reaches: every request is admitted, and each one pays the whole admission path. */
const LIMITS = ['--rpm', '1000000000', '--tpm', '1000000000000', '--concurrency', '1000000'];

export interface BenchKeys {
  /** Extra `sluice serve` flags: the config for the store and `--state URL`. */
  serveArgs: string[];
  /** The `Authorization` header the load generator sends. */
  authorization: string;
  /** Stops what was started for it (the redis-server). */
  stop(): Promise<void>;
}

/** Whether this machine can run the store (redis-server is installed). */
export function keyStoreAvailable(store: KeyStore): boolean {
  return store === 'sqlite' || existsSync(REDIS_SERVER);
}

/** Sets up a store and a key for the Sluice of `bin`, with files under `dir`. */
export async function setUpKeys(store: KeyStore, bin: string, dir: string): Promise<BenchKeys> {
  mkdirSync(dir, { recursive: true });
  let redis: ChildProcess | undefined;
  let url: string;
  if (store === 'sqlite') {
    url = `sqlite:${join(dir, 'state.db')}`;
  } else {
    const port = await freePort();
    redis = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'warning'], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const until = Date.now() + 10_000;
    while (!(await listening(port))) {
      if (redis.exitCode !== null || Date.now() > until) throw new Error(`redis-server did not listen on ${port}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    url = `redis://127.0.0.1:${port}`;
  }
  const made = spawnSync(process.execPath, [bin, 'keys', 'create', 'bench', ...LIMITS, '--state', url], { cwd: dirname(dirname(bin)), encoding: 'utf8', timeout: 30_000 });
  if (made.status !== 0) {
    if (redis) await stopChild(redis);
    throw new Error(`sluice keys create failed (${made.status}): ${made.stderr.trim()}`);
  }
  const child = redis;
  return {
    serveArgs: ['--config', join(ROOT, `bench/keys-${store}.yaml`), '--state', url],
    authorization: `Bearer ${made.stdout.trim()}`,
    stop: async () => {
      if (child) await stopChild(child);
    },
  };
}
