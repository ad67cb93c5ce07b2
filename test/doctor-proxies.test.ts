import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { runDoctor, type DoctorReport } from '../src/doctor/run-doctor.ts';
import { startSimulator, type Simulator } from '../src/sim/server.ts';
import { pointAt, recipe, startCaddy, startHaproxy, startNginx } from './helpers/proxies.ts';
import { findCheck, probeInfo } from './helpers/doctor.ts';

/**
 * The recipes in docs/proxies/*.md, run on Debian's real nginx, HAProxy and Caddy in front of the simulator (which
 * sends vLLM's headers: no X-Accel-Buffering, no Cache-Control), and the known-bad set-ups next to them. The
 * simulator's probe mode writes a stamped token every 50 ms, so "streams" and "held back" are hundreds of ms apart.
 */

async function sim(t: TestContext): Promise<Simulator> {
  const s = await startSimulator({ port: 0 });
  t.after(() => s.close());
  return s;
}

/** An upstream that accepts WebSocket upgrades on /v1/ws and echoes messages; returns its base URL. */
async function wsEcho(t: TestContext): Promise<string> {
  // /health answers like Sluice's, for the HAProxy recipe's health check.
  const server = createServer((req, res) => res.writeHead(req.url === '/health' ? 200 : 404).end());
  const wss = new WebSocketServer({ server, path: '/v1/ws' });
  wss.on('connection', (ws) => ws.on('message', (m) => ws.send(`echo:${m.toString()}`)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.after(
    () =>
      new Promise<void>((r) => {
        for (const c of wss.clients) c.terminate();
        wss.close();
        server.close(() => r());
        server.closeAllConnections();
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
}

/** Opens a WebSocket through `baseUrl` to /v1/ws, sends one message and returns the reply. */
function wsRoundTrip(baseUrl: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${baseUrl.replace(/^http/, 'ws')}/ws`);
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error('no WebSocket reply within 5 s'));
    }, 5000);
    ws.once('open', () => ws.send('ping'));
    ws.once('message', (m) => {
      clearTimeout(timer);
      ws.close();
      resolve(m.toString());
    });
    ws.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

function failures(report: DoctorReport): string[] {
  return report.checks.filter((c) => c.status === 'fail').map((c) => `${c.id}: ${c.summary}`);
}

test('nginx recipe in front of an engine streams: no failure, tokens one per read', async (t) => {
  const s = await sim(t);
  const nginx = await startNginx(t, pointAt(await recipe('nginx.md', 'nginx'), s.url));
  const report = await runDoctor({ url: nginx.url });
  assert.deepEqual(failures(report), []);
  const p = report.probes[0];
  assert.ok((p?.metrics.probe?.delay.p50 ?? Infinity) < 50 + (p?.recording.loopLag.p99 ?? 0), `probe delay p50 under 50 ms: ${probeInfo(p)}`);
  // behind nginx the missing X-Accel-Buffering is not held against a stream that works
  assert.equal(findCheck(report, 'headers.x-accel-buffering').status, 'pass');
});

test('nginx with default buffering in front of the simulator fails and names nginx buffering and its fix', async (t) => {
  const s = await sim(t);
  const nginx = await startNginx(t, pointAt(await recipe('nginx.md', 'nginx-default'), s.url));
  const report = await runDoctor({ url: nginx.url });
  assert.equal(report.exitCode, 2);
  const c = findCheck(report, 'buffering');
  assert.equal(c.status, 'fail');
  assert.match(c.hop ?? '', /nginx/);
  assert.match(c.summary, /nginx/);
  assert.match(c.fix ?? '', /proxy_buffering off/);
  assert.match(c.evidence.join('\n'), /4 KiB pieces/);
});

test('nginx read timeout shorter than the silence: the idle probe is cut and nginx is named', async (t) => {
  const s = await sim(t);
  const nginx = await startNginx(t, pointAt(await recipe('nginx.md', 'nginx-short-timeout'), s.url));
  const report = await runDoctor({ url: nginx.url, idleSeconds: 4 });
  const idle = findCheck(report, 'idle', 'idle');
  assert.equal(idle.status, 'fail');
  assert.match(idle.summary, /cut after (1\.\d|2\.\d) s of silence/);
  assert.match(idle.hop ?? '', /nginx.*proxy_read_timeout/);
  assert.deepEqual(failures(report).filter((f) => !f.startsWith('idle')), []);
});

test('HAProxy recipe in front of an engine streams', async (t) => {
  const s = await sim(t);
  const haproxy = await startHaproxy(t, pointAt(await recipe('haproxy.md', 'haproxy'), s.url));
  const report = await runDoctor({ url: haproxy.url });
  assert.deepEqual(failures(report), []);
  const p = report.probes[0];
  assert.ok((p?.metrics.probe?.delay.p50 ?? Infinity) < 50 + (p?.recording.loopLag.p99 ?? 0), `probe delay p50 under 50 ms: ${probeInfo(p)}`);
});

test("HAProxy's default configuration fails: bursts every ~200 ms, fix option http-no-delay", async (t) => {
  const s = await sim(t);
  const haproxy = await startHaproxy(t, pointAt(await recipe('haproxy.md', 'haproxy-default'), s.url));
  const report = await runDoctor({ url: haproxy.url });
  assert.equal(report.exitCode, 2);
  const c = findCheck(report, 'buffering');
  assert.equal(c.status, 'fail');
  assert.match(c.hop ?? '', /HAProxy/);
  assert.match(c.fix ?? '', /option http-no-delay/);
});

test('Caddy recipe in front of an engine streams, even when the first write is large enough to compress', async (t) => {
  const s = await sim(t);
  const caddy = await startCaddy(t, pointAt(await recipe('caddy.md', 'caddy'), s.url));
  const report = await runDoctor({ url: caddy.url, body: { n: 3 } });
  assert.deepEqual(failures(report), []);
  assert.equal(findCheck(report, 'headers.content-encoding').status, 'pass');
});

test('Caddy compressing text/event-stream fails: the answer arrives at the end, Caddy encode is named', async (t) => {
  const s = await sim(t);
  const caddy = await startCaddy(t, pointAt(await recipe('caddy.md', 'caddy-encode'), s.url));
  const report = await runDoctor({ url: caddy.url, body: { n: 3 } });
  assert.equal(report.exitCode, 2);
  const c = findCheck(report, 'buffering');
  assert.equal(c.status, 'fail');
  assert.match(c.summary, /held back and delivered at the end/);
  assert.match(c.hop ?? '', /Caddy/);
  assert.match(c.fix ?? '', /encode/);
  assert.equal(findCheck(report, 'headers.content-encoding').status, 'warn');
});

test('--compare attributes nginx buffering to the hops between the engine and the public URL', async (t) => {
  const s = await sim(t);
  const nginx = await startNginx(t, pointAt(await recipe('nginx.md', 'nginx-default'), s.url));
  const report = await runDoctor({ url: nginx.url, compare: s.url });
  const c = findCheck(report, 'compare', 'compare');
  assert.equal(c.status, 'fail');
  assert.match(c.summary, /between http:\/\/127\.0\.0\.1:\d+\/v1 and http:\/\/127\.0\.0\.1:\d+\/v1 \(nginx/);
  assert.ok((report.compare?.comparison.deltas.probeDelayP50Ms ?? 0) > 100, `nginx adds over 100 ms per token at p50: ${probeInfo(report.probes[0])} vs ${probeInfo(report.compare?.probe)}`);
});

test('each recipe forwards WebSocket upgrades (Responses WebSocket mode, /v1/ws)', async (t) => {
  const upstream = await wsEcho(t);
  const nginx = await startNginx(t, pointAt(await recipe('nginx.md', 'nginx'), upstream));
  const haproxy = await startHaproxy(t, pointAt(await recipe('haproxy.md', 'haproxy'), upstream));
  const caddy = await startCaddy(t, pointAt(await recipe('caddy.md', 'caddy'), upstream));
  for (const [name, proxy] of [['nginx', nginx], ['haproxy', haproxy], ['caddy', caddy]] as const) {
    assert.equal(await wsRoundTrip(proxy.url), 'echo:ping', `${name} forwards the upgrade`);
  }
});
