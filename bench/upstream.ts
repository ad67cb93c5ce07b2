import { subscribe } from 'node:diagnostics_channel';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { startSimulator, type SimRequestInfo } from '../src/sim/server.ts';

/**
 * The benchmark's upstream, run as its own process: the simulator, plus a recorder of when each stream's connection
 * closed before its end (for abort propagation). A stream is identified by the OpenAI `user` field of its request
 * body, which every proxy passes through unchanged.
 *
 * Why not the simulator's own 'aborted' event: it does not say which request was aborted. The recorder maps the
 * simulator's 'request' event (which has the body) to its response through the headers object, which Node shares
 * between `req.headers` and the 'http.server.request.start' diagnostics message.
 *
 * IPC: sends {type:'ready', url, port}; answers {type:'closes', seq} with {type:'closes', seq, closes: [id, epochMs][]}
 * (and forgets them).
 */

const now = (): number => performance.timeOrigin + performance.now();

const responses = new WeakMap<object, ServerResponse>();
subscribe('http.server.request.start', (message) => {
  const { request, response } = message as { request: IncomingMessage; response: ServerResponse };
  responses.set(request.headers, response);
});

let closes: [string, number][] = [];

const sim = await startSimulator({ host: '127.0.0.1', port: Number(process.env['BENCH_PORT'] ?? 0) });
sim.events.on('request', (info: SimRequestInfo) => {
  const body = info.body as { user?: unknown };
  const res = responses.get(info.headers);
  if (res === undefined || typeof body.user !== 'string') return;
  const id = body.user;
  res.once('close', () => {
    if (!res.writableFinished) closes.push([id, now()]);
  });
});

process.on('message', (raw) => {
  const msg = raw as { type?: string; seq?: number };
  if (msg.type === 'closes') {
    process.send?.({ type: 'closes', seq: msg.seq, closes });
    closes = [];
  }
});

const stop = (): void => {
  void sim.close().finally(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
process.once('disconnect', stop);

process.send?.({ type: 'ready', url: sim.url, port: sim.port });
