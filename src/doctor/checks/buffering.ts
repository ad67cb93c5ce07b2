import { check, type Check } from '../check.ts';
import { hasHop, describeHops, type Hop } from '../hops.ts';
import { median } from '../percentiles.ts';
import { headerValue, type StreamRecording } from '../recording.ts';
import type { Delivery, StreamMetrics } from '../stream-metrics.ts';
import { engineSideFix, SIDE_NAMES, type SluiceHop } from '../sluice-hop.ts';

/**
 * Does the endpoint really stream? Tokens that a hop holds back arrive together: many events per socket read, long
 * gaps between these bursts, the first token late in the stream. The shape of the bursts names the likely hop: bursts
 * of 4 or 8 KiB are nginx's proxy buffers, a steady ~200 ms rhythm is TCP corking (HAProxy without
 * `option http-no-delay`), everything at the end with Content-Encoding is a compressor that is never flushed.
 */

/** Fewer tokens than this cannot show a pattern. */
export const MIN_TOKENS = 5;

export interface Suspect {
  hop: string;
  reason: string;
  fix: string;
}

export interface BufferingShape {
  /** All tokens arrived in one or two reads, or the first one arrived at the very end. */
  held: boolean;
  /** Tokens arrived in bursts separated by long gaps. */
  bursts: boolean;
  /** Probe mode: the hops added a large delay to most tokens. */
  delayed: boolean;
  /** Mild coalescing: worth a warning. */
  coalesced: boolean;
  tokensPerDelivery: number;
  medianGapMs: number | null;
  /** Regular flush interval between deliveries, when the gaps are steady. */
  intervalMs: number | null;
}

/** Classifies the arrival pattern. `lagMs` is how late this process itself ran (p99): delay below it is noise. */
export function bufferingShape(metrics: StreamMetrics, lagMs = 0): BufferingShape {
  const n = metrics.tokenEvents;
  const dels = metrics.deliveries;
  const perDelivery = dels.length > 0 ? n / dels.length : 0;
  const inBursts = dels.filter((d) => d.tokens >= 3).reduce((s, d) => s + d.tokens, 0);
  const gaps = dels.slice(1).map((d) => d.gapBefore);
  const medGap = median(gaps);
  const lastAt = dels[dels.length - 1]?.end ?? 0;
  const lateFirst = metrics.ttftMs !== null && lastAt > 0 && metrics.ttftMs / lastAt >= 0.9;
  const held = (dels.length === 1 && n >= MIN_TOKENS) || (n >= 8 && (dels.length <= 2 || (lateFirst && perDelivery >= 4)));
  const bursts = n >= 8 && perDelivery >= 2.5 && inBursts / n >= 0.5 && (medGap ?? 0) >= 80;
  const p = metrics.probe;
  const delayed = p !== null && p.delay.p90 - lagMs >= 150 && perDelivery >= 1.5;
  const coalesced = (p !== null && p.delay.p90 - lagMs >= 75) || (perDelivery >= 1.5 && (medGap ?? 0) >= 40);
  return { held, bursts, delayed, coalesced, tokensPerDelivery: perDelivery, medianGapMs: medGap, intervalMs: steadyInterval(gaps) };
}

/** The gap between deliveries when it is steady: at least 3 gaps, 60% of them within ±35% of the median. */
function steadyInterval(gaps: readonly number[]): number | null {
  const m = median(gaps);
  if (gaps.length < 3 || m === null || m <= 0) return null;
  const near = gaps.filter((g) => g >= 0.65 * m && g <= 1.35 * m).length;
  return near / gaps.length >= 0.6 ? m : null;
}

const PAGE = 4096;

/** A burst whose size is close to a multiple of 4 KiB: a proxy buffer filled up and was sent. */
function pageSized(d: Delivery): boolean {
  return [d.bodyBytes, d.wireBytes].some((b) => {
    const k = Math.round(b / PAGE);
    return k >= 1 && k <= 16 && Math.abs(b - k * PAGE) <= 0.08 * k * PAGE;
  });
}

const NGINX_FIX =
  'in the nginx location that proxies the API set `proxy_buffering off;` with `proxy_http_version 1.1;` ' +
  '(or make the upstream send `X-Accel-Buffering: no`, as Sluice does) — see docs/proxies/nginx.md';

/** Hops that could hold the stream, most likely first, from the burst shape and the headers. */
export function bufferingSuspects(rec: StreamRecording, metrics: StreamMetrics, shape: BufferingShape, hops: readonly Hop[]): Suspect[] {
  const out: Suspect[] = [];
  const encoding = headerValue(rec.head.headers, 'content-encoding');
  const nginx = hasHop(hops, 'nginx');
  const caddy = hasHop(hops, 'caddy');
  if (encoding !== null && !/^identity$/i.test(encoding.trim())) {
    if (caddy) {
      out.push({
        hop: `Caddy (${caddy.evidence})`,
        reason: `the stream is compressed (Content-Encoding: ${encoding}) and Caddy's encoder holds the bytes until it fills or the stream ends`,
        fix: 'do not compress event streams: keep `encode` out of the API route (`handle /v1/* { reverse_proxy … }` without `encode`) — see docs/proxies/caddy.md',
      });
    } else if (nginx) {
      out.push({
        hop: `nginx (${nginx.evidence})`,
        reason: `the stream is compressed (Content-Encoding: ${encoding}); nginx's gzip filter holds bytes in its buffers`,
        fix: '`gzip off;` in the location that proxies the API (or remove text/event-stream from `gzip_types`) — see docs/proxies/nginx.md',
      });
    } else {
      out.push({
        hop: 'the hop that adds Content-Encoding',
        reason: `the stream is compressed (Content-Encoding: ${encoding}) and the compressor holds bytes until its buffer fills or the stream ends`,
        fix: 'turn off compression for text/event-stream on that hop (CDNs and proxies usually have a per-path or per-type switch); have the origin send `Cache-Control: no-cache, no-transform`',
      });
    }
  }
  const bursts = metrics.deliveries.filter((d) => d.tokens >= 3);
  const sized = bursts.slice(0, -1).filter(pageSized).length;
  const pageBursts = bursts.length >= 2 && sized >= Math.max(1, Math.ceil((bursts.length - 1) / 2));
  if (nginx || pageBursts) {
    out.push({
      hop: nginx ? `nginx (${nginx.evidence})` : 'a proxy with 4/8 KiB buffers (nginx-style `proxy_buffering`)',
      reason: pageBursts
        ? `bursts arrive in ${PAGE / 1024} KiB pieces, the size of nginx's proxy buffers (proxy_buffer_size / proxy_buffers: one memory page)`
        : 'nginx buffers proxied responses by default (`proxy_buffering on`) unless the upstream sends `X-Accel-Buffering: no`',
      fix: NGINX_FIX,
    });
  }
  if (shape.intervalMs !== null && shape.intervalMs >= 150 && shape.intervalMs <= 400) {
    out.push({
      hop: hasHop(hops, 'haproxy')?.label ?? 'a hop that corks small writes (HAProxy by default)',
      reason: `bursts come every ~${Math.round(shape.intervalMs)} ms, the 200 ms ceiling of TCP corking (MSG_MORE) or Nagle with delayed ACKs: HAProxy merges small chunks this way unless told otherwise`,
      fix: 'HAProxy: add `option http-no-delay` to the defaults or the backend that serves the stream — see docs/proxies/haproxy.md; other proxies: enable TCP_NODELAY / disable write coalescing',
    });
  } else if (shape.intervalMs !== null) {
    out.push({
      hop: 'a hop that flushes on a timer',
      reason: `bursts come every ~${Math.round(shape.intervalMs)} ms, a fixed flush interval`,
      fix: 'find the hop with a flush interval or response buffer (Caddy `flush_interval`, an ingress or service-mesh buffer, a framework middleware) and make it flush every write; for Caddy `flush_interval -1`',
    });
  }
  const length = headerValue(rec.head.headers, 'content-length');
  if (length !== null) {
    out.push({
      hop: 'a hop that buffers the whole response',
      reason: `the response carries Content-Length: ${length}, which only a hop holding the entire answer can know`,
      fix: 'turn on response streaming on that hop (API gateways, serverless platforms, WAFs and some CDNs buffer by default) or bypass it for /v1/*',
    });
  }
  if (out.length === 0) {
    out.push({
      hop: 'an unidentified hop',
      reason: `no hop that explains the pattern announced itself (${describeHops(hops)})`,
      fix: 'run `sluice doctor <this URL> --compare <a URL closer to the engine>` to find the hop that adds the delay',
    });
  }
  return out;
}

/** The buffering check for one probe. */
export function checkBuffering(rec: StreamRecording, metrics: StreamMetrics, hops: readonly Hop[], sluiceHop: SluiceHop | null = null): Check {
  const base = { id: 'buffering', group: 'buffering', probe: rec.endpoint, title: 'Tokens stream as they are generated' } as const;
  const n = metrics.tokenEvents;
  if (n < MIN_TOKENS) {
    return check({
      ...base,
      status: 'warn',
      summary: `only ${n} token event${n === 1 ? '' : 's'} arrived: too few to see whether the endpoint streams`,
      evidence: [`${metrics.deliveries.length} read(s) carried tokens`],
      fix: 'ask for a longer answer, e.g. `--body \'{"max_tokens":200}\'`',
    });
  }
  const shape = bufferingShape(metrics, rec.loopLag.p99);
  const evidence = bufferingEvidence(rec, metrics, shape);
  if (shape.held || shape.bursts || shape.delayed) {
    const suspects = sided(bufferingSuspects(rec, metrics, shape, hops), sluiceHop, evidence);
    const top = suspects[0] as Suspect;
    for (const s of suspects) evidence.push(`suspect: ${s.hop} — ${s.reason}`);
    const what = shape.held
      ? `the stream is held back and delivered at the end (${n} tokens in ${metrics.deliveries.length} read${metrics.deliveries.length === 1 ? '' : 's'})`
      : shape.bursts
        ? `tokens arrive in bursts of ~${shape.tokensPerDelivery.toFixed(1)} with ~${Math.round(shape.medianGapMs ?? 0)} ms between them`
        : `the hops add ${Math.round(metrics.probe?.delay.p50 ?? 0)} ms (p50) / ${Math.round(metrics.probe?.delay.p90 ?? 0)} ms (p90) to each token`;
    return check({ ...base, status: 'fail', summary: `buffering: ${what}; likely ${top.hop}`, evidence, fix: top.fix, hop: top.hop });
  }
  if (shape.coalesced) {
    const suspects = sided(bufferingSuspects(rec, metrics, shape, hops), sluiceHop, evidence);
    const top = suspects[0] as Suspect;
    return check({
      ...base,
      status: 'warn',
      summary: `tokens stream, but some are held back and merged (${shape.tokensPerDelivery.toFixed(1)} per read)`,
      evidence: [...evidence, ...suspects.map((s) => `possible cause: ${s.hop} — ${s.reason}`)],
      fix: top.fix,
    });
  }
  return check({ ...base, status: 'pass', summary: `tokens arrive one by one (${shape.tokensPerDelivery.toFixed(2)} per read)`, evidence });
}

/**
 * With Sluice's hop report the doctor sees both sides of Sluice: a stream Sluice already received in bursts was
 * buffered behind it (that hop goes first, named by the upstream's `Server`); a stream it received event by event was
 * buffered in front of it (the hops the headers name stay, an unidentified one is placed there).
 */
function sided(suspects: Suspect[], hop: SluiceHop | null, evidence: string[]): Suspect[] {
  if (hop === null) return suspects;
  const perRead = hop.eventsPerRead === null ? '—' : hop.eventsPerRead.toFixed(2);
  if (hop.buffered) {
    const name = `${SIDE_NAMES['engine-side']} (upstream ${hop.upstream ?? '?'}${hop.server !== null ? `, Server: ${hop.server}` : ''})`;
    evidence.push(`Sluice's hop report: its upstream's stream already arrived at Sluice in bursts: ${hop.reason ?? `${perRead} events per read`}`);
    const behind: Suspect = { hop: name, reason: `Sluice received the stream already buffered (${hop.reason ?? `${perRead} events per read`}); Sluice passes each read on as it comes`, fix: engineSideFix(hop) };
    return [behind, ...suspects.filter((s) => s.hop !== 'an unidentified hop')];
  }
  if (hop.events >= 8) {
    evidence.push(`Sluice's hop report: its upstream's stream arrived event by event (${perRead} events per read, gap p50 ${hop.gapP50Ms ?? '—'} ms): the bursts are added ${SIDE_NAMES['client-side']}`);
    return suspects.map((s) => (s.hop === 'an unidentified hop' ? { ...s, hop: `a hop ${SIDE_NAMES['client-side']}`, reason: 'Sluice received the stream unbuffered and no hop in front of it announced itself' } : s));
  }
  return suspects;
}

function bufferingEvidence(rec: StreamRecording, metrics: StreamMetrics, shape: BufferingShape): string[] {
  const dels = metrics.deliveries;
  const max = Math.max(...dels.map((d) => d.tokens));
  const ev = [`${metrics.tokenEvents} token events in ${dels.length} read${dels.length === 1 ? '' : 's'} (${shape.tokensPerDelivery.toFixed(2)} per read, up to ${max})`];
  const bursts = dels.filter((d) => d.tokens >= 3);
  if (bursts.length > 0) {
    const list = bursts.slice(0, 8).map((d) => `${d.tokens} tokens/${kib(d.bodyBytes)} at ${Math.round(d.at)} ms`);
    ev.push(`bursts: ${list.join(', ')}${bursts.length > 8 ? ', …' : ''}`);
  }
  if (shape.medianGapMs !== null) ev.push(`median gap between reads with tokens: ${Math.round(shape.medianGapMs)} ms${shape.intervalMs !== null ? ` (steady, ~${Math.round(shape.intervalMs)} ms)` : ''}`);
  const lastAt = dels[dels.length - 1]?.end;
  if (metrics.ttftMs !== null && lastAt !== undefined && lastAt > 0) {
    ev.push(`first token at ${Math.round(metrics.ttftMs)} ms, last at ${Math.round(lastAt)} ms (${Math.round((metrics.ttftMs / lastAt) * 100)}% of the way)`);
  }
  const firstDelivery = dels[0];
  if (firstDelivery && firstDelivery.at - rec.head.at < 2 && rec.head.at > 250) {
    ev.push(`the response headers themselves were held: they arrived at ${Math.round(rec.head.at)} ms, together with the first burst`);
  }
  const p = metrics.probe;
  if (p !== null) {
    ev.push(
      `probe: delay added between the simulator and here per token p50 ${fmt(p.delay.p50)} / p90 ${fmt(p.delay.p90)} / max ${fmt(p.delay.max)} ms` +
        (p.clock === 'offset' ? ' (relative to the fastest token: the clocks differ)' : ''),
    );
  }
  if (metrics.probeRejected !== null) ev.push(metrics.probeRejected);
  if (rec.loopLag.p99 > 20) {
    ev.push(`this machine is busy: the doctor itself ran up to ${Math.round(rec.loopLag.p99)} ms late (p99), so delays below that are noise`);
  }
  return ev;
}

function kib(bytes: number): string {
  return bytes >= 1024 ? `${(bytes / 1024).toFixed(1)} KiB` : `${bytes} B`;
}

function fmt(ms: number): string {
  return ms < 10 ? ms.toFixed(1) : String(Math.round(ms));
}
