import type { StoreHealth } from './store-health.ts';

/**
 * The state store: client keys with their limits, and the usage ledger. One interface, so the embedded SQLite store
 * (src/state/sqlite-store.ts) and a Redis store for several instances (issue 14) are interchangeable. Every method is
 * async because Redis is; the gateway calls none of them on a request's path: keys are cached in memory
 * (src/auth/key-ring.ts) and usage is written in batches (src/ledger/ledger.ts).
 */

/** A key's limits; null = no limit of that kind. */
export interface KeyLimits {
  /** Requests per minute (a sliding 60 s window). */
  rpm: number | null;
  /** Prompt + completion tokens per minute (a sliding 60 s window). */
  tpm: number | null;
  /** Streams and requests in flight at once. */
  concurrency: number | null;
  /** Models (or aliases) the key may ask for; null = any. */
  models: string[] | null;
  /** Unix ms after which the key is refused; null = never. */
  expires_at: number | null;
}

/** A stored client key: its SHA-256 digest, never the key itself. */
export interface StoredKey extends KeyLimits {
  name: string;
  /** SHA-256 of the whole key, lower-case hex. */
  hash: string;
  /** The key's first characters, shown by `sluice keys list` to tell keys apart (`sk-sluice-AbCd`). */
  prefix: string;
  created_at: number;
  /** Unix ms when revoked; null = live. A revoked key stays listed (and keeps auth on) until re-created. */
  revoked_at: number | null;
}

/** One request in the ledger: the figures of its log line (src/generation/request-log.ts). */
export interface UsageRecord {
  /** Unix ms of the request's arrival. */
  ts: number;
  request_id: string;
  /** The stored key's name; null for a static `api_keys` key or no auth. */
  key: string | null;
  model: string | null;
  upstream: string | null;
  endpoint: string;
  stream: boolean;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  tokens_source: 'reported' | 'counted' | null;
  outcome: string;
  status: number;
  error_code: string | null;
  ttft_ms: number | null;
  duration_ms: number;
}

export interface UsageFilter {
  key?: string | undefined;
  model?: string | undefined;
  /** Unix ms, inclusive. */
  since?: number | undefined;
  /** Unix ms, exclusive. */
  until?: number | undefined;
}

export class KeyExistsError extends Error {
  override name = 'KeyExistsError';
}

export interface StateStore {
  /** `sqlite:PATH` or `redis://HOST:PORT`, without credentials. */
  readonly url: string;
  /** Whether the store answers (the Redis store's connection); absent for the SQLite file, which is always there. */
  readonly health?: StoreHealth;
  /** Adds a key; throws KeyExistsError when a live key has that name (a revoked one is replaced). */
  createKey(key: StoredKey): Promise<void>;
  /** Changes a key's limits; false when no key has that name. */
  updateKey(name: string, patch: Partial<KeyLimits>): Promise<boolean>;
  /** Revokes a live key; false when there is none of that name. */
  revokeKey(name: string, at: number): Promise<boolean>;
  /** Every key, revoked ones included, by name. */
  listKeys(): Promise<StoredKey[]>;
  /** A counter that changes whenever any key does: the gateway polls it to refresh its cache. */
  keysVersion(): Promise<number>;
  /** Each key's most recent request in the ledger (unix ms). */
  lastUsed(): Promise<Map<string, number>>;
  /** Appends ledger records, all or none. */
  appendUsage(records: readonly UsageRecord[]): Promise<void>;
  /** The ledger's records that match, oldest first. */
  readUsage(filter: UsageFilter): AsyncIterable<UsageRecord>;
  close(): Promise<void>;
}

/** The default state URL: a SQLite file in the working directory, created on first use. */
export const DEFAULT_STATE_URL = 'sqlite:./sluice.db';

/** A `state.url` that is not one of the supported forms. */
export class StateUrlError extends Error {
  override name = 'StateUrlError';
}

/**
 * Opens the store named by `url` (the SQLite driver or the Redis client is loaded only now, so a gateway without
 * state loads neither). A Redis that cannot be reached now is a StateUrlError: start-up stops with one line.
 */
export async function openStore(url: string): Promise<StateStore> {
  if (url.startsWith('sqlite:')) {
    const { SqliteStore } = await import('./sqlite-store.ts');
    return SqliteStore.open(sqlitePath(url));
  }
  if (url.startsWith('redis://') || url.startsWith('rediss://')) {
    const { RedisStore } = await import('./redis-store.ts');
    return RedisStore.open(url);
  }
  throw new StateUrlError(`state.url '${url}': expected sqlite:PATH (e.g. ${DEFAULT_STATE_URL}) or redis://HOST:PORT`);
}

/** The file of a `sqlite:` URL: `sqlite:./a.db`, `sqlite:/abs/a.db`, `sqlite:///abs/a.db`. */
export function sqlitePath(url: string): string {
  let p = url.slice('sqlite:'.length);
  if (p.startsWith('//')) p = p.slice(2);
  if (p === '') throw new StateUrlError(`state.url '${url}': no file after sqlite:`);
  return p;
}
