import type { TestContext } from 'node:test';
import { createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

/** One HTTP/1.1 request as a raw upstream read it. */
export interface RawRequest {
  method: string;
  path: string;
  /** Header names in lower case. */
  headers: Record<string, string>;
  body: string;
  socket: Socket;
}

export interface RawUpstream {
  /** Base URL ending in /v1. */
  url: string;
  port: number;
  /** Every request read, in order (GET /v1/models included). */
  requests: RawRequest[];
  /** Connections closed so far, and a promise for the next close. */
  closes: number;
  nextClose(): Promise<void>;
  /** Connections open now. */
  open(): number;
}

/** A JSON answer on an open keep-alive connection. */
export function writeJson(socket: Socket, status: number, body: unknown, extraHeaders = ''): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  socket.write(`HTTP/1.1 ${status} X\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\n${extraHeaders}\r\n${text}`);
}

/**
 * A hostile upstream on a raw TCP server (port 0): it reads HTTP/1.1 requests itself, answers `GET /v1/models` with
 * one model `m` unless `handle` does, and hands every other request to `handle`, which writes whatever bytes the test
 * wants on `req.socket`. Closed with every connection after the test.
 */
export async function rawUpstream(t: TestContext, handle: (req: RawRequest) => void, opts: { models?: boolean } = {}): Promise<RawUpstream> {
  const sockets = new Set<Socket>();
  let closeWaiters: Array<() => void> = [];
  const state: RawUpstream = {
    url: '',
    port: 0,
    requests: [],
    closes: 0,
    nextClose: () => new Promise<void>((r) => closeWaiters.push(r)),
    open: () => sockets.size,
  };
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => {
      sockets.delete(socket);
      state.closes++;
      const waiters = closeWaiters;
      closeWaiters = [];
      for (const w of waiters) w();
    });
    let buf = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
        const [method = '', path = ''] = (lines[0] ?? '').split(' ');
        const headers: Record<string, string> = {};
        for (const l of lines.slice(1)) {
          const i = l.indexOf(':');
          if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
        }
        const length = Number(headers['content-length'] ?? 0);
        if (buf.length < end + 4 + length) return;
        const body = buf.subarray(end + 4, end + 4 + length).toString('utf8');
        buf = buf.subarray(end + 4 + length);
        const req: RawRequest = { method, path, headers, body, socket };
        state.requests.push(req);
        if (method === 'GET' && path === '/v1/models' && opts.models !== false) writeJson(socket, 200, { object: 'list', data: [{ id: 'm', object: 'model' }] });
        else handle(req);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.after(
    () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  );
  state.port = (server.address() as AddressInfo).port;
  state.url = `http://127.0.0.1:${state.port}/v1`;
  return state;
}
