import type { Redis } from 'ioredis';
import { KeyExistsError, type KeyLimits, type StateStore, type StoredKey, type UsageFilter, type UsageRecord } from './store.ts';
import { connectRedis, parseRedisUrl } from './redis-connection.ts';
import { LuaScript } from './lua-script.ts';
import { StoreHealth } from './store-health.ts';

/** Every Redis key Sluice writes starts with this (docs/keys.md lists them). */
export const PREFIX = 'sluice:';
const NAMES = `${PREFIX}keys`;
const VERSION = `${PREFIX}keys:version`;
const LAST_USED = `${PREFIX}last_used`;
export const LEDGER = `${PREFIX}ledger`;
const keyHash = (name: string): string => `${PREFIX}key:${name}`;

/** Records read per XRANGE page by `readUsage`. */
const PAGE = 1000;
/**
 * A stream entry's id is the Redis server's clock when it was written; a record's `ts` is its arrival at a gateway,
 * always earlier. Reading from `since` minus this margin covers gateways whose clocks run ahead of Redis's.
 */
const CLOCK_SKEW_MS = 5 * 60_000;

/**
 * The version counter starts at a random value the first time it is made, so that a Redis that lost its data (no
 * persistence, a new server) never repeats a version a gateway has cached with other keys.
 */
const BUMP = `if redis.call('EXISTS', KEYS[3]) == 0 then redis.call('SET', KEYS[3], ARGV[1]) end
redis.call('INCR', KEYS[3])`;

/** KEYS: the key's hash, the set of names, the version. ARGV: a version base, the name, then field/value pairs. */
const CREATE = new LuaScript(`
if redis.call('HEXISTS', KEYS[1], 'name') == 1 and redis.call('HEXISTS', KEYS[1], 'revoked_at') == 0 then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('SADD', KEYS[2], ARGV[2])
${BUMP}
return 1`);

/** KEYS: the key's hash, the set of names, the version. ARGV: a version base, then field/value pairs ('' deletes). */
const UPDATE = new LuaScript(`
if redis.call('HEXISTS', KEYS[1], 'name') == 0 then return 0 end
for i = 2, #ARGV, 2 do
  if ARGV[i + 1] == '' then redis.call('HDEL', KEYS[1], ARGV[i]) else redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
${BUMP}
return 1`);

/** KEYS: the key's hash, the set of names, the version. ARGV: a version base, the time of revocation. */
const REVOKE = new LuaScript(`
if redis.call('HEXISTS', KEYS[1], 'name') == 0 or redis.call('HEXISTS', KEYS[1], 'revoked_at') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'revoked_at', ARGV[2])
${BUMP}
return 1`);

const LIMIT_FIELDS = ['rpm', 'tpm', 'concurrency', 'models', 'expires_at'] as const satisfies readonly (keyof KeyLimits)[];

/**
 * The shared store for several gateway instances: one Redis (`redis://HOST:PORT[/DB]`, `rediss://` for TLS).
 *
 * - Each key is a hash `sluice:key:NAME` (its fields are StoredKey's; a null is an absent field), the names are the
 *   set `sluice:keys`, and `sluice:keys:version` is incremented by every change, in the same script as the change.
 * - The ledger is the stream `sluice:ledger`: one entry per record, its one field `r` the record as JSON. A batch is
 *   one MULTI/EXEC, so it is written all or none, and each key's last use goes into the sorted set `sluice:last_used`
 *   in the same transaction (ZADD GT keeps the latest whichever gateway writes last).
 * - Limits that hold across instances are kept beside them by src/limits/redis-limiter.ts, on the same connection.
 *
 * Every command is bounded in time (src/state/redis-connection.ts) and fails at once while Redis is unreachable;
 * `health` says where it stands.
 */
export class RedisStore implements StateStore {
  readonly url: string;
  readonly redis: Redis;
  readonly health: StoreHealth;
  #closed = false;

  private constructor(redis: Redis, url: string) {
    this.redis = redis;
    this.url = url;
    this.health = new StoreHealth(url);
    redis.on('ready', () => this.health.recovered());
    redis.on('close', () => {
      if (!this.#closed) this.health.failed(new Error('connection closed'), 'the connection');
    });
  }

  /** Connects; rejects with a StateUrlError when the URL is malformed or the first connection fails. */
  static async open(url: string): Promise<RedisStore> {
    const target = parseRedisUrl(url);
    return new RedisStore(await connectRedis(target), target.display);
  }

  /** Runs a store operation, reporting its failure to `health`. */
  async #op<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      const r = await fn();
      if (!this.health.up && this.redis.status === 'ready') this.health.recovered();
      return r;
    } catch (err) {
      if (!(err instanceof KeyExistsError)) this.health.failed(err, what);
      throw err;
    }
  }

  createKey(k: StoredKey): Promise<void> {
    return this.#op('createKey', async () => {
      const fields: string[] = [];
      for (const [f, v] of Object.entries(k) as [keyof StoredKey, StoredKey[keyof StoredKey]][]) {
        if (v !== null) fields.push(f, Array.isArray(v) ? JSON.stringify(v) : String(v));
      }
      const ok = await CREATE.run(this.redis, [keyHash(k.name), NAMES, VERSION], [versionBase(), k.name, ...fields]);
      if (ok !== 1) throw new KeyExistsError(`a key named '${k.name}' exists; revoke it first or choose another name`);
    });
  }

  updateKey(name: string, patch: Partial<KeyLimits>): Promise<boolean> {
    return this.#op('updateKey', async () => {
      const pairs: string[] = [];
      for (const f of LIMIT_FIELDS) {
        if (!(f in patch)) continue;
        const v = patch[f];
        pairs.push(f, v === undefined || v === null ? '' : Array.isArray(v) ? JSON.stringify(v) : String(v));
      }
      return (await UPDATE.run(this.redis, [keyHash(name), NAMES, VERSION], [versionBase(), ...pairs])) === 1;
    });
  }

  revokeKey(name: string, at: number): Promise<boolean> {
    return this.#op('revokeKey', async () => (await REVOKE.run(this.redis, [keyHash(name), NAMES, VERSION], [versionBase(), at])) === 1);
  }

  listKeys(): Promise<StoredKey[]> {
    return this.#op('listKeys', async () => {
      const names = (await this.redis.smembers(NAMES)).sort();
      if (names.length === 0) return [];
      const p = this.redis.pipeline();
      for (const n of names) p.hgetall(keyHash(n));
      const out: StoredKey[] = [];
      for (const [err, h] of (await p.exec()) ?? []) {
        if (err) throw err;
        const k = toKey(h as Record<string, string>);
        if (k !== undefined) out.push(k);
      }
      return out;
    });
  }

  keysVersion(): Promise<number> {
    return this.#op('keysVersion', async () => Number((await this.redis.get(VERSION)) ?? 0));
  }

  lastUsed(): Promise<Map<string, number>> {
    return this.#op('lastUsed', async () => {
      const flat = await this.redis.zrange(LAST_USED, 0, -1, 'WITHSCORES');
      const m = new Map<string, number>();
      for (let i = 0; i + 1 < flat.length; i += 2) m.set(flat[i] as string, Number(flat[i + 1]));
      return m;
    });
  }

  appendUsage(records: readonly UsageRecord[]): Promise<void> {
    if (records.length === 0 || this.#closed) return Promise.resolve();
    return this.#op('appendUsage', async () => {
      const m = this.redis.multi();
      const last = new Map<string, number>();
      for (const r of records) {
        m.xadd(LEDGER, '*', 'r', JSON.stringify(r));
        if (r.key !== null && r.ts > (last.get(r.key) ?? -1)) last.set(r.key, r.ts);
      }
      for (const [k, ts] of last) m.zadd(LAST_USED, 'GT', ts, k);
      const res = await m.exec();
      if (res === null) throw new Error('the ledger transaction was aborted');
      for (const [err] of res) if (err) throw err;
    });
  }

  async *readUsage(f: UsageFilter): AsyncIterable<UsageRecord> {
    let start = f.since === undefined ? '-' : String(Math.max(0, f.since - CLOCK_SKEW_MS));
    for (;;) {
      const from = start;
      const page = await this.#op('readUsage', () => this.redis.xrange(LEDGER, from, '+', 'COUNT', PAGE));
      for (const [, fields] of page) {
        const r = parseRecord(fields);
        if (r === undefined) continue;
        if (f.key !== undefined && r.key !== f.key) continue;
        if (f.model !== undefined && r.model !== f.model) continue;
        if (f.since !== undefined && r.ts < f.since) continue;
        if (f.until !== undefined && r.ts >= f.until) continue;
        yield r;
      }
      if (page.length < PAGE) return;
      start = `(${(page[page.length - 1] as [string, string[]])[0]}`;
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // QUIT waits for the replies of commands sent before it; a Redis that is down gets no say.
    if (this.redis.status === 'ready') await this.redis.quit().catch(() => {});
    this.redis.disconnect();
  }
}

const versionBase = (): number => Math.floor(Math.random() * 2 ** 31) * 1000;

const int = (v: string | undefined): number | null => (v === undefined || v === '' ? null : Number(v));

function toKey(h: Record<string, string>): StoredKey | undefined {
  if (h['name'] === undefined || h['hash'] === undefined) return undefined;
  return {
    name: h['name'],
    hash: h['hash'],
    prefix: h['prefix'] ?? '',
    rpm: int(h['rpm']),
    tpm: int(h['tpm']),
    concurrency: int(h['concurrency']),
    models: h['models'] === undefined ? null : (JSON.parse(h['models']) as string[]),
    expires_at: int(h['expires_at']),
    created_at: Number(h['created_at'] ?? 0),
    revoked_at: int(h['revoked_at']),
  };
}

/** A ledger entry's record; undefined for an entry this version did not write. */
function parseRecord(fields: string[]): UsageRecord | undefined {
  const i = fields.indexOf('r');
  if (i === -1 || i % 2 !== 0) return undefined;
  try {
    const r = JSON.parse(fields[i + 1] as string) as UsageRecord;
    return typeof r === 'object' && r !== null && typeof r.ts === 'number' ? r : undefined;
  } catch {
    return undefined;
  }
}
