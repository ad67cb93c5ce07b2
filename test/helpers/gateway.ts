import type { TestContext } from 'node:test';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startGateway, type Gateway, type GatewayOptions } from '../../src/gateway.ts';
import { startSimulator, type Simulator, type SimulatorOptions } from '../../src/sim/server.ts';
import type { RequestLogEntry } from '../../src/generation/request-log.ts';

/** Starts a simulator on port 0, closed after the test. */
export async function sim(t: TestContext, options: SimulatorOptions = {}): Promise<Simulator> {
  const s = await startSimulator({ port: 0, ...options });
  t.after(() => s.close());
  return s;
}

/** `SLUICE_TEST_UPSTREAM_CLIENT=sluice npx node --test test/x.test.ts` runs a test file's gateways with Sluice's own
 * upstream client for streamed requests (`upstream_client`, docs/config.md). */
const TEST_CLIENT = process.env['SLUICE_TEST_UPSTREAM_CLIENT'] === 'sluice' ? { upstream_client: 'sluice' as const } : {};

/** Starts a gateway on port 0 whose request log lines are collected in `logs`, closed after the test. */
export async function gateway(t: TestContext, options: GatewayOptions = {}): Promise<Gateway & { logs: RequestLogEntry[]; notices: string[] }> {
  const logs: RequestLogEntry[] = [];
  const notices: string[] = [];
  const g = await startGateway({ port: 0, drain: { timeout_ms: 0 }, discovery_interval_ms: 0, health: { interval_ms: 0 }, notice: (l) => notices.push(l), ...TEST_CLIENT, ...options, logger: (e) => logs.push(e) });
  t.after(() => g.close());
  return Object.assign(g, { logs, notices });
}

/** A real HTTP server on port 0 with a handler of the test's own (a scripted upstream). */
export async function httpServer(t: TestContext, handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ server: Server; url: string; port: number }> {
  const server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.after(
    () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  );
  const port = (server.address() as AddressInfo).port;
  return { server, url: `http://127.0.0.1:${port}/v1`, port };
}

/** POSTs JSON and returns the response. */
export function post(url: string, body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    ...(signal ? { signal } : {}),
  });
}

export const chatBody = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  model: 'sluice-sim',
  messages: [{ role: 'user', content: 'Hello' }],
  stream: true,
  ...extra,
});

/** Waits for an event on an emitter, with a clear failure after `ms`. */
export function once<T>(emitter: NodeJS.EventEmitter, event: string, ms = 10_000): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no '${event}' within ${ms} ms`)), ms);
    emitter.once(event, (v: T) => {
      clearTimeout(timer);
      resolve(v);
    });
  });
}

/** Splits an SSE body into its frames (without the blank line). */
export function frames(text: string): string[] {
  return text.split('\n\n').filter((f) => f.length > 0);
}

/** An upstream that writes 1 KB chunks as fast as its client takes them, respecting backpressure; `state` counts
 * what it wrote and says whether its connection closed before the end. */
export async function fastUpstream(t: TestContext, total: number) {
  const chunk = `data: {"id":"x","choices":[{"index":0,"delta":{"content":"${'z'.repeat(1000)}"},"finish_reason":null}]}\n\n`;
  const state = { written: 0, sent: 0, closedEarly: false, chunkBytes: chunk.length, closed: undefined as unknown as Promise<void> };
  let onClosed!: () => void;
  state.closed = new Promise<void>((r) => (onClosed = r));
  const up = await httpServer(t, (req, res) => {
    if (req.url === '/v1/models') return void res.end(JSON.stringify({ data: [{ id: 'm' }] }));
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.on('close', () => {
      state.closedEarly = state.sent < total || !res.writableFinished;
      onClosed();
    });
    const pump = (): void => {
      while (state.sent < total && !res.destroyed) {
        state.sent++;
        state.written += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
      res.end('data: {"id":"x","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n');
    };
    pump();
  });
  return { url: up.url, state };
}
