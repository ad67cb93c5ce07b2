import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ControlSignal, LogStoreLimits, StreamLogStore, StreamMeta } from '../../src/resume/log-store.ts';
import { newStreamId } from '../../src/resume/stream-id.ts';

/**
 * The contract of a resumable-stream log store (src/resume/log-store.ts), as tests any backend runs: the in-memory one
 * (test/resume-store.test.ts) and a Redis one, which calls this with its own factory.
 */
export function logStoreContract(name: string, make: (limits: LogStoreLimits) => StreamLogStore | Promise<StreamLogStore>): void {
  const meta = (id = newStreamId()): StreamMeta => ({ id, owner: '', kind: 'chat', ids: false, createdAt: Date.now(), model: 'm', background: false });
  const limits: LogStoreLimits = { maxStreamBytes: 100, maxTotalBytes: 250, maxReaders: 2, ttlMs: 60_000 };

  test(`${name}: reads return what is logged after the cursor, wait for more, and end with the log`, async (t) => {
    const store = await make(limits);
    t.after(() => store.close());
    const m = meta();
    const w = store.create(m, () => {});
    assert.ok(w.append(['a', 'b']));
    const ac = new AbortController();
    assert.deepEqual(await store.read(m.id, 0, ac.signal), { events: ['a', 'b'], count: 2, ended: false });
    assert.deepEqual((await store.read(m.id, 1, ac.signal))?.events, ['b']);
    const waiting = store.read(m.id, 2, ac.signal);
    w.append(['c']);
    assert.deepEqual(await waiting, { events: ['c'], count: 3, ended: false });
    const atEnd = store.read(m.id, 3, ac.signal);
    w.end(['d']);
    assert.deepEqual(await atEnd, { events: ['d'], count: 4, ended: true });
    assert.deepEqual(await store.read(m.id, 4, ac.signal), { events: [], count: 4, ended: true });
    // A waiting read is released by its signal.
    const m2 = meta();
    store.create(m2, () => {});
    const aborted = store.read(m2.id, 0, ac.signal);
    ac.abort();
    assert.equal(await aborted, undefined);
  });

  test(`${name}: bounds: per stream, in total (finished logs dropped oldest first), at creation; a dropped log releases its waiting readers`, async (t) => {
    const store = await make(limits);
    t.after(() => store.close());
    const a = meta();
    const wa = store.create(a, () => {});
    assert.equal(wa.append(['x'.repeat(101)]), false, 'over the per-stream bound');
    assert.ok(wa.append(['x'.repeat(90)]));
    assert.equal(wa.append(['x'.repeat(20)]), false);
    wa.end(['y'.repeat(20)]); // the last events are kept past the bound
    assert.equal((await store.info(a.id))?.count, 2);
    const b = meta();
    const wb = store.create(b, () => {});
    assert.ok(wb.append(['x'.repeat(100)]));
    const reading = store.read(a.id, 2, new AbortController().signal);
    const c = meta();
    const wc = store.create(c, () => {}); // needs 100 free: drops the finished `a`
    assert.equal(await store.info(a.id), undefined);
    assert.deepEqual(await reading, { events: [], count: 2, ended: true }, 'a reader at the end of a finished log');
    assert.ok(wc.append(['x'.repeat(100)]));
    assert.throws(() => store.create(meta(), () => {}), /resume\.max_total_bytes/, 'live logs hold the room');
    // A reader waiting on a live log that is dropped (the gateway closing) is released with nothing.
    const waiting = store.read(b.id, 1, new AbortController().signal);
    await store.close();
    assert.equal(await waiting, undefined);
  });

  test(`${name}: readers are counted and signalled to the owner; cancel reaches a live stream only`, async (t) => {
    const store = await make(limits);
    t.after(() => store.close());
    const m = meta();
    const got: ControlSignal[] = [];
    const w = store.create(m, (s) => got.push(s));
    assert.equal(await store.attachReader(m.id), 'ok');
    assert.equal(await store.attachReader(m.id), 'ok');
    assert.equal(await store.attachReader(m.id), 'full');
    await store.detachReader(m.id);
    assert.ok(await store.signal(m.id, { type: 'cancel' }));
    assert.deepEqual(got, [{ type: 'readers', count: 1 }, { type: 'readers', count: 2 }, { type: 'readers', count: 1 }, { type: 'cancel' }]);
    w.end([]);
    assert.equal(await store.signal(m.id, { type: 'cancel' }), false);
    assert.equal(await store.attachReader('strm_unknown'), 'unknown');
  });
}
