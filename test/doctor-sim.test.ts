import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { constants as zc, createGzip } from 'node:zlib';
import { DoctorError } from '../src/doctor/doctor-error.ts';
import { runDoctor } from '../src/doctor/run-doctor.ts';
import { startSimulator, type Simulator } from '../src/sim/server.ts';
import { freePort } from './helpers/proxies.ts';
import { findCheck, probeInfo } from './helpers/doctor.ts';

/**
 * The doctor against the simulator and against scripted servers that misbehave one way each: real HTTP servers on
 * port 0, no proxies. Timing margins are wide: a stream that works sends a token every 20–50 ms, a held one sends
 * everything after a second.
 */

async function simulator(t: TestContext): Promise<Simulator> {
  const s = await startSimulator({ port: 0 });
  t.after(() => s.close());
  return s;
}

type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void | Promise<void>;

/** A server whose /v1/models lists model "m" and whose other routes run `handler`. */
async function scripted(t: TestContext, handler: Handler): Promise<string> {
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      if (req.method === 'GET' && req.url === '/v1/models') {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"object":"list","data":[{"id":"m","object":"model"}]}');
        return;
      }
      void handler(req, res, body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.after(
    () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const SSE = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache, no-transform', 'x-accel-buffering': 'no' };
const chunk = (text: string): string =>
  `data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content: text }, logprobs: null, finish_reason: null }] })}\n\n`;
const finish = `data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`;

/** Streams `n` chunks `gap` ms apart, each as `frame(i)`, then the tail. */
async function stream(res: ServerResponse, n: number, gap: number, frame: (i: number) => string = (i) => chunk(` w${i}`), tail = `${finish}data: [DONE]\n\n`): Promise<void> {
  for (let i = 0; i < n; i++) {
    if (res.destroyed) return;
    res.write(frame(i));
    await sleep(gap);
  }
  res.write(tail);
}

async function rejectsWith(p: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof DoctorError, String(err));
    assert.equal(err.code, code);
    assert.match(err.message, message);
    return true;
  });
}

test('the simulator streams: probe mode measures a sub-millisecond hop; only its vLLM headers warn', async (t) => {
  const s = await simulator(t);
  const report = await runDoctor({ url: s.url });
  assert.equal(report.target, 'simulator');
  assert.notEqual(findCheck(report, 'buffering').status, 'fail');
  const p = report.probes[0];
  assert.ok(p?.probeMode);
  assert.equal(p?.metrics.tokenEvents, 40);
  // sub-millisecond on an idle machine; on a busy one the doctor's own lateness is allowed for
  assert.ok((p?.metrics.probe?.delay.p50 ?? Infinity) < 20 + (p?.recording.loopLag.p99 ?? 0), probeInfo(p));
  assert.ok(Math.abs((p?.metrics.itl?.p50 ?? 0) - 50) < 15 + (p?.recording.loopLag.p99 ?? 0), 'inter-token latency follows the 50 ms cadence');
  const warned = report.checks.filter((c) => c.status !== 'pass').map((c) => c.id);
  assert.ok(warned.includes('headers.cache-control') && warned.includes('headers.x-accel-buffering'));
  // on a busy machine the buffering check may add a warning about noise, never a failure
  assert.deepEqual(warned.filter((id) => !id.startsWith('headers.') && id !== 'buffering'), []);
  assert.equal(report.exitCode, 1);
});

test('a stream cut mid-answer is reported as truncated', async (t) => {
  const s = await simulator(t);
  const report = await runDoctor({ url: s.url, body: { sim: { probe: true, itl_ms: 20, tokens: 30, fail: 'drop', fail_after: 10 } } });
  const end = findCheck(report, 'sdk.end');
  assert.equal(end.status, 'fail');
  assert.match(end.summary, /truncated/);
});

test('an in-band error frame fails, and [DONE] after it is called out', async (t) => {
  const s = await simulator(t);
  const report = await runDoctor({ url: s.url, body: { sim: { probe: true, itl_ms: 20, tokens: 30, fail: 'error_frame', fail_after: 8 } } });
  const c = findCheck(report, 'sdk.error-frame');
  assert.equal(c.status, 'fail');
  assert.match(c.summary, /simulated engine failure/);
  assert.match(c.evidence.join('\n'), /\[DONE\]` followed the error frame/);
});

test('clear errors: unreachable URL, 401, a JSON answer instead of a stream, a URL that is not one', async (t) => {
  await rejectsWith(runDoctor({ url: `http://127.0.0.1:${await freePort()}/v1` }), 'SLUICE_DOCTOR_UNREACHABLE', /connection refused/);
  const auth = await scripted(t, (_req, res) => void res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":{"message":"bad key"}}'));
  await rejectsWith(runDoctor({ url: auth, model: 'm' }), 'SLUICE_DOCTOR_UNAUTHORIZED', /401.*bad key.*--key/);
  const json = await scripted(t, (_req, res) => void res.writeHead(200, { 'content-type': 'application/json' }).end('{"id":"x","choices":[]}'));
  await rejectsWith(runDoctor({ url: json }), 'SLUICE_DOCTOR_NOT_SSE', /ignored "stream": true/);
  await rejectsWith(runDoctor({ url: 'ftp://example.com/v1' }), 'SLUICE_DOCTOR_BAD_URL', /http and https/);
});

test('a server that holds the stream and sends it at the end fails buffering, with no hop to name', async (t) => {
  const url = await scripted(t, async (_req, res) => {
    res.writeHead(200, SSE);
    await sleep(1000);
    let all = '';
    for (let i = 0; i < 30; i++) all += chunk(` w${i}`);
    res.end(`${all}${finish}data: [DONE]\n\n`);
  });
  const report = await runDoctor({ url });
  const c = findCheck(report, 'buffering');
  assert.equal(c.status, 'fail');
  assert.match(c.summary, /held back/);
  assert.match(c.fix ?? '', /--compare/);
});

test('a gzip stream flushed after every event still streams: decoded, passes buffering, warns on Content-Encoding', async (t) => {
  const url = await scripted(t, async (_req, res) => {
    res.writeHead(200, { ...SSE, 'content-encoding': 'gzip' });
    const gz = createGzip();
    gz.pipe(res);
    for (let i = 0; i < 20; i++) {
      gz.write(chunk(` w${i}`));
      gz.flush(zc.Z_SYNC_FLUSH);
      await sleep(30);
    }
    gz.end(`${finish}data: [DONE]\n\n`);
  });
  const report = await runDoctor({ url });
  assert.equal(report.probes[0]?.metrics.tokenEvents, 20);
  assert.notEqual(findCheck(report, 'buffering').status, 'fail');
  assert.equal(findCheck(report, 'headers.content-encoding').status, 'warn');
});

test('SDK-breaking framing fails: a BOM and an event: block without data', async (t) => {
  const url = await scripted(t, async (_req, res) => {
    res.writeHead(200, SSE);
    res.write('\uFEFF');
    await stream(res, 8, 20, (i) => (i === 3 ? `event: ping\n\n${chunk(' x')}` : chunk(` w${i}`)));
    res.end();
  });
  const c = findCheck(await runDoctor({ url }), 'sdk.framing');
  assert.equal(c.status, 'fail');
  assert.match(c.evidence.join('\n'), /BOM/);
  assert.match(c.evidence.join('\n'), /event: ping/);
});

test('CRLF line ends and id: lines are warnings; a heartbeat after an id: line fails', async (t) => {
  const crlf = await scripted(t, async (_req, res) => {
    res.writeHead(200, SSE);
    await stream(res, 8, 20, (i) => `id: ${i}\r\n${chunk(` w${i}`).replace(/\n/g, '\r\n')}`);
    res.end();
  });
  const warn = findCheck(await runDoctor({ url: crlf }), 'sdk.framing');
  assert.equal(warn.status, 'warn');
  assert.match(warn.evidence.join('\n'), /CRLF/);
  const idThenComment = await scripted(t, async (_req, res) => {
    res.writeHead(200, SSE);
    await stream(res, 8, 20, (i) => (i === 2 ? `id: 2\n${chunk(' w')}: keep-alive\n\n` : chunk(` w${i}`)));
    res.end();
  });
  const fail = findCheck(await runDoctor({ url: idThenComment }), 'sdk.framing');
  assert.equal(fail.status, 'fail');
  assert.match(fail.summary, /openai-python/);
});

test('a response left open after [DONE] fails', async (t) => {
  const url = await scripted(t, async (_req, res) => {
    res.writeHead(200, SSE);
    await stream(res, 8, 20);
    // never res.end(): the connection stays open
  });
  const report = await runDoctor({ url, doneGraceMs: 500 });
  const c = findCheck(report, 'sdk.end');
  assert.equal(c.status, 'fail');
  assert.match(c.summary, /stayed open after \[DONE\]/);
});

test('schema: chunks without choices fail', async (t) => {
  const url = await scripted(t, async (_req, res) => {
    res.writeHead(200, SSE);
    await stream(res, 8, 20, (i) => `data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","text":"w${i}"}\n\n${chunk(` w${i}`)}`);
    res.end();
  });
  const c = findCheck(await runDoctor({ url }), 'sdk.schema');
  assert.equal(c.status, 'fail');
  assert.match(c.summary, /choices/);
});

test('idle: the simulator survives a 2 s silence but sends no heartbeats (warn); a non-Sluice target skips the test', async (t) => {
  const s = await simulator(t);
  const report = await runDoctor({ url: s.url, idleSeconds: 2 });
  const idle = findCheck(report, 'idle', 'idle');
  assert.equal(idle.status, 'warn');
  assert.match(idle.summary, /no heartbeats/);
  assert.ok((report.idle?.metrics.ttftMs ?? 0) >= 1900, 'the first token came after the silence');
  const other = await scripted(t, async (_req, res) => {
    res.writeHead(200, SSE);
    await stream(res, 8, 20);
    res.end();
  });
  assert.equal(findCheck(await runDoctor({ url: other, idleSeconds: 2 }), 'idle', 'idle').status, 'skip');
});

test('CORS: a preflight that does not allow Authorization and a stream without Allow-Origin both fail', async (t) => {
  const url = await scripted(t, async (req, res) => {
    if (req.method === 'OPTIONS') {
      res.writeHead(204, { 'access-control-allow-origin': '*', 'access-control-allow-headers': '*', 'access-control-allow-methods': 'POST' }).end();
      return;
    }
    res.writeHead(200, SSE);
    await stream(res, 8, 20);
    res.end();
  });
  const report = await runDoctor({ url, key: 'k', origin: 'https://app.example' });
  assert.equal(findCheck(report, 'cors.preflight', 'cors').status, 'fail');
  assert.match(findCheck(report, 'cors.preflight', 'cors').summary, /authorization/);
  assert.equal(findCheck(report, 'cors.response', 'cors').status, 'fail');
});

test('--compare of the simulator with itself passes: nothing is added between them', async (t) => {
  const s = await simulator(t);
  const report = await runDoctor({ url: s.url, compare: s.url });
  const c = findCheck(report, 'compare', 'compare');
  assert.notEqual(c.status, 'fail', c.summary);
  const lag = Math.max(report.probes[0]?.recording.loopLag.p99 ?? 0, report.compare?.probe.recording.loopLag.p99 ?? 0);
  assert.ok(Math.abs(report.compare?.comparison.deltas.probeDelayP50Ms ?? Infinity) < 20 + lag, `${probeInfo(report.probes[0])} vs ${probeInfo(report.compare?.probe)}`);
});

test('--compare with an unreachable second URL keeps the report and fails the comparison', async (t) => {
  const url = await scripted(t, async (_req, res) => {
    res.writeHead(200, SSE);
    await stream(res, 8, 20);
    res.end();
  });
  const report = await runDoctor({ url, compare: `http://127.0.0.1:${await freePort()}/v1` });
  const c = findCheck(report, 'compare', 'compare');
  assert.equal(c.status, 'fail');
  assert.match(c.summary, /could not probe .*connection refused/);
  assert.equal(report.probes.length, 1);
});
