import { test } from 'node:test';
import assert from 'node:assert/strict';
import { exitCodeFor, worstStatus, check } from '../src/doctor/check.ts';
import { compareProbes } from '../src/doctor/compare.ts';
import { normalizeBaseUrl } from '../src/doctor/discover.ts';
import type { ProbeResult } from '../src/doctor/probe-result.ts';
import { renderHtml } from '../src/doctor/render-html.ts';
import { renderText } from '../src/doctor/render-text.ts';
import { reportToJson } from '../src/doctor/report-json.ts';
import type { DoctorReport } from '../src/doctor/run-doctor.ts';
import { tokenArrivals } from '../src/doctor/token-arrivals.ts';
import { checkBuffering } from '../src/doctor/checks/buffering.ts';
import { checkCors } from '../src/doctor/checks/cors.ts';
import { checkHeaders } from '../src/doctor/checks/headers.ts';
import { checkIdle } from '../src/doctor/checks/idle.ts';
import { checkSdkCompat } from '../src/doctor/checks/sdk-compat.ts';
import { errorFrameShape, validateChunk, validateResponsesEvent } from '../src/doctor/chunk-schema.ts';
import { createDechunker, DechunkError } from '../src/doctor/dechunk.ts';
import { identifyHops } from '../src/doctor/hops.ts';
import { parseHead } from '../src/doctor/http-exchange.ts';
import { percentiles } from '../src/doctor/percentiles.ts';
import type { EventRecord, ReadRecord, StreamRecording } from '../src/doctor/recording.ts';
import { auditFraming } from '../src/doctor/sse-framing.ts';
import { computeMetrics } from '../src/doctor/stream-metrics.ts';

/** Pure parts of the doctor: chunked decoding, framing audit, schema, and each check on synthetic recordings. */

const chunk = (text: string, i = 0): string =>
  JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: i, delta: { content: text }, finish_reason: null }] });
const finish = JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] });

interface Delivery {
  at: number;
  tokens: number;
  /** Body bytes of this read (default: the frames' size). */
  bytes?: number;
  stamps?: number[];
  comments?: number;
}

/** A recording whose reads carry `tokens` token frames each; the last read also carries the finish chunk and [DONE]. */
function recording(deliveries: Delivery[], opts: { headers?: Array<[string, string]>; headAt?: number; end?: StreamRecording['end']; done?: boolean; endpoint?: 'chat' } = {}): StreamRecording {
  const reads: ReadRecord[] = [];
  const events: EventRecord[] = [];
  let body = '';
  const startedAt = 1_700_000_000_000;
  let n = 0;
  deliveries.forEach((d, r) => {
    let frames = '';
    for (let k = 0; k < (d.comments ?? 0); k++) {
      events.push({ at: d.at, read: r, kind: 'comment', data: 'keep-alive', event: null, id: null });
      frames += ': keep-alive\n\n';
    }
    for (let k = 0; k < d.tokens; k++) {
      const stamp = d.stamps?.[k];
      const data = chunk(stamp === undefined ? ` t${n++}` : ` @${(startedAt + stamp).toFixed(3)}`);
      events.push({ at: d.at, read: r, kind: 'data', data, event: null, id: null });
      frames += `data: ${data}\n\n`;
    }
    if (r === deliveries.length - 1 && opts.done !== false) {
      events.push({ at: d.at, read: r, kind: 'data', data: finish, event: null, id: null });
      events.push({ at: d.at, read: r, kind: 'data', data: '[DONE]', event: null, id: null });
      frames += `data: ${finish}\n\ndata: [DONE]\n\n`;
    }
    body += frames;
    const bytes = d.bytes ?? Buffer.byteLength(frames);
    reads.push({ at: d.at, wireBytes: bytes + 10, bodyBytes: bytes });
  });
  const last = deliveries[deliveries.length - 1]?.at ?? 0;
  return {
    url: 'http://127.0.0.1:1/v1/chat/completions',
    endpoint: opts.endpoint ?? 'chat',
    requestBody: {},
    startedAt,
    connectedAt: 1,
    head: {
      status: 200,
      statusText: 'OK',
      httpVersion: '1.1',
      headers: opts.headers ?? [
        ['Content-Type', 'text/event-stream; charset=utf-8'],
        ['Transfer-Encoding', 'chunked'],
      ],
      firstByteAt: opts.headAt ?? 5,
      at: opts.headAt ?? 5,
    },
    reads,
    events,
    body: Buffer.from(body),
    bodyCapped: false,
    end: opts.end ?? { at: last + 1, reason: 'complete', detail: null },
    doneAt: opts.done === false ? null : last,
    parseError: null,
    loopLag: { p50: 0, p99: 0, max: 0 },
  };
}

const every = (n: number, step: number, from = 100, tokens = 1): Delivery[] => Array.from({ length: n }, (_, i) => ({ at: from + i * step, tokens }));

function buffering(rec: StreamRecording) {
  return checkBuffering(rec, computeMetrics(rec), identifyHops(rec.head.headers));
}

test('dechunk: every split of a chunked body gives the same bytes; extensions and trailers are skipped', () => {
  const wire = Buffer.from('5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n');
  for (let cut = 0; cut <= wire.length; cut++) {
    const d = createDechunker();
    const out = [...d.feed(wire.subarray(0, cut)), ...d.feed(wire.subarray(cut))];
    assert.equal(Buffer.concat(out).toString(), 'hello, world', `split at ${cut}`);
    assert.equal(d.done, true);
  }
  const byteByByte = createDechunker();
  const parts: Buffer[] = [];
  for (const b of wire) parts.push(...byteByByte.feed(Buffer.from([b])));
  assert.equal(Buffer.concat(parts).toString(), 'hello, world');
  assert.throws(() => createDechunker().feed(Buffer.from('zz\r\n')), DechunkError);
  const open = createDechunker();
  open.feed(Buffer.from('3\r\nabc\r\n'));
  assert.equal(open.done, false, 'no last chunk yet');
});

test('parseHead: status line, headers in order, interim and malformed answers', () => {
  const head = parseHead(Buffer.from('HTTP/1.1 200 OK\r\nServer: nginx\r\nServer: uvicorn\r\nContent-Type: text/event-stream\r\n\r\ndata: x'));
  assert.ok(head !== null && head !== 'bad');
  assert.equal(head.status, 200);
  assert.deepEqual(head.headers[1], ['Server', 'uvicorn']);
  assert.equal(head.length, Buffer.byteLength('HTTP/1.1 200 OK\r\nServer: nginx\r\nServer: uvicorn\r\nContent-Type: text/event-stream\r\n\r\n'));
  assert.equal(parseHead(Buffer.from('HTTP/1.1 200 OK\r\nServer: x')), null);
  assert.equal(parseHead(Buffer.from('SSH-2.0-OpenSSH\r\n\r\n')), 'bad');
});

test('framing audit: BOM, CRLF, events without data, comment after id, multi-line data', () => {
  const clean = auditFraming(Buffer.from('data: {"a":1}\n\n: keep-alive\n\ndata: [DONE]\n\n'));
  assert.equal(clean.bom, false);
  assert.deepEqual(clean.lineEndings, { lf: 6, crlf: 0, cr: 0 });
  assert.equal(clean.eventsWithoutData + clean.multiLineData + clean.trailingBytes, 0);

  const bad = auditFraming(Buffer.from('\uFEFFid: 1\r\nevent: ping\r\n\r\n: hb\r\ndata: {"a":\r\ndata: 1}\r\n\r\ndata: {"s":"x\ndata: y"}\n\ndata: tail'));
  assert.equal(bad.bom, true);
  assert.ok(bad.lineEndings.crlf > 0);
  assert.equal(bad.eventsWithoutData, 1);
  assert.equal(bad.commentAfterId, true);
  assert.equal(bad.multiLineData, 2);
  assert.equal(bad.multiLineBroken, 1, 'a JSON string split over two data lines is broken once joined');
  assert.equal(bad.trailingBytes, Buffer.byteLength('data: tail'));
});

test('chunk schema: what breaks clients is an error, cosmetic deviations are warnings', () => {
  assert.deepEqual(validateChunk('chat', JSON.parse(chunk('hi'))), { errors: [], warnings: [] });
  const usage = { id: 'x', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [], usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 } };
  assert.deepEqual(validateChunk('chat', usage).errors, []);
  assert.match(validateChunk('chat', { id: 'x', object: 'chat.completion.chunk', created: 1, model: 'm' }).errors.join(), /choices/);
  assert.match(validateChunk('chat', { id: 'x', created: 1, model: 'm', choices: [{ index: 0, delta: { role: 'user' } }] }).errors.join(), /role/);
  assert.match(validateChunk('chat', { id: '', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: {} }] }).warnings.join(), /empty/);
  assert.match(validateChunk('completions', { id: 'c', object: 'text_completion', created: 1, model: 'm', choices: [{ index: 0 }] }).errors.join(), /text/);
  assert.match(validateResponsesEvent('response.created', { type: 'response.completed', sequence_number: 1 }).warnings.join(), /does not match/);
  assert.equal(errorFrameShape({ error: { message: 'boom', type: 'server_error' } }), null);
  assert.match(errorFrameShape({ error: 'boom', error_type: 'x' }) ?? '', /TGI/);
});

test('buffering: one token per read passes', () => {
  const c = buffering(recording(every(40, 50)));
  assert.equal(c.status, 'pass', c.summary);
});

test('buffering: 4 KiB bursts behind nginx fail and name nginx buffering', () => {
  const rec = recording([{ at: 860, tokens: 15, bytes: 3933 }, { at: 1720, tokens: 17, bytes: 4096 }, { at: 2070, tokens: 8, bytes: 1948 }], {
    headAt: 860,
    headers: [['Server', 'nginx/1.22.1'], ['Content-Type', 'text/event-stream'], ['Transfer-Encoding', 'chunked']],
  });
  const c = buffering(rec);
  assert.equal(c.status, 'fail');
  assert.match(c.hop ?? '', /nginx/);
  assert.match(c.fix ?? '', /proxy_buffering off/);
  assert.match(c.evidence.join('\n'), /headers themselves were held/);
});

test('buffering: 4 KiB bursts with no Server header still point at an nginx-style buffer', () => {
  const c = buffering(recording([{ at: 900, tokens: 16, bytes: 4096 }, { at: 1700, tokens: 16, bytes: 4096 }, { at: 2000, tokens: 8, bytes: 2000 }]));
  assert.equal(c.status, 'fail');
  assert.match(c.hop ?? '', /4\/8 KiB buffers/);
});

test('buffering: everything in one read with Content-Encoding behind Caddy names Caddy encode', () => {
  const rec = recording([{ at: 2070, tokens: 40 }], {
    headers: [['Content-Encoding', 'gzip'], ['Content-Type', 'text/event-stream'], ['Server', 'Caddy'], ['Server', 'uvicorn']],
  });
  const c = buffering(rec);
  assert.equal(c.status, 'fail');
  assert.match(c.summary, /held back and delivered at the end/);
  assert.match(c.hop ?? '', /Caddy/);
  assert.match(c.fix ?? '', /encode/);
});

test('buffering: steady ~230 ms bursts of 5 name write corking and option http-no-delay', () => {
  const c = buffering(recording(every(8, 230, 200, 5)));
  assert.equal(c.status, 'fail');
  assert.match(c.fix ?? '', /http-no-delay/);
});

test('buffering: probe stamps showing large added delay fail even when bursts are small', () => {
  // pairs of tokens, each written 50 ms apart but delivered 300 ms late
  const deliveries: Delivery[] = Array.from({ length: 10 }, (_, i) => ({ at: 400 + i * 100, tokens: 2, stamps: [100 + i * 100, 150 + i * 100] }));
  const rec = recording(deliveries);
  const m = computeMetrics(rec);
  assert.equal(m.probe?.clock, 'same');
  assert.ok((m.probe?.delay.p50 ?? 0) >= 250);
  assert.equal(checkBuffering(rec, m, []).status, 'fail');
});

test('probe stamps that are not write times (all taken at once) are refused, not read as delay', () => {
  const deliveries: Delivery[] = Array.from({ length: 10 }, (_, i) => ({ at: 100 + i * 50, tokens: 1, stamps: [10 + i * 0.01] }));
  const rec = recording(deliveries);
  assert.ok(computeMetrics(rec).probe !== null, 'without an expected cadence the stamps are used');
  const m = computeMetrics(rec, undefined, { expectedItlMs: 50 });
  assert.equal(m.probe, null);
  assert.match(m.probeRejected ?? '', /not the 50 ms asked for/);
  assert.equal(checkBuffering(rec, m, []).status, 'pass');
});

test('buffering: too few tokens to judge is a warning, not a verdict', () => {
  assert.equal(buffering(recording(every(3, 50))).status, 'warn');
});

test('metrics: TTFT, ITL percentiles, tokens per second, deliveries', () => {
  const m = computeMetrics(recording(every(11, 50)));
  assert.equal(m.ttftMs, 100);
  assert.equal(m.itl?.p50, 50);
  assert.equal(m.tokensPerSecond, 20);
  assert.equal(m.deliveries.length, 11);
  assert.deepEqual(percentiles([5, 1, 4, 2, 3]), { p50: 3, p90: 5, p99: 5, max: 5 });
  assert.equal(percentiles([]), null);
});

test('headers: a missing protective header on a working stream is a warning; behind nginx X-Accel-Buffering is expected to vanish', () => {
  const vllm = recording(every(10, 50), { headers: [['Content-Type', 'text/event-stream; charset=utf-8'], ['Transfer-Encoding', 'chunked'], ['server', 'uvicorn']] });
  const byId = (cs: ReturnType<typeof checkHeaders>) => Object.fromEntries(cs.map((c) => [c.id, c.status]));
  const plain = byId(checkHeaders(vllm, identifyHops(vllm.head.headers), true));
  assert.equal(plain['headers.cache-control'], 'warn');
  assert.equal(plain['headers.x-accel-buffering'], 'warn');
  assert.equal(worstStatus(checkHeaders(vllm, [], true)), 'warn');
  const nginxHeaders: Array<[string, string]> = [['Server', 'nginx'], ['Content-Type', 'text/event-stream'], ['Cache-Control', 'no-cache, no-transform'], ['Transfer-Encoding', 'chunked']];
  const behindNginx = recording(every(10, 50), { headers: nginxHeaders });
  assert.equal(byId(checkHeaders(behindNginx, identifyHops(nginxHeaders), true))['headers.x-accel-buffering'], 'pass');
  const http10 = { ...behindNginx, head: { ...behindNginx.head, httpVersion: '1.0', headers: [['Content-Type', 'text/event-stream']] as Array<[string, string]> } };
  assert.equal(byId(checkHeaders(http10, [], true))['headers.http-version'], 'warn');
});

test('sdk: truncation fails, a missing [DONE] after finish_reason warns, a response left open after [DONE] fails', () => {
  const status = (rec: StreamRecording, id = 'sdk.end') => checkSdkCompat(rec, auditFraming(rec.body)).find((c) => c.id === id)?.status;
  assert.equal(status(recording(every(10, 50))), 'pass');
  const cut = recording(every(10, 50), { done: false, end: { at: 700, reason: 'closed', detail: 'connection closed' } });
  cut.events = cut.events.filter((e) => !e.data.includes('finish_reason":"stop'));
  assert.equal(status(cut), 'fail');
  assert.equal(status(recording(every(10, 50).concat([{ at: 700, tokens: 0 }]), { done: false })), 'fail', 'no finish_reason, no [DONE]');
  const noDone = recording(every(10, 50), { done: false });
  noDone.events.push({ at: 600, read: 9, kind: 'data', data: finish, event: null, id: null });
  assert.equal(status(noDone), 'warn');
  assert.equal(status(recording(every(10, 50), { end: { at: 3000, reason: 'open-after-done', detail: null } })), 'fail');
});

test('sdk: an error frame fails and its shape is judged', () => {
  const rec = recording(every(5, 50));
  rec.events.splice(3, 0, { at: 250, read: 3, kind: 'data', data: '{"error":"boom","error_type":"x"}', event: null, id: null });
  const c = checkSdkCompat(rec, auditFraming(rec.body)).find((x) => x.id === 'sdk.error-frame');
  assert.equal(c?.status, 'fail');
  assert.match(c?.evidence.join('\n') ?? '', /TGI style/);
});

test('idle: a cut near 60 s names nginx or an ALB; 504 from a hop; heartbeats make it pass, their absence warns', () => {
  const cut = recording([], { done: false, end: { at: 60_010, reason: 'closed', detail: 'connection closed before the end of the body' } });
  const c = checkIdle(cut, 90_000, []);
  assert.equal(c.status, 'fail');
  assert.match(c.summary, /cut after 60\.0 s/);
  assert.match(c.hop ?? '', /nginx/);
  const gw = recording([], { done: false, headAt: 50_000 });
  gw.head.status = 504;
  gw.head.statusText = 'Gateway Time-out';
  assert.match(checkIdle(gw, 90_000, []).hop ?? '', /HAProxy/);
  const beats = recording([{ at: 1000, tokens: 0, comments: 1 }, { at: 2000, tokens: 0, comments: 1 }, { at: 3000, tokens: 5 }]);
  assert.equal(checkIdle(beats, 3000, []).status, 'pass');
  assert.equal(checkIdle(recording([{ at: 3000, tokens: 5 }]), 3000, []).status, 'warn');
});

test('cors: wildcard Allow-Headers does not cover Authorization; the stream needs Allow-Origin too', () => {
  const origin = 'https://app.example';
  const pre = (headers: Array<[string, string]>) => ({ status: 204, headers });
  const ok = checkCors(origin, pre([['Access-Control-Allow-Origin', origin], ['Access-Control-Allow-Headers', 'authorization, content-type']]), [['Access-Control-Allow-Origin', '*']], ['Content-Type', 'Authorization']);
  assert.deepEqual(ok.map((c) => c.status), ['pass', 'pass']);
  const wildcard = checkCors(origin, pre([['Access-Control-Allow-Origin', '*'], ['Access-Control-Allow-Headers', '*']]), [['Access-Control-Allow-Origin', '*']], ['Content-Type', 'Authorization']);
  assert.equal(wildcard[0]?.status, 'fail');
  assert.match(wildcard[0]?.summary ?? '', /authorization/);
  const noAcao = checkCors(origin, pre([['Access-Control-Allow-Origin', origin], ['Access-Control-Allow-Headers', 'content-type']]), [], ['Content-Type']);
  assert.equal(noAcao[1]?.status, 'fail');
  assert.equal(checkCors(origin, 'connection refused', null, [])[0]?.status, 'fail');
});

test('hops: Server fields, Via, CF-Ray and Sluice headers name the chain', () => {
  const hops = identifyHops([['CF-Ray', '8abc-AMS'], ['Via', '1.1 abc.cloudfront.net (CloudFront)'], ['Server', 'Caddy'], ['Server', 'uvicorn'], ['x-sluice-gateway', '0.1.0']]);
  assert.deepEqual(hops.map((h) => h.kind), ['cloudflare', 'cloudfront', 'caddy', 'uvicorn', 'sluice']);
  assert.equal(hops[0]?.idleLimitS, 100);
});

test('exit codes: 0 all pass, 1 warnings only, 2 any failure; skipped checks do not count', () => {
  const c = (status: 'pass' | 'warn' | 'fail' | 'skip') => check({ id: 'x', group: 'headers', probe: 'chat', title: 'x', status, summary: '' });
  assert.equal(exitCodeFor([c('pass'), c('skip')]), 0);
  assert.equal(exitCodeFor([c('pass'), c('warn')]), 1);
  assert.equal(exitCodeFor([c('warn'), c('fail'), c('pass')]), 2);
});

function probe(rec: StreamRecording, baseUrl: string): ProbeResult {
  const hops = identifyHops(rec.head.headers);
  const metrics = computeMetrics(rec);
  return { name: 'chat', baseUrl, probeMode: false, recording: rec, tokens: tokenArrivals(rec), metrics, hops, sluiceHop: null, checks: [checkBuffering(rec, metrics, hops)] };
}

test('compare: a failure at the public URL only is put on the hops that only it shows', () => {
  const nginxHeaders: Array<[string, string]> = [['Server', 'nginx/1.22.1'], ['Content-Type', 'text/event-stream']];
  const pub = probe(recording([{ at: 900, tokens: 16, bytes: 4096 }, { at: 1700, tokens: 16, bytes: 4096 }, { at: 2000, tokens: 8 }], { headers: nginxHeaders }), 'https://api.example/v1');
  const direct = probe(recording(every(40, 50), { headers: [['server', 'uvicorn'], ['Content-Type', 'text/event-stream']] }), 'http://10.0.0.5:8000/v1');
  const c = compareProbes(pub, direct);
  assert.equal(c.check.status, 'fail');
  assert.deepEqual(c.onlyA, ['nginx/1.22.1']);
  assert.match(c.check.summary, /between http:\/\/10\.0\.0\.5:8000\/v1 and https:\/\/api\.example\/v1 \(nginx\/1\.22\.1\)/);
  const same = compareProbes(direct, direct);
  assert.equal(same.check.status, 'pass');
});

test('base URL: trailing slashes and endpoint paths are trimmed; other schemes are refused', () => {
  assert.equal(normalizeBaseUrl('http://h:8000/v1/').href, 'http://h:8000/v1');
  assert.equal(normalizeBaseUrl('https://h/openai/v1/chat/completions').href, 'https://h/openai/v1');
  assert.throws(() => normalizeBaseUrl('localhost:8000'), /not a URL|only http/);
});

test('renderers: text with a timeline strip, JSON without buffers, HTML with an SVG per probe', () => {
  const p = probe(recording(every(20, 50)), 'http://127.0.0.1:1/v1');
  const report: DoctorReport = {
    url: p.baseUrl,
    model: 'm',
    target: 'other',
    startedAt: '2026-01-01T00:00:00.000Z',
    probes: [p],
    idle: null,
    compare: null,
    checks: p.checks,
    status: worstStatus(p.checks),
    exitCode: exitCodeFor(p.checks),
  };
  const text = renderText(report, { color: false });
  assert.match(text, /arrivals \|[▁ ]+\| /);
  assert.match(text, /PASS {2}0 failures, 0 warnings \(exit 0\)/);
  assert.match(renderText(report, { color: true }), /\x1b\[32m/);
  const json = JSON.parse(JSON.stringify(reportToJson(report))) as { probes: Array<{ timeline: { tokens: unknown[] } }> };
  assert.equal(json.probes[0]?.timeline.tokens.length, 20);
  const html = renderHtml(report);
  assert.equal(html.match(/<svg /g)?.length, 1);
  assert.doesNotMatch(html, /<script/);
});
