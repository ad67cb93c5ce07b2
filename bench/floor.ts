/**
 * Reference proxies for the benchmark's `node-*` targets: the least a Node.js process can do to carry these streams,
 * so that Sluice's figures can be read against what Node itself costs on the machine, not only against nginx.
 * They are yardsticks, not products: no SSE work, no usage, no timeouts, no failover, no error bodies.
 *
 *   node bench/floor.ts --mode relay|http|raw --port P --upstream http://127.0.0.1:Q/v1
 *
 * - `relay`: TCP in, TCP out, bytes copied as they come (`net.Socket` 'data' → `write`), no HTTP at all: one
 *   upstream connection per client connection.
 * - `http`: `node:http` server and undici's `Pool.dispatch`, as Sluice is built; each upstream read is written to
 *   the client's socket as one HTTP chunk.
 * - `raw`: `node:http` server and a minimal HTTP/1.1 client on `net.Socket` (kept-alive sockets, chunked bodies only)
 *   instead of undici: what an HTTP client of Sluice's own could save at best.
 *
 * Each closes the upstream request when its client leaves (the benchmark measures that).
 */
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, createServer as createTcpServer, type Socket } from 'node:net';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { chunkOf } from '../src/http/sse-writer-h1.ts';

const { values: flags } = parseArgs({
  options: { mode: { type: 'string' }, port: { type: 'string' }, upstream: { type: 'string' } },
});
const mode = flags.mode ?? 'http';
const port = Number(flags.port);
const upstream = new URL(flags.upstream ?? '');
const upPort = Number(upstream.port);

/** One HTTP chunk holding `bytes`, in one Buffer (Sluice's own framing). */
const chunk = (bytes: Buffer): Buffer => chunkOf('', bytes);

function relay(): void {
  createTcpServer((client) => {
    client.setNoDelay(true);
    const up = connect(upPort, upstream.hostname);
    up.setNoDelay(true);
    client.on('data', (d: Buffer) => up.write(d));
    up.on('data', (d: Buffer) => client.write(d));
    client.on('close', () => up.destroy());
    up.on('close', () => client.destroy());
    client.on('error', () => {});
    up.on('error', () => {});
  }).listen(port, '127.0.0.1');
}

/** Request body, then `stream(body, res, socket)`; the response headers go out with `open()`. */
function httpServer(stream: (req: IncomingMessage, body: Buffer, res: ServerResponse, socket: Socket) => void): void {
  createHttpServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('end', () => {
      const socket = res.socket as Socket;
      socket.setNoDelay(true);
      stream(req, Buffer.concat(parts), res, socket);
    });
  }).listen(port, '127.0.0.1');
}

function open(res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  res.flushHeaders();
}

/** Calls `leave` if the client's connection ends or closes before `settle()` is called. */
function onClientLeft(socket: Socket, leave: () => void): () => void {
  socket.once('end', leave);
  socket.once('close', leave);
  return () => {
    socket.off('end', leave);
    socket.off('close', leave);
  };
}

function viaUndici(): void {
  const pool = new Pool(upstream.origin, { headersTimeout: 0, bodyTimeout: 0 });
  httpServer((req, body, res, socket) => {
    let controller: { abort(reason: Error): void } | undefined;
    const settle = onClientLeft(socket, () => controller?.abort(new Error('client left')));
    pool.dispatch(
      { origin: upstream.origin, path: req.url ?? '/', method: 'POST', headers: { 'content-type': 'application/json' }, body },
      {
        onRequestStart: (c) => void (controller = c),
        onResponseStart: () => open(res),
        onResponseData: (_c, d) => void socket.write(chunk(d)),
        onResponseEnd: () => {
          settle();
          res.end();
        },
        onResponseError: () => {
          settle();
          res.destroy();
        },
      },
    );
  });
}

/** HTTP/1.1 on kept-alive sockets; only what the simulator's streams need (a status line, headers, chunked body). */
function viaRawClient(): void {
  const idle = new Set<Socket>();
  const take = (): Socket => {
    for (const s of idle) {
      idle.delete(s);
      return s;
    }
    const s = connect(upPort, upstream.hostname).setNoDelay(true);
    s.on('close', () => idle.delete(s));
    s.on('error', () => {}); // reported to the request that holds it, if any
    return s;
  };
  httpServer((req, body, res, socket) => {
    const up = take();
    let inHead = true;
    let rest: Buffer | undefined;
    const finish = (reuse: boolean): void => {
      settle();
      up.removeListener('data', onData);
      up.removeListener('error', onError);
      if (reuse) idle.add(up);
      else up.destroy();
    };
    const onError = (): void => {
      finish(false);
      res.destroy();
    };
    const onData = (d: Buffer): void => {
      if (rest) {
        d = Buffer.concat([rest, d]);
        rest = undefined;
      }
      let at = 0;
      if (inHead) {
        const end = d.indexOf('\r\n\r\n');
        if (end < 0) return void (rest = d);
        inHead = false;
        at = end + 4;
        open(res);
      }
      while (at < d.length) {
        const nl = d.indexOf('\r\n', at);
        if (nl < 0) return void (rest = d.subarray(at));
        const size = parseInt(d.toString('latin1', at, nl), 16);
        if (size === 0) {
          finish(true);
          res.end();
          return;
        }
        if (nl + 2 + size + 2 > d.length) return void (rest = d.subarray(at));
        socket.write(chunk(d.subarray(nl + 2, nl + 2 + size)));
        at = nl + 4 + size;
      }
    };
    const settle = onClientLeft(socket, () => finish(false));
    up.on('data', onData);
    up.on('error', onError);
    up.write(`POST ${req.url} HTTP/1.1\r\nhost: ${upstream.host}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n`);
    up.write(body);
  });
}

if (mode === 'relay') relay();
else if (mode === 'http') viaUndici();
else if (mode === 'raw') viaRawClient();
else throw new Error(`--mode: '${mode}' is not one of relay, http, raw`);

// Exit normally on the harness's SIGTERM, so that a `--cpu-prof` run writes its profile (bench/run.ts --cpu-prof).
process.once('SIGTERM', () => process.exit(0));
