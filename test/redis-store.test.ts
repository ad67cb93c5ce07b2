import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startRedis } from './helpers/redis.ts';
import { openStore, KeyExistsError, StateUrlError, type KeyLimits, type StoredKey, type UsageRecord } from '../src/state/store.ts';
import { RedisStore } from '../src/state/redis-store.ts';
import { parseRedisUrl } from '../src/state/redis-connection.ts';
import { RedisLimiter } from '../src/limits/redis-limiter.ts';
import type { SluiceError } from '../src/errors.ts';

// The Redis state store and limiter against a real redis-server (issue 14): keys, the version the gateways poll,
// the ledger stream, and the scripts that reserve and settle limits.

const NO_LIMITS: KeyLimits = { rpm: null, tpm: null, concurrency: null, models: null, expires_at: null };
const key = (name: string, extra: Partial<StoredKey> = {}): StoredKey => ({ ...NO_LIMITS, name, hash: name.padEnd(64, '0'), prefix: 'sk-sluice-abcdef', created_at: 1, revoked_at: null, ...extra });

const record = (ts: number, k: string | null, extra: Partial<UsageRecord> = {}): UsageRecord => ({
  ts,
  request_id: `r${ts}`,
  key: k,
  model: 'm',
  upstream: 'u',
  endpoint: '/v1/chat/completions',
  stream: true,
  prompt_tokens: 3,
  completion_tokens: 5,
  tokens_source: 'reported',
  outcome: 'completed',
  status: 200,
  error_code: null,
  ttft_ms: 1.5,
  duration_ms: 9,
  ...extra,
});

test('URLs: host, port, database and TLS are read; credentials never reach the printed URL; bad forms are refused', () => {
  const a = parseRedisUrl('redis://user:s3cret%21@cache.internal:6380/2');
  assert.deepEqual(a.options, { host: 'cache.internal', port: 6380, db: 2, username: 'user', password: 's3cret!' });
  assert.equal(a.display, 'redis://cache.internal:6380/2');
  const b = parseRedisUrl('rediss://:pw@[::1]');
  assert.deepEqual(b.options, { host: '::1', port: 6379, db: 0, password: 'pw', tls: { servername: '::1' } });
  assert.equal(b.display, 'rediss://[::1]');
  for (const bad of ['redis://', 'redis://h/x', 'redis://h:1/0?a=b', 'redis://h/123']) assert.throws(() => parseRedisUrl(bad), StateUrlError, bad);
});

test('keys: create, update, revoke and list, each change moving the version; a live name cannot be taken twice', async (t) => {
  const r = await startRedis(t);
  const store = await openStore(r.url);
  t.after(() => store.close());
  assert.equal(store.url, r.url);
  assert.equal(await store.keysVersion(), 0);
  await store.createKey(key('b', { rpm: 5, models: ['x', 'y'], expires_at: 4_102_444_800_000 }));
  await store.createKey(key('a'));
  const v1 = await store.keysVersion();
  assert.ok(v1 > 0);
  await assert.rejects(store.createKey(key('a')), KeyExistsError);
  assert.deepEqual(await store.listKeys(), [key('a'), key('b', { rpm: 5, models: ['x', 'y'], expires_at: 4_102_444_800_000 })]);
  assert.equal(await store.updateKey('b', { rpm: null, tpm: 100, models: null }), true);
  assert.equal(await store.updateKey('nobody', { rpm: 1 }), false);
  assert.deepEqual((await store.listKeys())[1], key('b', { tpm: 100, expires_at: 4_102_444_800_000 }));
  assert.equal(await store.revokeKey('a', 42), true);
  assert.equal(await store.revokeKey('a', 43), false, 'already revoked');
  assert.equal((await store.listKeys())[0]?.revoked_at, 42);
  // A revoked name can be used again: the new key replaces it.
  await store.createKey(key('a', { hash: 'f'.repeat(64) }));
  assert.equal((await store.listKeys())[0]?.hash, 'f'.repeat(64));
  assert.equal(await store.keysVersion(), v1 + 3);
});

test('the ledger: batches are appended as stream entries, read back by key, model and time, in pages', async (t) => {
  const r = await startRedis(t);
  const store = await openStore(r.url);
  t.after(() => store.close());
  const now = Date.now();
  const batch: UsageRecord[] = [];
  for (let i = 0; i < 2500; i++) batch.push(record(now - 10_000 + i, i % 2 === 0 ? 'even' : null, { model: i % 5 === 0 ? 'five' : 'm' }));
  await store.appendUsage(batch.slice(0, 1200));
  await store.appendUsage(batch.slice(1200));
  const read = async (f: Parameters<typeof store.readUsage>[0]): Promise<UsageRecord[]> => {
    const out: UsageRecord[] = [];
    for await (const x of store.readUsage(f)) out.push(x);
    return out;
  };
  assert.deepEqual(await read({}), batch);
  assert.equal((await read({ key: 'even' })).length, 1250);
  assert.equal((await read({ model: 'five' })).length, 500);
  assert.deepEqual(await read({ since: now - 10_000 + 100, until: now - 10_000 + 110 }), batch.slice(100, 110));
  assert.deepEqual(await read({ since: now + 60_000 }), []);
  assert.deepEqual([...(await store.lastUsed())], [['even', now - 10_000 + 2498]]);
  // Entries that are not Sluice's records (another writer, a hand-made XADD) are skipped, not fatal.
  const redis = (store as RedisStore).redis;
  await redis.xadd('sluice:ledger', '*', 'r', '{not json');
  await redis.xadd('sluice:ledger', '*', 'other', 'field');
  await redis.xadd('sluice:ledger', '*', 'r', '"a string"');
  assert.equal((await read({})).length, 2500);
  // An older batch written later (a gateway that was cut off) does not move a key's last use back.
  await store.appendUsage([record(now - 50_000, 'even')]);
  assert.equal((await store.lastUsed()).get('even'), now - 10_000 + 2498);
});

test('a Redis that is not there stops opening at once with the URL, never its password', async (t) => {
  const r = await startRedis(t);
  await r.kill();
  const started = performance.now();
  await assert.rejects(openStore(`redis://:hunter2pass@127.0.0.1:${r.port}`), (e: Error) => e instanceof StateUrlError && e.message.includes(`redis://127.0.0.1:${r.port}`) && !e.message.includes('hunter2'));
  assert.ok(performance.now() - started < 3_000);
});

test('a password-protected Redis: the password from the URL is used, and a wrong one is refused without being shown', async (t) => {
  const r = await startRedis(t, ['--requirepass', 'correct-horse']);
  const store = await openStore(`redis://:correct-horse@127.0.0.1:${r.port}/3`);
  t.after(() => store.close());
  assert.equal(store.url, `redis://127.0.0.1:${r.port}/3`);
  await store.createKey(key('p'));
  assert.equal((await store.listKeys()).length, 1);
  const wrong = await openStore(`redis://:battery-staple@127.0.0.1:${r.port}`).then(
    async (s) => {
      // ioredis reports a failed AUTH as an error of the first command.
      try {
        await s.listKeys();
        return 'no error';
      } catch (e) {
        return (e as Error).message;
      } finally {
        await s.close();
      }
    },
    (e: Error) => e.message,
  );
  assert.match(wrong, /WRONGPASS|NOAUTH|invalid|cannot connect/i);
  assert.doesNotMatch(wrong, /battery|correct-horse/);
});

test('the limiter: one script reserves across instances, settles with the real usage, and a dead holder\'s lease expires', async (t) => {
  const r = await startRedis(t);
  const store = (await openStore(r.url)) as RedisStore;
  const other = (await openStore(r.url)) as RedisStore;
  t.after(async () => {
    await store.close();
    await other.close();
  });
  const a = new RedisLimiter(store.redis, store.health, { outageGraceMs: 1000, leaseMs: 600 });
  const b = new RedisLimiter(other.redis, other.health, { outageGraceMs: 1000, leaseMs: 600 });
  t.after(() => {
    a.close();
    b.close();
  });
  const limits: KeyLimits = { ...NO_LIMITS, rpm: 3, tpm: 100, concurrency: 2 };
  const first = await a.admit('k', limits, 40);
  assert.deepEqual(first.headers, {
    'x-ratelimit-limit-requests': '3',
    'x-ratelimit-remaining-requests': '2',
    'x-ratelimit-reset-requests': '1m0s',
    'x-ratelimit-limit-tokens': '100',
    'x-ratelimit-remaining-tokens': '60',
    'x-ratelimit-reset-tokens': '1m0s',
  });
  const second = await b.admit('k', limits, 40);
  assert.equal(second.headers['x-ratelimit-remaining-tokens'], '20');
  // Concurrency 2 is full across both instances.
  await assert.rejects(Promise.resolve(a.admit('k', limits, 1)), (e: SluiceError) => e.status === 429 && /2 concurrent requests/.test(e.message) && e.headers['retry-after-ms'] === '1000');
  // The first request used 10 tokens, not 40: settling frees 30 of them and its slot.
  first.reservation.settle(10);
  await waitFor(async () => (await store.redis.zcard('sluice:rl:{k}:conc')) === 1);
  const third = await b.admit('k', limits, 40);
  assert.equal(third.headers['x-ratelimit-remaining-tokens'], String(100 - 10 - 40 - 40));
  assert.equal(third.headers['x-ratelimit-remaining-requests'], '0');
  // rpm is spent: refused with the time until the oldest admission leaves the window.
  await assert.rejects(Promise.resolve(a.admit('k', { ...limits, concurrency: null }, 1)), (e: SluiceError) => {
    const ms = Number(e.headers['retry-after-ms']);
    return /3 requests per minute/.test(e.message) && ms > 55_000 && ms <= 60_000 && e.headers['x-ratelimit-remaining-requests'] === '0';
  });
  // Limits as large as a whole number gets: the scripts keep them exact (no 1e+15 in Redis).
  const big = { ...NO_LIMITS, tpm: 2 ** 53 - 1 };
  const huge = await a.admit('big', big, 2 ** 52);
  assert.equal(huge.headers['x-ratelimit-remaining-tokens'], String(2 ** 53 - 1 - 2 ** 52));
  huge.reservation.settle(3);
  await waitFor(async () => (await store.redis.get('sluice:rl:{big}:tsum')) === '3');
  // Held past their lease (600 ms here): the holders renew them every 200 ms, so the slots stay taken.
  await new Promise((res) => setTimeout(res, 1_000));
  await assert.rejects(Promise.resolve(a.admit('k', { ...NO_LIMITS, concurrency: 2 }, 0)), /2 concurrent requests/);
  // Nobody settles the two others and nobody renews them (their gateway "died"): the slots come back.
  a.close();
  b.close();
  const started = performance.now();
  const again = await waitFor(async () => {
    try {
      return await a.admit('other-limits-same-key', { ...NO_LIMITS, concurrency: 1 }, 0);
    } catch {
      return undefined;
    }
  });
  assert.ok(again);
  await assert.rejects(Promise.resolve(a.admit('k', { ...NO_LIMITS, concurrency: 2 }, 0)));
  await waitFor(async () => {
    try {
      await a.admit('k', { ...NO_LIMITS, concurrency: 2 }, 0);
      return true;
    } catch {
      return false;
    }
  });
  assert.ok(performance.now() - started < 3_000);
});

test('the limiter: admissions of one turn of the event loop go to Redis in one write, in order, each with its own answer, also after SCRIPT FLUSH', async (t) => {
  const r = await startRedis(t);
  const store = (await openStore(r.url)) as RedisStore;
  t.after(() => store.close());
  const limiter = new RedisLimiter(store.redis, store.health, { outageGraceMs: 1000 });
  t.after(() => limiter.close());
  // A fresh Redis knows no script yet: the first calls load them.
  (await limiter.admit('warm-up', { ...NO_LIMITS, tpm: 10, concurrency: 1 }, 0)).reservation.settle(0);
  await waitFor(async () => (await store.redis.zcard('sluice:rl:{warm-up}:conc')) === 0);
  // Counts what ioredis writes to its socket: one write per turn, whatever the number of calls in it.
  const socket = (store.redis as unknown as { stream: { write: (...a: unknown[]) => boolean } }).stream;
  const write = socket.write.bind(socket);
  let writes = 0;
  socket.write = (...a: unknown[]) => {
    writes++;
    return write(...a);
  };
  const limits: KeyLimits = { ...NO_LIMITS, rpm: 3, tpm: 1000, concurrency: 10 };
  const burst = async (name: string): Promise<(string | undefined)[]> => {
    const calls = Array.from({ length: 5 }, () => Promise.resolve(limiter.admit(name, limits, 10)));
    const out = await Promise.allSettled(calls);
    return out.map((o) => (o.status === 'fulfilled' ? o.value.headers['x-ratelimit-remaining-requests'] : (o.reason as SluiceError).status === 429 ? '429' : String(o.reason)));
  };
  // Five at once, rpm 3: the first three in the order they were made, then two refusals. Two keys in the same turn:
  // one script each, in the same write.
  const [a, d] = await Promise.all([burst('a'), burst('d')]);
  assert.deepEqual(a, ['2', '1', '0', '429', '429']);
  assert.deepEqual(d, ['2', '1', '0', '429', '429']);
  assert.equal(writes, 1);
  assert.equal(await store.redis.zcard('sluice:rl:{a}:req'), 3);
  assert.equal(await store.redis.get('sluice:rl:{a}:tsum'), '30');
  // Settlements of one turn share a write too, and each lands.
  const held = await Promise.all([limiter.admit('c', limits, 10), limiter.admit('c', limits, 10)]);
  assert.equal(await store.redis.zcard('sluice:rl:{c}:conc'), 2);
  writes = 0;
  for (const h of held) h.reservation.settle(4);
  await new Promise((res) => setTimeout(res, 100));
  assert.equal(writes, 1);
  assert.equal(await store.redis.zcard('sluice:rl:{c}:conc'), 0);
  assert.equal(await store.redis.get('sluice:rl:{c}:tsum'), '8');
  // Within a key's script the calls keep their order: a settlement made before an admission frees the slot for it,
  // one made after it does not.
  const one: KeyLimits = { ...NO_LIMITS, concurrency: 1 };
  const x = await limiter.admit('e', one, 0);
  const refused = Promise.resolve(limiter.admit('e', one, 0));
  x.reservation.settle(0);
  await assert.rejects(refused, /1 concurrent requests/);
  const y = await limiter.admit('e', one, 0);
  y.reservation.settle(0);
  const z = await limiter.admit('e', one, 0);
  assert.equal(await store.redis.zcard('sluice:rl:{e}:conc'), 1);
  z.reservation.settle(0);
  await waitFor(async () => (await store.redis.zcard('sluice:rl:{e}:conc')) === 0);
  // Redis forgot the scripts (a restart, SCRIPT FLUSH): the batch (one script for the key) is answered NOSCRIPT and
  // sent again whole, once, with the same answers.
  await store.redis.script('FLUSH');
  writes = 0;
  assert.deepEqual(await burst('b'), ['2', '1', '0', '429', '429']);
  assert.equal(writes, 2);
  assert.equal(await store.redis.zcard('sluice:rl:{b}:req'), 3);
});

async function waitFor<T>(fn: () => Promise<T>, ms = 5_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('a state.url whose port is not a Redis (an HTTP server) fails opening within seconds, not never', async (t) => {
  const { createServer } = await import('node:http');
  const server = createServer((_req, res) => res.end('hello'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.after(
    () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  );
  const { port } = server.address() as import('node:net').AddressInfo;
  const started = performance.now();
  await assert.rejects(openStore(`redis://127.0.0.1:${port}`), StateUrlError);
  assert.ok(performance.now() - started < 6_000);
  // A silent peer (accepts and never answers) too.
  const { createServer: tcp } = await import('node:net');
  const sockets: import('node:net').Socket[] = [];
  const silent = tcp((socket) => void sockets.push(socket.resume()));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
  t.after(
    () =>
      new Promise<void>((r) => {
        silent.close(() => r());
        for (const x of sockets) x.destroy();
      }),
  );
  const quiet = performance.now();
  await assert.rejects(openStore(`redis://127.0.0.1:${(silent.address() as import('node:net').AddressInfo).port}`), StateUrlError);
  assert.ok(performance.now() - quiet < 6_000);
});
