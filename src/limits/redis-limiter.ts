import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { SluiceError } from '../errors.ts';
import type { KeyLimits } from '../state/store.ts';
import { LuaScript, runPipelined, type ScriptCall } from '../state/lua-script.ts';
import type { StoreHealth } from '../state/store-health.ts';
import { Limiter, rateLimitedError, WINDOW_MS, type Admitted, type RateLimiter, type Reservation } from './limiter.ts';
import { resetDuration } from './reset-duration.ts';

/**
 * A concurrency slot is a lease: it expires this long after it was taken or last renewed. The gateway holding it
 * renews it every third of this while the request runs, and frees it when the request ends; the slots of a gateway
 * that died free themselves within this time.
 */
export const LEASE_MS = 30_000;
/** After a failed call, admissions use the local counters for this long before trying Redis again. */
const RETRY_AFTER_FAILURE_MS = 1_000;
/** Values per call in the LIMITS script's ARGV. */
const OP_ARGS = 6;
/** Calls per LIMITS script at most: a wave of thousands is split, so that no one script holds Redis for long. */
const MAX_OPS = 256;

// Every key of one client key shares the hash tag {NAME}: a script's keys stay in one slot, as Redis Cluster wants.
const rlKeys = (name: string): [req: string, tok: string, sum: string, conc: string] => {
  const base = `sluice:rl:{${name}}:`;
  return [`${base}req`, `${base}tok`, `${base}tsum`, `${base}conc`];
};

/**
 * The server's clock, in ms: every instance measures the windows on the same clock. And `int`: a Lua number as the
 * integer text Redis takes (Lua would write 1e+15 for large ones, which INCRBY refuses).
 */
const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function int(n) return string.format('%.0f', n) end`;

/**
 * Reservations and settlements of one client key, in one script: every call the gateway made for that key during one
 * turn of its event loop (usually one; many when a wave of requests arrives), run in the order they were made, as
 * separate scripts would run them. One EVALSHA for all of them is one command for ioredis to build and one reply to
 * parse: what a request costs the gateway on Redis was mostly that per-command work and the socket writes
 * (docs/performance.md, round 3).
 *
 * A reservation drops what left the windows, checks the three limits, and either records the admission or says why
 * not and when it would fit. Token entries are members `ID:AMOUNT` of a sorted set scored by time, with their sum
 * kept beside them. The keys expire with their newest entry (windows) or lease, so an idle client key leaves nothing
 * in Redis. A settlement gives the reservation's token entry the real usage (when it is still in the window) and frees
 * the concurrency lease.
 *
 * KEYS: requests, tokens, token sum, leases. ARGV: window ms, lease ms, then the calls, OP_ARGS values each:
 * - 'r', rpm, tpm, concurrency (-1: none), tokens to reserve, id: a reservation;
 * - 's', id, reserved, real, has tpm (1/0), has concurrency (1/0): a settlement.
 * Returns one array per reservation, in order: refused (bit 1 concurrency, 2 rpm, 4 tpm), wait ms, requests in the
 * window, ms until the requests' window is empty, tokens in the window, ms until the tokens' window is empty, requests
 * in flight.
 */
const LIMITS = new LuaScript(`${NOW}
local W, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local from = now - W
local function reserve(rpm, tpm, conc, amount, id)
  local refused, wait = 0, 0
  local nreq, sum, inflight = 0, 0, 0
  if rpm >= 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', from)
    nreq = redis.call('ZCARD', KEYS[1])
    if nreq >= rpm then
      refused = refused + 2
      local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
      if oldest[2] then wait = math.max(wait, tonumber(oldest[2]) + W - now) end
    end
  end
  if tpm >= 0 then
    local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', from)
    if #old > 0 then
      local gone = 0
      for i = 1, #old do gone = gone + tonumber(string.match(old[i], ':(%d+)$')) end
      redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', from)
      redis.call('DECRBY', KEYS[3], int(gone))
    end
    sum = tonumber(redis.call('GET', KEYS[3]) or '0')
    if sum + amount > tpm then
      refused = refused + 4
      local all = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
      local s, w = sum, W
      for i = 1, #all, 2 do
        s = s - tonumber(string.match(all[i], ':(%d+)$'))
        if s + amount <= tpm then w = tonumber(all[i + 1]) + W - now break end
      end
      wait = math.max(wait, w)
    end
  end
  if conc >= 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
    inflight = redis.call('ZCARD', KEYS[4])
    if inflight >= conc then
      refused = refused + 1
      wait = math.max(wait, 1000)
    end
  end
  local reqReset, tokReset = 0, 0
  if refused == 0 then
    if rpm >= 0 then
      redis.call('ZADD', KEYS[1], now, id)
      redis.call('PEXPIRE', KEYS[1], W)
      nreq = nreq + 1
      reqReset = W
    end
    if tpm >= 0 then
      redis.call('ZADD', KEYS[2], now, id .. ':' .. int(amount))
      redis.call('INCRBY', KEYS[3], int(amount))
      redis.call('PEXPIRE', KEYS[2], W)
      redis.call('PEXPIRE', KEYS[3], W)
      sum = sum + amount
      tokReset = W
    end
    if conc >= 0 then
      redis.call('ZADD', KEYS[4], int(now + lease), id)
      redis.call('PEXPIRE', KEYS[4], lease)
      inflight = inflight + 1
    end
  else
    if rpm >= 0 and nreq > 0 then
      local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
      reqReset = tonumber(newest[2]) + W - now
    end
    if tpm >= 0 then
      local newest = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
      if newest[2] then tokReset = tonumber(newest[2]) + W - now end
    end
  end
  return {refused, wait, nreq, reqReset, sum, tokReset, inflight}
end
local function settle(id, reserved, real, hasTpm, hasConc)
  if hasTpm == '1' then
    local old = id .. ':' .. reserved
    local s = redis.call('ZSCORE', KEYS[2], old)
    if s and tonumber(s) > from then
      redis.call('ZREM', KEYS[2], old)
      redis.call('ZADD', KEYS[2], s, id .. ':' .. real)
      redis.call('INCRBY', KEYS[3], int(tonumber(real) - tonumber(reserved)))
    end
  end
  if hasConc == '1' then redis.call('ZREM', KEYS[4], id) end
end
local out = {}
for i = 3, #ARGV, ${OP_ARGS} do
  if ARGV[i] == 'r' then
    out[#out + 1] = reserve(tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4]), ARGV[i + 5])
  else
    settle(ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5])
  end
end
return out`);

/** Renews leases. KEYS: the lease sets. ARGV: lease ms, then the ids, one per key. */
const RENEW = new LuaScript(`${NOW}
local lease = tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], int(now + lease), ARGV[i + 1])
  redis.call('PEXPIRE', KEYS[i], lease)
end
return #KEYS`);

const WHY: ReadonlyArray<[bit: number, text: (l: KeyLimits, reserve: number) => string]> = [
  [1, (l) => `${l.concurrency} concurrent requests`],
  [2, (l) => `${l.rpm} requests per minute`],
  [4, (l, r) => `${l.tpm} tokens per minute (this request reserves ${r})`],
];

export interface RedisLimiterOptions {
  /** How long local counters stand in for Redis while it is down; past it limited keys get 503 (`state.outage_grace_ms`). */
  outageGraceMs: number;
  /** The concurrency lease (LEASE_MS); shorter in tests that show a dead holder's slot coming back. */
  leaseMs?: number;
}

/**
 * Limits that hold across every gateway instance sharing one Redis: the semantics of `Limiter` (sliding 60 s windows
 * for rpm and tpm, requests in flight, OpenAI's headers, reserve then settle), kept in Redis and changed by Lua
 * scripts, so two instances never admit more than the limit together. Admission is one round trip; settlement is sent
 * off the request's path. The calls made during one turn of the event loop are sent together at its end: one script
 * per client key (LIMITS), all in one write, so a wave of requests costs the gateway a few commands, not two each.
 *
 * Redis down (docs/keys.md): admissions fall back to counters in this process (a `Limiter`, fresh for each outage)
 * for `outageGraceMs` from the outage's first failure; past it, requests of limited keys are refused with 503
 * `SLUICE_STATE_STORE_UNAVAILABLE` until Redis answers again. Nothing waits for a Redis that is down: a command
 * fails at once when the connection is lost, and after its timeout when Redis stops answering.
 */
export class RedisLimiter implements RateLimiter {
  readonly #redis: Redis;
  /**
   * The reservations and settlements made during this turn of the event loop, by client key, in the order they were
   * made: sent at its end (`setImmediate`), one LIMITS script per key, all in one write.
   */
  #queued = new Map<string, Queued>();
  readonly #health: StoreHealth;
  readonly #graceMs: number;
  readonly #leaseMs: number;
  /** This process's prefix for reservation ids: unique among instances. */
  readonly #instance = randomBytes(6).toString('base64url');
  #seq = 0;
  /** Leases held by requests in flight here: id → its lease set. */
  readonly #held = new Map<string, string>();
  readonly #renewer: NodeJS.Timeout;
  #fallback: Limiter | undefined;
  /** `performance.now()` before which admissions do not try Redis (after a failure). */
  #retryAt = 0;

  constructor(redis: Redis, health: StoreHealth, options: RedisLimiterOptions) {
    this.#redis = redis;
    this.#health = health;
    this.#graceMs = options.outageGraceMs;
    this.#leaseMs = options.leaseMs ?? LEASE_MS;
    this.#renewer = setInterval(() => void this.#renew(), this.#leaseMs / 3);
    this.#renewer.unref();
  }

  admit(name: string, limits: KeyLimits, estimate: number): Admitted | Promise<Admitted> {
    if (this.#redis.status === 'ready' && performance.now() >= this.#retryAt) return this.#remote(name, limits, estimate);
    return this.#local(name, limits, estimate);
  }

  close(): void {
    clearInterval(this.#renewer);
  }

  async #remote(name: string, limits: KeyLimits, estimate: number): Promise<Admitted> {
    const { rpm, tpm, concurrency } = limits;
    const reserve = tpm === null ? 0 : Math.min(Math.max(0, Math.ceil(estimate)), tpm);
    const id = `${this.#instance}:${(this.#seq++).toString(36)}`;
    const keys = rlKeys(name);
    let r: number[];
    try {
      r = await new Promise<number[]>((resolve, reject) => {
        const q = this.#queue(name, keys);
        q.args.push('r', rpm ?? -1, tpm ?? -1, concurrency ?? -1, reserve, id);
        q.reservations.push({ resolve, reject });
      });
    } catch (err) {
      this.#health.failed(err, 'a limit reservation');
      this.#retryAt = performance.now() + RETRY_AFTER_FAILURE_MS;
      return this.#local(name, limits, estimate);
    }
    if (!this.#health.up) this.#health.recovered();
    this.#fallback = undefined;
    const [refused = 0, wait = 0, nreq = 0, reqReset = 0, sum = 0, tokReset = 0] = r;
    const headers = rateHeaders(limits, nreq, reqReset, sum, tokReset);
    if (refused !== 0) {
      const why = WHY.filter(([bit]) => (refused & bit) !== 0).map(([, text]) => text(limits, reserve));
      throw rateLimitedError(name, why, headers, wait);
    }
    if (concurrency !== null) this.#held.set(id, keys[3]);
    let settled = false;
    const reservation: Reservation = {
      settle: (tokens: number): void => {
        if (settled) return;
        settled = true;
        this.#held.delete(id);
        if (tpm === null && concurrency === null) return;
        const real = Math.max(0, Math.ceil(tokens));
        const q = this.#queue(name, keys);
        q.args.push('s', id, reserve, real, tpm === null ? 0 : 1, concurrency === null ? 0 : 1);
        q.settlements++;
      },
    };
    return { headers, reservation };
  }

  /** The calls of key `name` queued in this turn, to add one to (a fresh group past MAX_OPS). */
  #queue(name: string, keys: readonly string[]): Queued {
    let q = this.#queued.get(name);
    if (q === undefined || q.args.length >= 2 + MAX_OPS * OP_ARGS) {
      if (q !== undefined) this.#send([q]);
      q = { keys, args: [WINDOW_MS, this.#leaseMs], reservations: [], settlements: 0 };
      if (this.#queued.size === 0) setImmediate(this.#flush);
      this.#queued.set(name, q);
    }
    return q;
  }

  readonly #flush = (): void => {
    const groups = [...this.#queued.values()];
    this.#queued = new Map();
    this.#send(groups);
  };

  /** One LIMITS script per group, all in one write; each reservation gets its figures, or the error. */
  #send(groups: readonly Queued[]): void {
    runPipelined(
      this.#redis,
      groups.map((q): ScriptCall => ({
        script: LIMITS,
        keys: q.keys,
        args: q.args,
        resolve: (v) => {
          const results = v as number[][];
          q.reservations.forEach((w, i) => {
            const r = results[i];
            if (Array.isArray(r)) w.resolve(r);
            else w.reject(new Error('the limits script answered no figures for a reservation'));
          });
        },
        reject: (err) => {
          for (const w of q.reservations) w.reject(err);
          // A lease not freed frees itself within LEASE_MS; the tokens stay at the reservation.
          if (q.settlements > 0) this.#health.failed(err, 'a limit settlement');
        },
      })),
    );
  }

  /** Local counters while Redis is down, for the grace period; then the 503. */
  #local(name: string, limits: KeyLimits, estimate: number): Admitted {
    const down = this.#health.downFor();
    if (down > this.#graceMs) {
      throw new SluiceError(
        'SLUICE_STATE_STORE_UNAVAILABLE',
        `The gateway cannot reach its state store (down for ${Math.round(down / 1000)} s), so the limits of key '${name}' cannot be enforced. Please try again later.`,
        { headers: { 'retry-after': '1', 'retry-after-ms': '1000' } },
      );
    }
    this.#fallback ??= new Limiter();
    return this.#fallback.admit(name, limits, estimate);
  }

  async #renew(): Promise<void> {
    if (this.#held.size === 0 || this.#redis.status !== 'ready') return;
    const ids = [...this.#held.keys()];
    const keys = ids.map((id) => this.#held.get(id) as string);
    try {
      await RENEW.run(this.#redis, keys, [this.#leaseMs, ...ids]);
    } catch (err) {
      this.#health.failed(err, 'renewing concurrency leases');
    }
  }
}

/** A client key's calls queued for one LIMITS script. */
interface Queued {
  keys: readonly string[];
  /** The script's ARGV: window and lease, then OP_ARGS values per call. */
  args: (string | number)[];
  /** Who waits for each reservation's figures, in order. */
  reservations: { resolve: (r: number[]) => void; reject: (err: unknown) => void }[];
  settlements: number;
}

/** OpenAI's headers from the script's figures, as `Limiter` writes them. */
function rateHeaders(l: KeyLimits, nreq: number, reqReset: number, sum: number, tokReset: number): Record<string, string> {
  const h: Record<string, string> = {};
  if (l.rpm !== null) {
    h['x-ratelimit-limit-requests'] = String(l.rpm);
    h['x-ratelimit-remaining-requests'] = String(Math.max(0, l.rpm - nreq));
    h['x-ratelimit-reset-requests'] = resetDuration(reqReset);
  }
  if (l.tpm !== null) {
    h['x-ratelimit-limit-tokens'] = String(l.tpm);
    h['x-ratelimit-remaining-tokens'] = String(Math.max(0, l.tpm - sum));
    h['x-ratelimit-reset-tokens'] = resetDuration(tokReset);
  }
  return h;
}
