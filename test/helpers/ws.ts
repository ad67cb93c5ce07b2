import { WebSocket, type ClientOptions } from 'ws';
import type { TestContext } from 'node:test';
import { seedOf, simToken } from '../../src/sim/text.ts';

/** The simulator's deterministic answer to a prompt (its JSON), to compare with what a client assembled. */
export function expectedText(promptJson: string, tokens: number): string {
  let s = '';
  const seed = seedOf(promptJson);
  for (let i = 0; i < tokens; i++) s += simToken(i, seed);
  return s;
}

export interface Received {
  at: number;
  msg: Record<string, unknown>;
}

/** A `ws` client that records every message (parsed) with its arrival time, and how the connection closed. */
export class TestSocket {
  readonly ws: WebSocket;
  readonly received: Received[] = [];
  readonly opened: Promise<void>;
  readonly closed: Promise<{ code: number; reason: string }>;
  #waiters: Array<() => void> = [];

  constructor(url: string, protocols: string[] = [], options: ClientOptions = {}) {
    this.ws = new WebSocket(url, protocols, options);
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
      this.ws.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString('utf8')));
        res.on('end', () => reject(Object.assign(new Error(`handshake refused: ${res.statusCode}`), { status: res.statusCode, body })));
      });
    });
    this.opened.catch(() => {});
    this.closed = new Promise((resolve) => this.ws.once('close', (code, reason) => resolve({ code, reason: reason.toString('utf8') })));
    this.ws.on('error', () => {});
    this.ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      this.received.push({ at: performance.now(), msg: JSON.parse(String(data)) as Record<string, unknown> });
      for (const w of this.#waiters.splice(0)) w();
    });
    this.ws.once('close', () => {
      for (const w of this.#waiters.splice(0)) w();
    });
  }

  send(msg: unknown): void {
    this.ws.send(typeof msg === 'string' ? msg : JSON.stringify(msg));
  }

  /** Waits until a received message matches, with a clear failure after `ms`. */
  async waitFor(pred: (m: Record<string, unknown>) => boolean, ms = 10_000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + ms;
    for (;;) {
      const hit = this.received.find((r) => pred(r.msg));
      if (hit) return hit.msg;
      if (this.ws.readyState === WebSocket.CLOSED) throw new Error(`socket closed before the message came; got ${JSON.stringify(this.received.map((r) => r.msg)).slice(0, 2000)}`);
      if (Date.now() > deadline) throw new Error(`no matching message within ${ms} ms; got ${JSON.stringify(this.received.map((r) => r.msg)).slice(0, 2000)}`);
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        setTimeout(resolve, Math.max(1, deadline - Date.now())).unref();
      });
    }
  }

  /** Messages of one /v1/ws generation. */
  of(id: string): Received[] {
    return this.received.filter((r) => r.msg['id'] === id);
  }
}

/** Opens a socket and closes it after the test. */
export async function openSocket(t: TestContext, url: string, protocols: string[] = [], options: ClientOptions = {}): Promise<TestSocket> {
  const s = new TestSocket(url, protocols, options);
  t.after(() => s.ws.terminate());
  await s.opened;
  return s;
}

/** The text a /v1/ws generation streamed (chat deltas or completion text). */
export function muxText(received: Received[]): string {
  let s = '';
  for (const r of received) {
    if (r.msg['type'] !== 'chunk') continue;
    const data = r.msg['data'] as { choices?: Array<{ delta?: { content?: string }; text?: string }> };
    for (const c of data.choices ?? []) s += c.delta?.content ?? c.text ?? '';
  }
  return s;
}

/** `http://host/v1` → `ws://host/v1/<path>` (and https → wss). */
export const wsUrl = (base: string, path: string): string => `${base.replace(/^http/, 'ws')}${path}`;
