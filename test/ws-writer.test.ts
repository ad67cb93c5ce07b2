import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { WsChannel } from '../src/ws/channel.ts';
import { WsStreamWriter, type WsFraming } from '../src/ws/ws-writer.ts';
import { Ticker } from '../src/relay/ticker.ts';
import { SluiceError } from '../src/errors.ts';
import { errorJson } from '../src/openai/error-wire.ts';
import { watchDrain } from './helpers/drain.ts';

/**
 * Unit tests of the WebSocket writer (src/ws/ws-writer.ts) on a real WsChannel over a real `ws` server and client:
 * what the client receives, and when the connection stays open or is dropped.
 */

/** A framing of the test's own, every message tagged so the client can tell them apart. */
const framing: WsFraming = {
  data: (json) => `{"t":"chunk","data":${json}}`,
  named: (event, json) => `{"t":"chunk","event":${JSON.stringify(event)},"data":${json}}`,
  done: () => '{"t":"done"}',
  error: (err, opened) => `{"t":"error","code":${JSON.stringify(err.code)},"opened":${opened}}`,
  cancelled: () => '{"t":"cancelled"}',
};

/** A framing with no terminal messages of its own: the relay's in-band error event is used (as /v1/responses does). */
const bareFraming: WsFraming = { ...framing, done: () => undefined, error: () => undefined, cancelled: () => undefined };

const shuttingDown = (): SluiceError => new SluiceError('SLUICE_SHUTTING_DOWN', 'the gateway is shutting down');

/** A client that records every text message and how the connection closed. */
class Client {
  readonly ws: WebSocket;
  readonly messages: string[] = [];
  close: { code: number } | undefined;
  #waiters = new Set<() => void>();

  constructor(url: string) {
    this.ws = new WebSocket(url);
    this.ws.on('error', () => {});
    this.ws.on('message', (data) => {
      this.messages.push(String(data));
      this.#wake();
    });
    this.ws.on('close', (code) => {
      this.close = { code };
      this.#wake();
    });
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }

  /** Waits until `pred` holds; fails with what was received after `ms`. */
  until(pred: () => boolean, what: string, ms = 10_000): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!pred()) return;
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.messages).slice(0, 500)}, close ${JSON.stringify(this.close)}`));
      }, ms);
      this.#waiters.add(check);
    });
  }

  /** Waits for `n` messages in all. */
  count(n: number): Promise<void> {
    return this.until(() => this.messages.length >= n, `${n} messages`);
  }
}

/** A connected pair: the server side wrapped in a WsChannel, and a writer on it whose `onEnd` calls are counted. */
async function setup(t: TestContext, f: WsFraming = framing, maxBufferedBytes = 1024 * 1024) {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  const ticker = new Ticker(1_000);
  const serverSide = new Promise<WebSocket>((r) => wss.once('connection', (ws) => r(ws)));
  const client = new Client(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`);
  t.after(
    () =>
      new Promise<void>((r) => {
        ticker.stop();
        client.ws.terminate();
        for (const ws of wss.clients) ws.terminate();
        wss.close(() => r());
      }),
  );
  await new Promise<void>((r) => client.ws.once('open', () => r()));
  const channel = new WsChannel(await serverSide, { maxBufferedBytes, pingIntervalMs: 0, ticker });
  const ends = { n: 0 };
  const writer = new WsStreamWriter(channel, f, () => ends.n++);
  return { client, channel, writer, ends };
}

test('events become messages of the framing, sent by flush() in order; end() runs onEnd once and keeps the socket', async (t) => {
  const { client, channel, writer, ends } = await setup(t);
  writer.open();
  assert.equal(writer.opened, true);
  writer.data('{"a":1}');
  writer.named('response.created', '{"b":2}');
  writer.heartbeat(); // nothing: the connection's pings keep it alive
  // Sent straight on the channel: arrives before the queued events, which wait for the flush.
  channel.send('{"t":"marker"}');
  assert.equal(writer.flush(), true);
  writer.done();
  writer.end();
  await client.count(4);
  assert.deepEqual(client.messages, ['{"t":"marker"}', '{"t":"chunk","data":{"a":1}}', '{"t":"chunk","event":"response.created","data":{"b":2}}', '{"t":"done"}']);
  assert.equal(ends.n, 1);
  assert.equal(writer.closed, true);
  writer.end();
  writer.fail(shuttingDown(), () => assert.fail('no in-band event after the end'));
  writer.destroy();
  assert.equal(ends.n, 1, 'onEnd runs exactly once');
  // The connection carries other streams: it stays open after one ends.
  channel.send('{"t":"after"}');
  await client.count(5);
  assert.equal(client.messages.length, 5, 'nothing more from the ended writer');
  assert.equal(client.close, undefined);
});

test("a framing without a done message sends nothing for done()", async (t) => {
  const { client, channel, writer } = await setup(t, bareFraming);
  writer.open();
  writer.data('{"a":1}');
  writer.done();
  writer.end();
  channel.send('{"t":"marker"}');
  await client.count(2);
  assert.deepEqual(client.messages, ['{"t":"chunk","data":{"a":1}}', '{"t":"marker"}']);
});

test("fail() before open() sends the framing's error message, and no in-band event", async (t) => {
  const { client, writer, ends } = await setup(t);
  let inBand = 0;
  writer.fail(shuttingDown(), () => inBand++);
  await client.count(1);
  assert.deepEqual(client.messages, ['{"t":"error","code":"SLUICE_SHUTTING_DOWN","opened":false}']);
  assert.equal(inBand, 0);
  assert.equal(ends.n, 1);
  assert.equal(writer.closed, true);
  assert.equal(client.close, undefined, 'an error ends the stream, not the connection');
});

test("fail() after open() sends the framing's error message after what was queued", async (t) => {
  const { client, writer, ends } = await setup(t);
  writer.open();
  writer.data('{"a":1}');
  let inBand = 0;
  writer.fail(shuttingDown(), () => inBand++);
  await client.count(2);
  assert.deepEqual(client.messages, ['{"t":"chunk","data":{"a":1}}', '{"t":"error","code":"SLUICE_SHUTTING_DOWN","opened":true}']);
  assert.equal(inBand, 0);
  assert.equal(ends.n, 1);
});

test('fail() after open() with a framing that has no error message writes the in-band event', async (t) => {
  const { client, writer, ends } = await setup(t, bareFraming);
  writer.open();
  writer.data('{"a":1}');
  const err = shuttingDown();
  let inBand = 0;
  writer.fail(err, () => {
    inBand++;
    writer.data(errorJson(err));
  });
  await client.count(2);
  assert.equal(inBand, 1);
  assert.deepEqual(client.messages, ['{"t":"chunk","data":{"a":1}}', `{"t":"chunk","data":${errorJson(err)}}`]);
  assert.equal(ends.n, 1);
});

test('cancel() then destroy(): the queued events are dropped, the cancelled message is sent, and the socket stays open', async (t) => {
  const { client, channel, writer, ends } = await setup(t);
  writer.open();
  writer.data('{"a":1}');
  writer.flush();
  writer.data('{"dropped":1}');
  writer.cancel();
  writer.destroy();
  assert.equal(ends.n, 1);
  assert.equal(writer.closed, true);
  channel.send('{"t":"after"}');
  await client.count(3);
  assert.deepEqual(client.messages, ['{"t":"chunk","data":{"a":1}}', '{"t":"cancelled"}', '{"t":"after"}']);
  assert.equal(client.close, undefined);
  assert.equal(channel.open, true);
  writer.destroy();
  assert.equal(ends.n, 1);
});

test('destroy() without cancel() drops the connection (no close frame), and runs onEnd once', async (t) => {
  const { client, channel, writer, ends } = await setup(t);
  writer.open();
  writer.data('{"a":1}');
  writer.flush();
  await client.count(1);
  writer.data('{"dropped":1}');
  writer.destroy();
  assert.equal(ends.n, 1);
  await client.until(() => client.close !== undefined, 'the close');
  assert.equal(client.close?.code, 1006, 'terminated: no closing handshake');
  assert.deepEqual(client.messages, ['{"t":"chunk","data":{"a":1}}']);
  assert.equal(channel.open, false);
  assert.equal(writer.closed, true);
  writer.destroy();
  writer.end();
  assert.equal(ends.n, 1);
});

test('a writer whose connection closed reports closed', async (t) => {
  const { client, channel, writer } = await setup(t);
  assert.equal(writer.closed, false);
  const gone = new Promise<void>((r) => channel.onClose(r));
  client.ws.close(1000, 'bye');
  await gone;
  assert.equal(writer.closed, true);
});

test('flush() reports false while more than maxBufferedBytes wait on the socket, and onDrain fires once it drains', async (t) => {
  const max = 64 * 1024;
  const { client, writer } = await setup(t, framing, max);
  writer.open();
  client.ws.pause();
  const big = `{"z":"${'z'.repeat(32 * 1024)}"}`;
  let sent = 0;
  let accepted = true;
  // The kernel's buffers take a few MB before anything waits in the process.
  while (accepted && sent < 2_000) {
    writer.data(big);
    accepted = writer.flush();
    sent++;
  }
  assert.equal(accepted, false, `flush() reported the full buffer (after ${sent} messages)`);
  const drain = watchDrain(writer);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(drain.count(), 0, 'no drain while the client reads nothing');
  client.ws.resume();
  await drain.drained;
  assert.equal(drain.count(), 1);
  assert.equal(writer.flush(), true, 'writable again');
  writer.end();
  await client.count(sent);
  assert.equal(client.messages.length, sent);
  assert.ok(client.messages.every((m) => m === `{"t":"chunk","data":${big}}`));
});
