import { after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { RedisLogStore } from '../src/resume/redis-log-store.ts';
import type { LogStoreLimits, StreamMeta } from '../src/resume/log-store.ts';
import { newStreamId } from '../src/resume/stream-id.ts';
import { logStoreContract } from './helpers/log-store-contract.ts';
import { startRedis, type TestRedis } from './helpers/redis.ts';

// The Redis log store (src/resume/redis-log-store.ts) on a real redis-server: the store contract every backend keeps,
// then what only a shared store has: a second instance reads, follows, cancels and counts readers of the first's
// streams, learns when the first died, and nothing hangs or grows while Redis is down or stuck.

const cleanups: Array<() => unknown> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});
const suite = { after: (f: () => unknown) => cleanups.push(f) } as unknown as TestContext;
let shared: Promise<TestRedis> | undefined;
const redisUrl = async (): Promise<string> => (await (shared ??= startRedis(suite))).url;

logStoreContract('redis', async (limits) => RedisLogStore.open(await redisUrl(), limits));

const limits: LogStoreLimits = { maxStreamBytes: 10_000, maxTotalBytes: 100_000, maxReaders: 2, ttlMs: 60_000 };
const meta = (id = newStreamId()): StreamMeta => ({ id, owner: 'o', kind: 'chat', ids: false, createdAt: Date.now(), model: 'm', background: false });

async function open(t: TestContext, url: string, o: Parameters<typeof RedisLogStore.open>[2] = {}): Promise<RedisLogStore> {
  const s = await RedisLogStore.open(url, limits, o);
  t.after(() => s.close());
  return s;
}

test('redis: another instance reads, follows live, counts its readers to the owner and cancels it', async (t) => {
  const url = await redisUrl();
  const a = await open(t, url);
  const b = await open(t, url);
  const m = meta();
  const got: unknown[] = [];
  const w = a.create(m, (s) => got.push(s));
  assert.ok(w.append(['e1', 'e2']));
  const ac = new AbortController();
  // A stream B does not know yet reads as unknown (Redis serves each connection in its own order): let A's create land.
  await a.info(m.id);
  assert.deepEqual(await b.read(m.id, 1, ac.signal), { events: ['e2'], count: 2, ended: false });
  assert.deepEqual((await b.info(m.id))?.meta, m);
  const waiting = b.read(m.id, 2, ac.signal);
  w.append(['e3']);
  assert.deepEqual(await waiting, { events: ['e3'], count: 3, ended: false });
  assert.equal(await b.attachReader(m.id), 'ok');
  assert.equal(await a.attachReader(m.id), 'ok');
  assert.equal(await b.attachReader(m.id), 'full', 'max_readers counts readers of both instances');
  await b.detachReader(m.id);
  assert.ok(await b.signal(m.id, { type: 'cancel' }));
  for (let i = 0; i < 100 && got.length < 4; i++) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(got, [{ type: 'readers', count: 1 }, { type: 'readers', count: 2 }, { type: 'readers', count: 1 }, { type: 'cancel' }]);
  const atEnd = b.read(m.id, 3, ac.signal);
  w.end(['[DONE]']);
  assert.deepEqual(await atEnd, { events: ['[DONE]'], count: 4, ended: true });
  assert.deepEqual(await b.snapshot(m.id), { events: ['e1', 'e2', 'e3', '[DONE]'], count: 4, ended: true });
  assert.equal(await b.signal(m.id, { type: 'cancel' }), false, 'an ended stream');
  assert.deepEqual(await b.info(m.id), { meta: m, count: 4, ended: true });
});

test('redis: readers of a stream whose owner died get SLUICE_RESUME_OWNER_LOST; a dead instance\'s readers stop counting', async (t) => {
  const url = await redisUrl();
  const a = await RedisLogStore.open(url, limits, { leaseMs: 300 });
  const b = await open(t, url, { leaseMs: 300 });
  const m = meta();
  a.create(m, () => {}).append(['e1']);
  assert.equal(await a.attachReader(m.id), 'ok');
  assert.equal(await a.attachReader(m.id), 'ok');
  assert.equal(await b.attachReader(m.id), 'full');
  const waiting = b.read(m.id, 1, new AbortController().signal);
  await a.close(); // as a crash: its lease is gone, its readers and its stream with it
  const end = await waiting;
  assert.equal(end?.ended, true);
  assert.equal(end?.count, 2);
  assert.match(end?.events[0] ?? '', /sluice_resume_owner_lost/);
  assert.equal(await b.attachReader(m.id), 'ok', 'the dead instance\'s readers no longer count');
});

test('redis: readers on an instance that died stop counting at the owner too (its grace clock restarts)', async (t) => {
  const url = await redisUrl();
  const a = await open(t, url, { leaseMs: 300 });
  const b = await RedisLogStore.open(url, limits, { leaseMs: 300 });
  const m = meta();
  const got: unknown[] = [];
  a.create(m, (s) => got.push(s)).append(['e1']);
  assert.equal(await b.attachReader(m.id), 'ok');
  for (let i = 0; i < 100 && got.length < 1; i++) await new Promise((r) => setTimeout(r, 20));
  await b.close(); // its reader never detaches
  for (let i = 0; i < 100 && got.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(got, [{ type: 'readers', count: 1 }, { type: 'readers', count: 0 }]);
});

test('redis: Redis down: appends still succeed (the stream goes on), readers end with SLUICE_RESUME_LOG_LOST, nothing hangs', async (t) => {
  const r = await startRedis(t);
  const a = await open(t, r.url);
  const b = await open(t, r.url);
  const m = meta();
  const w = a.create(m, () => {});
  assert.ok(w.append(['e1']));
  await a.info(m.id); // through A's own connection: A's writes before it have reached Redis (B reads on another)
  assert.deepEqual((await b.read(m.id, 0, new AbortController().signal))?.events, ['e1']);
  const waiting = b.read(m.id, 1, new AbortController().signal);
  await r.kill();
  for (let i = 0; i < 20; i++) assert.ok(w.append([`x${i}`]), 'a failed write is no reason to stop the stream');
  w.end(['[DONE]']);
  const end = await waiting;
  assert.equal(end?.ended, true);
  assert.match(end?.events[0] ?? '', /sluice_resume_log_lost/);
  await assert.rejects(b.info(m.id), /SLUICE_RESUME_LOG_LOST|did not answer/);
  const again = await b.read(m.id, 1, new AbortController().signal);
  assert.match(again?.events[0] ?? '', /sluice_resume_log_lost/);
  // Back up (empty): the log is gone, and a stream created now works again.
  await r.restart();
  // Each instance's connections come back on their own (ioredis retries every 100 ms to 1 s).
  for (const s of [a, b]) {
    for (let i = 0; i < 100; i++) {
      try {
        if ((await s.info('strm_x')) === undefined) break;
      } catch {
        await new Promise((res) => setTimeout(res, 50));
      }
    }
  }
  assert.equal(await b.info(m.id), undefined);
  const m2 = meta();
  a.create(m2, () => {}).end(['[DONE]']);
  await a.info(m2.id); // through A's own connection: its create and end have reached Redis before B reads
  assert.deepEqual(await b.read(m2.id, 0, new AbortController().signal), { events: ['[DONE]'], count: 1, ended: true });
});

test('redis: a stuck Redis: writes waiting for it are bounded, past the bound an append is refused as a full log', async (t) => {
  const r = await startRedis(t);
  const a = await open(t, r.url, { pendingMaxBytes: 4096 });
  const m = meta();
  const w = a.create(m, () => {});
  r.pause();
  t.after(() => r.resume());
  let refused = false;
  for (let i = 0; i < 100 && !refused; i++) refused = !w.append(['x'.repeat(100)]);
  assert.ok(refused, 'refused once 4 KiB wait for Redis');
  assert.ok(a.pendingBytes <= 4096, `${a.pendingBytes} bytes waiting`);
  r.resume();
  // Answered or timed out (1 s): the queue drains.
  for (let i = 0; i < 100 && a.pendingBytes > 0; i++) await new Promise((res) => setTimeout(res, 50));
  assert.equal(a.pendingBytes, 0);
});

test('redis: a write that timed out (Redis stuck, then back) closes the log with SLUICE_RESUME_LOG_LOST at once, not at the stream\'s end', async (t) => {
  const r = await startRedis(t);
  const a = await open(t, r.url, { leaseMs: 300 });
  const b = await open(t, r.url, { leaseMs: 300 });
  const m = meta();
  const w = a.create(m, () => {});
  assert.ok(w.append(['e1']));
  await a.info(m.id); // through A's own connection: A's writes before it have reached Redis (B reads on another)
  assert.deepEqual((await b.read(m.id, 0, new AbortController().signal))?.events, ['e1']);
  r.pause();
  t.after(() => r.resume());
  assert.ok(w.append(['e2']), 'the stream goes on');
  await new Promise((res) => setTimeout(res, 1_300)); // past the command timeout: the write failed
  r.resume();
  assert.ok(w.append(['e3']));
  // The stream is still live at its owner, yet a reader is not left waiting for events that will never be logged.
  // (A write that timed out may still have been executed once Redis ran again: then it is read, in its place.)
  let next = 1;
  let end: Awaited<ReturnType<typeof b.read>>;
  for (let i = 0; i < 5; i++) {
    end = await b.read(m.id, next, new AbortController().signal);
    if (end === undefined || end.ended) break;
    assert.deepEqual(end.events, ['e2']);
    next += end.events.length;
  }
  assert.equal(end?.ended, true);
  assert.match(end?.events.at(-1) ?? '', /sluice_resume_log_lost/);
  assert.equal((await b.info(m.id))?.ended, true);
  w.end(['[DONE]']);
  const again = await b.read(m.id, 1, new AbortController().signal);
  assert.match(again?.events.at(-1) ?? '', /sluice_resume_log_lost/, 'its end does not reopen it');
});
