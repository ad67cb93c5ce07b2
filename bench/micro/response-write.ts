/**
 * What one SSE chunk costs the writing process on HTTP/1.1: `ServerResponse.write()` (Node frames the chunk itself:
 * four internal sends, a cork, a nextTick, a writev) against one chunk-framed Buffer written straight to the socket
 * (what src/http/sse-writer.ts does once the headers are out). One chunk per event-loop turn, as a stream at a
 * model's pace writes them; the reader is another process. Prints the writer's CPU per chunk from process.cpuUsage().
 *
 *   node bench/micro/response-write.ts [--chunks 100000] [--rounds 2]
 */
import { createServer, get, type ServerResponse } from 'node:http';
import { fork } from 'node:child_process';
import { parseArgs } from 'node:util';
import type { AddressInfo } from 'node:net';
import { chunkOf } from '../../src/http/sse-writer-h1.ts';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { chunks: { type: 'string', default: '100000' }, rounds: { type: 'string', default: '2' } } });

if (positionals[0] === 'reader') {
  get(`http://127.0.0.1:${positionals[1]}/`, (res) => {
    res.on('data', () => {});
    res.on('end', () => process.exit(0));
  });
} else {
  const chunks = Number(values.chunks);
  const payload = Buffer.from('data: {"id":"chatcmpl-5f1c2a","object":"chat.completion.chunk","created":1763750000,"model":"m","choices":[{"index":0,"delta":{"content":" token"},"finish_reason":null}]}\n\n');
  const once = (mode: 'response' | 'socket'): Promise<void> =>
    new Promise((resolve) => {
      const server = createServer((_req, res: ServerResponse) => {
        res.setHeader('content-type', 'text/event-stream');
        res.flushHeaders();
        const socket = res.socket;
        if (!socket) throw new Error('no socket');
        let i = 0;
        const cpu0 = process.cpuUsage();
        const step = (): void => {
          if (mode === 'socket') socket.write(chunkOf('', payload));
          else res.write(payload);
          if (++i < chunks) return void setImmediate(step);
          const cpu = process.cpuUsage(cpu0);
          console.log(`${mode.padEnd(8)} user ${(cpu.user / chunks).toFixed(2)} µs, system ${(cpu.system / chunks).toFixed(2)} µs per chunk`);
          res.end();
        };
        step();
      });
      server.listen(0, '127.0.0.1', () => {
        const reader = fork(new URL(import.meta.url).pathname, ['reader', String((server.address() as AddressInfo).port)]);
        reader.on('exit', () => server.close(() => resolve()));
      });
    });
  for (let r = 0; r < Number(values.rounds); r++) {
    await once('response');
    await once('socket');
  }
}
