import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { Ticker } from '../src/relay/ticker.ts';
import { StreamRelay, type RelayResult } from '../src/relay/stream-relay.ts';
import type { StreamWriter } from '../src/relay/writer.ts';
import { fromReadable } from '../src/relay/upstream-source.ts';
import type { SluiceError } from '../src/errors.ts';
import { ChatStream } from '../src/openai/chat-stream.ts';

/** A writer that records what the relay asked for, in order. */
class RecordingWriter implements StreamWriter {
  log: string[] = [];
  opened = false;
  closed = false;
  open(): void {
    if (!this.opened) this.log.push('open');
    this.opened = true;
  }
  data(json: string): void {
    this.log.push(`data ${json}`);
  }
  named(event: string, json: string): void {
    this.log.push(`${event} ${json}`);
  }
  heartbeat(): void {
    this.log.push('heartbeat');
  }
  done(): void {
    this.log.push('done');
  }
  flush(): boolean {
    return true;
  }
  onDrain(): void {}
  end(): void {
    this.log.push('end');
    this.closed = true;
  }
  fail(err: SluiceError, inBand: () => void): void {
    this.log.push(`fail ${err.code} opened=${this.opened}`);
    if (this.opened) inBand();
    this.closed = true;
  }
  destroy(): void {
    this.log.push('destroy');
    this.closed = true;
  }
}

function setup(timeouts: Partial<{ firstByteMs: number; idleMs: number; totalMs: number }> = {}, ticker = new Ticker(1_000)) {
  const writer = new RecordingWriter();
  const results: RelayResult[] = [];
  const relay = new StreamRelay({
    protocol: new ChatStream({ usage: { final: false, continuous: false }, choices: 1 }),
    writer,
    ticker,
    heartbeatMs: 15_000,
    timeouts: { firstByteMs: 300_000, idleMs: 60_000, totalMs: 0, clientStallMs: 30_000, ...timeouts },
    maxEventBytes: 1 << 20,
    onFinish: (r) => results.push(r),
  });
  return { ticker, writer, relay, results };
}

/** Advances the mocked clock one second at a time, as the real ticker would see it. */
function advance(t: { mock: { timers: { tick(ms: number): void } } }, ms: number): void {
  for (let i = 0; i < ms; i += 1_000) t.mock.timers.tick(Math.min(1_000, ms - i));
}

/** Lets stream 'data' events (emitted on a later tick) reach the relay. */
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

const CHUNK = 'data: {"id":"a","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]}\n\n';
/** The last chunk of a complete answer: `[DONE]` without a finish reason is a cut stream (issue 12). */
const FINISH = 'data: {"id":"a","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n';

test('heartbeats every 15 s during a long first token, and none while tokens flow', async (t) => {
  t.mock.timers.enable({ apis: ['setInterval', 'Date'], now: 0 });
  const { writer, relay, ticker } = setup();
  const body = new PassThrough();
  relay.attach(fromReadable(body));
  advance(t, 14_000);
  assert.deepEqual(writer.log, ['open'], 'nothing before 15 s');
  advance(t, 1_000);
  assert.deepEqual(writer.log, ['open', 'heartbeat']);
  advance(t, 45_000); // a 60 s prefill
  assert.equal(writer.log.filter((l) => l === 'heartbeat').length, 4);
  body.write(CHUNK);
  await settle();
  advance(t, 10_000);
  body.write(CHUNK);
  await settle();
  advance(t, 10_000);
  assert.equal(writer.log.filter((l) => l === 'heartbeat').length, 4, 'no heartbeat while events keep coming');
  body.write(FINISH + 'data: [DONE]\n\n');
  await settle();
  assert.deepEqual(writer.log.slice(-2), ['done', 'end']);
  assert.equal(ticker.size, 0, 'the finished stream left the ticker');
});

test('before the upstream answers, the first heartbeat commits the headers', async (t) => {
  t.mock.timers.enable({ apis: ['setInterval', 'Date'], now: 0 });
  const { writer } = setup();
  advance(t, 15_000);
  assert.deepEqual(writer.log, ['open', 'heartbeat']);
});

test('first-byte timeout with no upstream answer yet is an error before headers', async (t) => {
  t.mock.timers.enable({ apis: ['setInterval', 'Date'], now: 0 });
  const { writer, relay, results } = setup({ firstByteMs: 10_000 });
  advance(t, 10_000);
  assert.deepEqual(writer.log, ['fail SLUICE_UPSTREAM_FIRST_BYTE_TIMEOUT opened=false']);
  assert.equal(results[0]?.outcome, 'timeout');
  assert.ok(relay.signal.aborted, 'the pending upstream request is aborted');
});

test('idle timeout fires after idle_ms of upstream silence mid-stream, with heartbeats meanwhile', async (t) => {
  t.mock.timers.enable({ apis: ['setInterval', 'Date'], now: 0 });
  const { writer, relay, results } = setup({ idleMs: 60_000 });
  const body = new PassThrough();
  relay.attach(fromReadable(body));
  body.write(CHUNK);
  await settle();
  advance(t, 59_000);
  assert.equal(results.length, 0);
  advance(t, 1_000);
  assert.equal(results[0]?.outcome, 'timeout');
  assert.equal(results[0]?.error?.code, 'SLUICE_UPSTREAM_IDLE_TIMEOUT');
  const last = writer.log.at(-1) ?? '';
  assert.match(last, /^data \{"error":\{"message":"upstream sent nothing for 60000 ms","type":"timeout_error"/);
  assert.equal(writer.log.filter((l) => l === 'heartbeat').length, 3);
  assert.ok(body.destroyed, 'the upstream body is torn down');
});

test('total timeout', async (t) => {
  t.mock.timers.enable({ apis: ['setInterval', 'Date'], now: 0 });
  const { relay, results } = setup({ totalMs: 100_000 });
  const body = new PassThrough();
  relay.attach(fromReadable(body));
  for (let i = 0; i < 10; i++) {
    body.write(CHUNK);
    await settle();
    advance(t, 10_000);
  }
  assert.equal(results[0]?.error?.code, 'SLUICE_TOTAL_TIMEOUT');
});

test('the first stream after a quiet period starts its clocks now, not at the last tick before it', async (t) => {
  t.mock.timers.enable({ apis: ['setInterval', 'Date'], now: 0 });
  const ticker = new Ticker(1_000);
  const first = setup({}, ticker);
  advance(t, 3_000);
  first.relay.clientClosed(); // the last stream leaves: the ticker's timer stops
  assert.equal(ticker.size, 0);
  t.mock.timers.tick(5 * 60_000); // five quiet minutes, no tick
  const { relay, results } = setup({ firstByteMs: 2_500, totalMs: 10_000 }, ticker);
  relay.attach(fromReadable(new PassThrough()));
  advance(t, 2_000);
  assert.equal(results.length, 0, 'neither the first-byte nor the total timeout counts the quiet period');
  advance(t, 1_000);
  assert.equal(results[0]?.error?.code, 'SLUICE_UPSTREAM_FIRST_BYTE_TIMEOUT');
});

test('clients that leave together: every upstream is aborted before any of their bookkeeping runs', async () => {
  const ticker = new Ticker(1_000);
  const streams = [setup({}, ticker), setup({}, ticker), setup({}, ticker)];
  const bodies = streams.map((s) => {
    const body = new PassThrough();
    s.relay.attach(fromReadable(body));
    return body;
  });
  for (const b of bodies) b.write(CHUNK);
  await settle();
  for (const s of streams) s.relay.clientClosed();
  // In the same turn of the loop: all aborted, none destroyed at the client side or reported yet.
  for (const [i, s] of streams.entries()) {
    assert.ok(s.relay.signal.aborted, `stream ${i}'s upstream is aborted at once`);
    assert.ok(bodies[i]!.destroyed, `stream ${i}'s upstream body is destroyed at once`);
    assert.equal(s.results.length, 0, `stream ${i}'s end is not reported yet`);
    assert.ok(!s.writer.log.includes('destroy'));
  }
  await settle();
  for (const s of streams) {
    assert.deepEqual(s.results.map((r) => r.outcome), ['client_aborted']);
    assert.equal(s.writer.log.at(-1), 'destroy');
  }
  // A second close of a stream already ended reports nothing more.
  streams[0]!.relay.clientClosed();
  await settle();
  assert.equal(streams[0]!.results.length, 1);
  assert.equal(ticker.size, 0);
});
