import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ArrivalTrace, UpstreamArrivals, bufferingVerdict, headerText, WARN_INTERVAL_MS } from '../src/upstream/arrival-stats.ts';

/**
 * The upstream arrival sketch (issue 18) on scripted read times: what an engine streaming token by token, a fast
 * engine, nginx's proxy buffers and bursts split over reads look like, and that the sketch stays bounded.
 */

/** A trace fed `reads` reads: each at `at` ms with `events` events of `bytes` bytes. */
function trace(reads: Array<{ at: number; events: number; bytes?: number }>): ArrivalTrace {
  const t = new ArrivalTrace(0);
  for (const r of reads) {
    t.read(r.at, r.bytes ?? r.events * 150);
    t.events += r.events;
  }
  return t;
}

const range = (n: number, f: (i: number) => { at: number; events: number; bytes?: number }) => Array.from({ length: n }, (_, i) => f(i));

test('an engine streaming token by token (one event per read, 20 ms apart) is not buffered', () => {
  const s = trace(range(60, (i) => ({ at: 100 + i * 20, events: 1 }))).settle();
  assert.equal(s.eventsPerRead, 1);
  assert.equal(s.gapP50Ms, 20, 'the bucket bound (25), capped at the largest gap seen');
  assert.deepEqual(bufferingVerdict(s), { buffered: false, reason: null });
});

test('a fast engine (8 events per read, 2 ms apart) is not buffered: the gaps are short', () => {
  const s = trace(range(40, (i) => ({ at: i * 2, events: 8 }))).settle();
  assert.equal(s.eventsPerRead, 8);
  assert.equal(bufferingVerdict(s).buffered, false);
});

test("nginx's proxy buffers (27 events in one 4 KiB read every ~550 ms) are buffered, with the reason", () => {
  const s = trace(range(6, (i) => ({ at: 600 + i * 550, events: 27, bytes: 4096 }))).settle();
  const v = bufferingVerdict(s);
  assert.equal(v.buffered, true);
  assert.match(v.reason ?? '', /^27 events per read, reads 550 ms apart \(p50\), bursts of 4096 bytes/);
});

test('bursts split over reads (gap p50 near zero) with a 200 ms flush period are buffered', () => {
  const reads = range(80, (i) => ({ at: Math.floor(i / 10) * 200 + (i % 10) * 0.5, events: 1 }));
  const s = trace(reads).settle();
  assert.ok((s.gapP50Ms ?? 99) <= 3 && (s.gapP99Ms ?? 0) >= 100, JSON.stringify(s));
  assert.equal(s.bursts, 8);
  const v = bufferingVerdict(s);
  assert.equal(v.buffered, true);
  assert.match(v.reason ?? '', /quick bursts of 10\.0 events/);
});

test('too few events to judge: not buffered', () => {
  assert.equal(bufferingVerdict(trace([{ at: 0, events: 5 }, { at: 900, events: 2 }]).settle()).buffered, false);
});

test('per upstream: a bounded sketch whatever the number of reads; the warning at most once per interval', () => {
  const up = new UpstreamArrivals();
  const big = trace(range(100_000, (i) => ({ at: i * 20, events: 1 })));
  up.add(big, 0);
  const d = up.detail();
  assert.equal(d.reads, 100_000);
  assert.equal(d.streams, 1);
  assert.equal(d.buffering, false);
  const nginx = () => trace(range(6, (i) => ({ at: i * 550, events: 27, bytes: 4096 })));
  assert.equal(up.add(nginx(), 1_000).warn, true);
  assert.equal(up.add(nginx(), 2_000).warn, false, 'rate-limited');
  assert.equal(up.add(nginx(), 1_000 + WARN_INTERVAL_MS).warn, true);
  assert.equal(up.detail().buffered_streams, 3);
  assert.equal(up.detail().buffering, true);
  up.add(trace(range(30, (i) => ({ at: i * 20, events: 1 }))), 5_000 + WARN_INTERVAL_MS);
  assert.equal(up.buffering, false, 'the latest judged stream decides');
  assert.equal(up.detail().last_buffered?.reason.startsWith('27 events per read'), true);
});

test('headerText: printable ASCII, bounded, null when empty', () => {
  assert.equal(headerText('nginx/1.22.1'), 'nginx/1.22.1');
  assert.equal(headerText('a\r\nb\u0000c'), 'a??b?c');
  assert.equal(headerText('x'.repeat(200))?.length, 80);
  assert.equal(headerText(['a', 'b']), 'a, b');
  assert.equal(headerText('  '), null);
  assert.equal(headerText(undefined), null);
});
