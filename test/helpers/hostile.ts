import type { TestContext } from 'node:test';
import { connect, type Socket } from 'node:net';
import { httpServer } from './gateway.ts';

/** The model the counting upstream serves. */
export const MODEL = 'm';

export interface CountingUpstream {
  url: string;
  /** Requests whose connection to the gateway is still open (generating, from the engine's point of view). */
  readonly open: number;
  /** Generation requests received so far. */
  readonly started: number;
}

/**
 * A scripted engine that generates slowly and counts its open requests: a streamed request gets SSE headers after
 * `ttftMs` (prefill, 0 by default) and then a chunk every `itlMs` for `tokens` chunks; a non-streamed one answers after
 * `ttftMs + itlMs * tokens`. A request counts as open until its connection closes, which is what an engine sees when
 * the gateway aborts it.
 */
export async function countingUpstream(t: TestContext, options: { itlMs?: number; tokens?: number; ttftMs?: number } = {}): Promise<CountingUpstream> {
  const itlMs = options.itlMs ?? 100;
  const tokens = options.tokens ?? 600;
  const ttftMs = options.ttftMs ?? 0;
  const state = { open: 0, started: 0 };
  const timers = new Set<NodeJS.Timeout>();
  t.after(() => {
    for (const timer of timers) clearInterval(timer);
  });
  const up = await httpServer(t, (req, res) => {
    if (req.url === '/v1/models') return void res.end(JSON.stringify({ object: 'list', data: [{ id: MODEL, object: 'model' }] }));
    const parts: Buffer[] = [];
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(parts).toString('utf8')) as { stream?: boolean };
      state.started++;
      state.open++;
      let sent = 0;
      let timer: NodeJS.Timeout;
      res.once('close', () => {
        state.open--;
        clearInterval(timer);
        timers.delete(timer);
      });
      if (body.stream === true) {
        // Prefill: the engine answers nothing for `ttftMs`, then streams.
        timer = setTimeout(() => {
          timers.delete(timer);
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          timer = setInterval(() => {
            if (++sent < tokens) return void res.write(`data: {"id":"c","object":"chat.completion.chunk","model":"${MODEL}","choices":[{"index":0,"delta":{"content":"t${sent} "},"finish_reason":null}]}\n\n`);
            res.end(`data: {"id":"c","object":"chat.completion.chunk","model":"${MODEL}","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":${tokens},"total_tokens":${tokens + 1}}}\n\ndata: [DONE]\n\n`);
          }, itlMs);
          timers.add(timer);
        }, ttftMs);
      } else {
        timer = setTimeout(() => {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ id: 'c', object: 'chat.completion', model: MODEL, choices: [{ index: 0, message: { role: 'assistant', content: 'done' }, finish_reason: 'stop' }] }));
        }, ttftMs + itlMs * tokens);
      }
      timers.add(timer);
    });
  });
  return {
    url: up.url,
    get open() {
      return state.open;
    },
    get started() {
      return state.started;
    },
  };
}

/** Polls `cond` every 10 ms until it holds or `ms` pass; returns whether it held. */
export async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const deadline = performance.now() + ms;
  for (;;) {
    if (cond()) return true;
    if (performance.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A raw TCP client: writes what the test says and keeps every byte it receives. */
export class RawClient {
  readonly socket: Socket;
  readonly closed: Promise<void>;
  #received: Buffer[] = [];

  constructor(port: number, host = '127.0.0.1') {
    this.socket = connect(port, host);
    this.socket.on('error', () => {});
    this.socket.on('data', (d: Buffer) => this.#received.push(d));
    this.closed = new Promise((resolve) => this.socket.once('close', () => resolve()));
  }

  get text(): string {
    return Buffer.concat(this.#received).toString('latin1');
  }

  /** Waits until the received text matches, or the socket closes, or `ms` pass. */
  async until(pred: (text: string) => boolean, ms = 5_000): Promise<string> {
    await waitFor(() => pred(this.text) || this.socket.destroyed, ms);
    return this.text;
  }
}

/** One HTTP/1.1 request's head, as a raw client writes it. */
export function head(method: string, path: string, headers: Record<string, string | number>): string {
  return `${method} ${path} HTTP/1.1\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;
}

/** The JSON body of the first HTTP/1.1 response in `text` (after its blank line), parsed. */
export function firstJsonBody(text: string): { error?: { code: string | null; message: string } } {
  const start = text.indexOf('\r\n\r\n');
  const m = /content-length: (\d+)/i.exec(text.slice(0, start));
  const body = text.slice(start + 4, m ? start + 4 + Number(m[1]) : undefined);
  return JSON.parse(body) as { error?: { code: string | null; message: string } };
}
