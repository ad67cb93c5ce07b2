import { WebSocket } from 'ws';
import type { Ticker, Tickable } from '../relay/ticker.ts';

export interface ChannelOptions {
  /** Bytes queued on the socket before `writable` turns false (streams then pause their upstreams). */
  maxBufferedBytes: number;
  /** A ping frame this often; a peer that has not answered the previous one by then is dropped. 0 = off. */
  pingIntervalMs: number;
  ticker: Ticker;
}

/**
 * One WebSocket connection as the sessions see it: text messages out with backpressure accounting, ping/pong
 * liveness, and closing with a code. The `ws` library queues whatever is sent without limit, so the bound is kept
 * here from its `bufferedAmount` (bytes not yet handed to the kernel): past `maxBufferedBytes` the channel reports
 * itself full, relays stop reading their upstreams, and `onDrain` fires once the socket has written half of it.
 */
export class WsChannel implements Tickable {
  readonly #ws: WebSocket;
  readonly #o: ChannelOptions;
  #drainWaiters: Array<() => void> = [];
  #lastPingAt: number;
  #awaitingPong = false;
  #closeHandlers: Array<() => void> = [];
  #closed = false;
  readonly #hardLimit: number;

  constructor(ws: WebSocket, options: ChannelOptions) {
    this.#ws = ws;
    this.#o = options;
    // Paused streams may each add one upstream read past `maxBufferedBytes`; nothing legitimate gets near this.
    this.#hardLimit = Math.max(4 * options.maxBufferedBytes, 8 * 1024 * 1024);
    this.#lastPingAt = options.ticker.now;
    ws.on('pong', () => {
      this.#awaitingPong = false;
    });
    ws.on('close', () => this.#onClose());
    // A socket error is followed by 'close'; without a listener it would be thrown.
    ws.on('error', () => {});
    if (options.pingIntervalMs > 0) options.ticker.add(this);
  }

  /** True until the connection starts closing. */
  get open(): boolean {
    return this.#ws.readyState === WebSocket.OPEN;
  }

  /** False once more than `maxBufferedBytes` wait in the socket: the peer reads slowly. */
  get writable(): boolean {
    return this.#ws.bufferedAmount < this.#o.maxBufferedBytes;
  }

  /**
   * Sends one text message (dropped once the connection is closing). Streams stop at `maxBufferedBytes`; replies to
   * the client's own messages (pongs, errors) do not wait, so a peer that keeps sending while reading nothing would
   * grow the queue: past the hard bound it is dropped.
   */
  send(text: string): void {
    if (this.#ws.readyState !== WebSocket.OPEN) return;
    if (this.#ws.bufferedAmount > this.#hardLimit) {
      this.terminate();
      return;
    }
    this.#ws.send(text, this.#afterSend);
  }

  /** Calls `cb` once the socket has drained to half of `maxBufferedBytes`. */
  onDrain(cb: () => void): void {
    this.#drainWaiters.push(cb);
  }

  readonly #afterSend = (): void => {
    if (this.#drainWaiters.length === 0 || this.#ws.bufferedAmount > this.#o.maxBufferedBytes / 2) return;
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const cb of waiters) cb();
  };

  /** Runs `cb` once when the connection has closed (for any reason). */
  onClose(cb: () => void): void {
    if (this.#closed) cb();
    else this.#closeHandlers.push(cb);
  }

  /** Starts the closing handshake. `reason` must fit in 123 bytes (RFC 6455 §5.5). */
  close(code: number, reason: string): void {
    if (this.#ws.readyState === WebSocket.OPEN || this.#ws.readyState === WebSocket.CONNECTING) this.#ws.close(code, reason);
  }

  /** Sends a last message, then closes: every protocol error is explained before the close code. */
  fail(message: string, code: number, reason: string): void {
    this.send(message);
    this.close(code, reason);
  }

  /** Drops the TCP connection without a closing handshake (dead or stalled peer: a close frame would never arrive). */
  terminate(): void {
    this.#ws.terminate();
  }

  tick(now: number): void {
    if (now - this.#lastPingAt < this.#o.pingIntervalMs) return;
    if (this.#awaitingPong) {
      this.terminate(); // no pong for a whole interval: the peer or the path to it is gone
      return;
    }
    this.#lastPingAt = now;
    this.#awaitingPong = true;
    if (this.open) this.#ws.ping();
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#o.ticker.delete(this);
    this.#drainWaiters = [];
    const handlers = this.#closeHandlers;
    this.#closeHandlers = [];
    for (const cb of handlers) cb();
  }
}
