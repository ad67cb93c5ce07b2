import type { StreamRecording } from './recording.ts';
import type { StreamMetrics } from './stream-metrics.ts';

/**
 * Sluice's hop report, read by the doctor (issue 18). The doctor sends `X-Sluice-Hop-Report: 1` to a Sluice target;
 * Sluice ends the stream with one comment, `: sluice-hop {…}`, saying how its upstream's stream arrived at it
 * (src/generation/hop-report.ts writes it). With it the doctor sees both sides of Sluice: what arrives at the client
 * and what arrived at Sluice, so a buffering hop behind Sluice is named as such instead of Sluice.
 */

/** The request header that asks for the report, and the comment's prefix (the gateway's wire, kept in step). */
export const HOP_REPORT_REQUEST: readonly [string, string] = ['X-Sluice-Hop-Report', '1'];
export const HOP_REPORT_PREFIX = 'sluice-hop ';

export interface SluiceHop {
  /** The upstream's name in Sluice's configuration (what `/ready` shows). */
  upstream: string | null;
  /** The upstream's `Server` and `Via`, as Sluice received them (sanitized by Sluice). */
  server: string | null;
  via: string | null;
  /** Since the request arrived at Sluice: the upstream request left, its head arrived, its first event, last read. */
  dispatchMs: number | null;
  headersMs: number | null;
  firstEventMs: number | null;
  lastReadMs: number | null;
  reads: number;
  events: number;
  eventsPerRead: number | null;
  maxEventsPerRead: number;
  gapP50Ms: number | null;
  gapP99Ms: number | null;
  burstBytesMax: number;
  /** Sluice judged its upstream's stream buffered, and why. */
  buffered: boolean;
  reason: string | null;
}

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const str = (v: unknown, max = 200): string | null => (typeof v === 'string' ? v.slice(0, max) : null);

/** The hop report of a recording, or null when none arrived (not Sluice, an older Sluice, or the stream failed). */
export function readSluiceHop(rec: StreamRecording): SluiceHop | null {
  const ev = rec.events.find((e) => e.kind === 'report');
  if (ev === undefined) return null;
  let j: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(ev.data.slice(HOP_REPORT_PREFIX.length));
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return null;
    j = parsed as Record<string, unknown>;
  } catch {
    return null;
  }
  if (j['v'] !== 1) return null;
  return {
    upstream: str(j['upstream']),
    server: str(j['server']),
    via: str(j['via']),
    dispatchMs: num(j['dispatch_ms']),
    headersMs: num(j['headers_ms']),
    firstEventMs: num(j['first_event_ms']),
    lastReadMs: num(j['last_read_ms']),
    reads: num(j['reads']) ?? 0,
    events: num(j['events']) ?? 0,
    eventsPerRead: num(j['events_per_read']),
    maxEventsPerRead: num(j['max_events_per_read']) ?? 0,
    gapP50Ms: num(j['gap_p50_ms']),
    gapP99Ms: num(j['gap_p99_ms']),
    burstBytesMax: num(j['burst_bytes_max']) ?? 0,
    buffered: j['buffered'] === true,
    reason: str(j['reason']),
  };
}

/** Which side of Sluice a delay or a burst comes from. */
export type Side = 'client-side' | 'engine-side';

export const SIDE_NAMES: Readonly<Record<Side, string>> = {
  'client-side': 'between the client and Sluice',
  'engine-side': 'between Sluice and the engine',
};

export interface HopSplit {
  /** Time to first token as the doctor saw it, and the part spent behind Sluice (the engine included). */
  ttftMs: number | null;
  engineSideMs: number | null;
  clientSideMs: number | null;
  /** Events per read at Sluice's upstream side, tokens per read at the client. */
  upstreamPerRead: number | null;
  clientPerRead: number | null;
  /** Where the bursts the client sees come from, when it sees bursts (null: it does not). */
  burstsFrom: Side | null;
}

/**
 * Splits what the doctor measured at the client between the two sides of Sluice. Time to first token: Sluice's own
 * first upstream event (since the request reached it) is the engine side, engine included; the rest of what the
 * client waited is the client side (connecting, the hops in front of Sluice, Sluice itself). Bursts: when Sluice
 * already received the stream in bursts they come from behind it; when it received one event per read and the client
 * gets bursts, they are added in front of it.
 */
export function splitHops(hop: SluiceHop, metrics: StreamMetrics, clientBursty: boolean): HopSplit {
  const ttft = metrics.ttftMs;
  const engine = hop.firstEventMs;
  return {
    ttftMs: ttft,
    engineSideMs: engine,
    clientSideMs: ttft === null || engine === null ? null : Math.max(0, ttft - engine),
    upstreamPerRead: hop.eventsPerRead,
    clientPerRead: metrics.tokensPerDelivery,
    burstsFrom: !clientBursty ? (hop.buffered ? 'engine-side' : null) : hop.buffered ? 'engine-side' : 'client-side',
  };
}

/** The fix for a buffering hop behind Sluice, by what its `Server` says. */
export function engineSideFix(hop: SluiceHop): string {
  const where = `the hop between Sluice and its upstream ${hop.upstream ?? ''}`.trim();
  if (hop.server !== null && /nginx|openresty/i.test(hop.server)) {
    return `${where} is nginx (Server: ${hop.server}): set \`proxy_buffering off;\` with \`proxy_http_version 1.1;\` in the location that proxies the engine (docs/proxies/nginx.md), or point Sluice's upstream at the engine directly`;
  }
  return `${where} buffers the stream${hop.server !== null ? ` (Server: ${hop.server})` : ''}: make it flush every write (proxy buffering off, no compression, TCP_NODELAY), or point Sluice's upstream at the engine directly`;
}
