import { check, type Check } from '../check.ts';
import { describeHops, hasHop, type Hop } from '../hops.ts';
import { headerValue, type StreamRecording } from '../recording.ts';

/**
 * The response headers that decide whether hops leave a stream alone. Missing protection on a stream that works is a
 * warning; whether the stream actually streams is the buffering check's verdict.
 */

export function checkHeaders(rec: StreamRecording, hops: readonly Hop[], streams: boolean): Check[] {
  const h = rec.head.headers;
  const probe = rec.endpoint;
  const out: Check[] = [];
  const mk = (id: string, title: string, status: Check['status'], summary: string, fix: string | null = null, evidence: string[] = []): void => {
    out.push(check({ id: `headers.${id}`, group: 'headers', probe, title, status, summary, fix, evidence }));
  };

  const ct = headerValue(h, 'content-type');
  if (ct !== null && /^text\/event-stream\b/i.test(ct.trim())) mk('content-type', 'Content-Type', 'pass', `Content-Type: ${ct}`);
  else {
    mk(
      'content-type',
      'Content-Type',
      'warn',
      `Content-Type is ${ct === null ? 'missing' : `"${ct}"`}, not text/event-stream`,
      'send `Content-Type: text/event-stream; charset=utf-8`: proxies decide buffering and compression by it, and EventSource refuses anything else',
    );
  }

  const cc = headerValue(h, 'cache-control');
  const noCache = cc !== null && /no-cache|no-store/i.test(cc);
  const noTransform = cc !== null && /no-transform/i.test(cc);
  const ccFix = 'send `Cache-Control: no-cache, no-transform` (Sluice does): `no-transform` tells CDNs and proxies not to compress or rewrite the stream';
  if (noCache && noTransform) mk('cache-control', 'Cache-Control', 'pass', `Cache-Control: ${cc}`);
  else if (noCache) mk('cache-control', 'Cache-Control', 'warn', `Cache-Control: ${cc} — without no-transform a CDN may compress or rewrite the stream`, ccFix);
  else mk('cache-control', 'Cache-Control', 'warn', cc === null ? 'no Cache-Control: a caching hop may hold or store the stream' : `Cache-Control: ${cc} does not forbid caching`, ccFix);

  const xab = headerValue(h, 'x-accel-buffering');
  const nginx = hasHop(hops, 'nginx');
  const xabFix = 'send `X-Accel-Buffering: no` on streams (Sluice does): it turns nginx\'s response buffering off for this response even when `proxy_buffering` is on';
  if (xab !== null && xab.trim().toLowerCase() === 'no') mk('x-accel-buffering', 'X-Accel-Buffering', 'pass', 'X-Accel-Buffering: no');
  else if (xab !== null) mk('x-accel-buffering', 'X-Accel-Buffering', 'warn', `X-Accel-Buffering: ${xab} asks nginx to buffer the stream`, xabFix);
  else if (nginx && streams) {
    mk('x-accel-buffering', 'X-Accel-Buffering', 'pass', 'not visible, as expected behind nginx (it consumes the header); the stream passes nginx unbuffered', null, [nginx.evidence]);
  } else if (nginx) {
    mk('x-accel-buffering', 'X-Accel-Buffering', 'warn', 'not visible behind nginx (it consumes the header), and nginx buffers this stream', xabFix, [nginx.evidence]);
  } else {
    mk('x-accel-buffering', 'X-Accel-Buffering', 'warn', 'missing: an nginx put in front of this endpoint would buffer the stream', xabFix);
  }

  const ce = headerValue(h, 'content-encoding');
  if (ce === null || /^identity$/i.test(ce.trim())) mk('content-encoding', 'Content-Encoding', 'pass', 'not compressed');
  else {
    mk(
      'content-encoding',
      'Content-Encoding',
      'warn',
      `Content-Encoding: ${ce} on an event stream: every hop must flush its compressor after each event, or tokens wait in it`,
      'turn compression off for text/event-stream (and send `Cache-Control: no-transform`)',
    );
  }

  const cl = headerValue(h, 'content-length');
  if (cl === null) mk('content-length', 'Content-Length', 'pass', 'no Content-Length (the body is streamed)');
  else mk('content-length', 'Content-Length', 'warn', `Content-Length: ${cl} on a stream: some hop held the whole answer to count it`, 'never send Content-Length on a stream; find the hop that buffers whole responses');

  const te = headerValue(h, 'transfer-encoding');
  const version = `HTTP/${rec.head.httpVersion}`;
  if (rec.head.httpVersion.startsWith('2')) {
    mk('http-version', 'HTTP version', 'pass', `${version}: DATA frames, and END_STREAM marks the end (a cut stream is a reset, not an end)`);
  } else if (rec.head.httpVersion === '1.0') {
    mk('http-version', 'HTTP version', 'warn', `${version}: no chunked coding, so the end of the stream is the connection close and a cut stream looks complete`, 'serve HTTP/1.1 (or HTTP/2) to clients; for nginx also `proxy_http_version 1.1` upstream');
  } else if (te !== null && /chunked/i.test(te)) {
    mk('http-version', 'HTTP version', 'pass', `${version}, Transfer-Encoding: ${te}`);
  } else if (cl === null) {
    mk('http-version', 'HTTP version', 'warn', `${version} without chunked coding: the body ends at connection close, so truncation cannot be told from the end`, 'use chunked transfer coding for streams');
  } else {
    mk('http-version', 'HTTP version', 'pass', version);
  }

  const evidence = hops.map((hop) => `${hop.evidence}${hop.idleLimitS !== null ? ` — default idle limit ${hop.idleLimitS} s` : ''}`);
  mk('hops', 'Hops named by the headers', 'pass', describeHops(hops), null, evidence);
  return out;
}
