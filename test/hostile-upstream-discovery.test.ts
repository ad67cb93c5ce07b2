import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gateway } from './helpers/gateway.ts';
import { rawUpstream } from './helpers/raw-upstream.ts';
import { MAX_DISCOVERY_BYTES } from '../src/upstream/registry.ts';

/**
 * Issue 12, "Discovery reads at most a bounded /v1/models": a 200 MB model list took the gateway to 856 MiB RSS.
 * The upstream here writes a model list of up to 200 MB as fast as the gateway takes it.
 */

const MIB = 1024 * 1024;

test('a huge /v1/models is read only up to the bound: the request is aborted, the upstream marked failed, memory bounded', async (t) => {
  let written = 0;
  const up = await rawUpstream(
    t,
    ({ socket }) => {
      socket.write('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n');
      const card = (i: number): string => `{"id":"model-${i}-${'x'.repeat(200)}","object":"model","owned_by":"vllm"},`;
      let i = 0;
      const pump = (): void => {
        while (written < 200 * MIB && !socket.destroyed) {
          let chunk = i === 0 ? '{"object":"list","data":[' : '';
          for (let k = 0; k < 256; k++) chunk += card(i++);
          written += chunk.length;
          if (!socket.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`)) return void socket.once('drain', pump);
        }
        if (!socket.destroyed) socket.end('0\r\n\r\n');
      };
      pump();
    },
    { models: false },
  );
  const closed = up.nextClose();
  const before = process.memoryUsage().rss;
  const g = await gateway(t, { upstreams: [{ url: up.url }] });
  await closed;
  const grown = process.memoryUsage().rss - before;
  assert.ok(written < 64 * MIB, `the upstream got to write ${Math.round(written / MIB)} MiB before the gateway hung up`);
  assert.ok(grown < 128 * MIB, `RSS grew ${Math.round(grown / MIB)} MiB`);
  const ready = (await (await fetch(`${g.url.replace(/\/v1$/, '')}/ready`)).json()) as { status: string; upstreams: Array<{ healthy: boolean; error?: string }> };
  assert.equal(ready.status, 'unavailable');
  assert.equal(ready.upstreams[0]?.healthy, false);
  assert.match(ready.upstreams[0]?.error ?? '', new RegExp(`model discovery failed: GET /models answered more than ${MAX_DISCOVERY_BYTES} bytes`));
  assert.deepEqual(g.models(), []);
  assert.equal((await fetch(`${g.url.replace(/\/v1$/, '')}/health`)).status, 200);
});

test('a /v1/models that trickles forever does not hold up discovery (and the gateway\'s start) past its deadline', async (t) => {
  const up = await rawUpstream(
    t,
    ({ socket }) => {
      socket.write('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n1\r\n{\r\n');
      // A byte every second: undici's per-read body timeout (10 s) never fires.
      const timer = setInterval(() => socket.write('1\r\n \r\n'), 1_000);
      socket.once('close', () => clearInterval(timer));
    },
    { models: false },
  );
  const started = performance.now();
  const closed = up.nextClose();
  const g = await gateway(t, { upstreams: [{ url: up.url }] });
  const took = performance.now() - started;
  await closed;
  assert.ok(took < 20_000, `discovery took ${Math.round(took)} ms`);
  const ready = (await (await fetch(`${g.url.replace(/\/v1$/, '')}/ready`)).json()) as { upstreams: Array<{ error?: string }> };
  assert.match(ready.upstreams[0]?.error ?? '', /did not complete within 15000 ms/);
});

test('a gzip-encoded /v1/models (sent although identity was asked for) is decoded within the same bound', async (t) => {
  const { gzipSync } = await import('node:zlib');
  const list = gzipSync(JSON.stringify({ object: 'list', data: [{ id: 'zipped', object: 'model', owned_by: 'me' }] }));
  const up = await rawUpstream(
    t,
    ({ socket }) => {
      socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\ncontent-length: ${list.length}\r\n\r\n`);
      socket.write(list);
    },
    { models: false },
  );
  const g = await gateway(t, { upstreams: [{ url: up.url }] });
  assert.deepEqual(g.models(), ['zipped']);
});
