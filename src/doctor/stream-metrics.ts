import { percentiles, type Percentiles } from './percentiles.ts';
import type { StreamRecording } from './recording.ts';
import { tokenArrivals, type TokenArrival } from './token-arrivals.ts';

/**
 * Timing numbers of one recorded stream: time to first byte and token, inter-token latency, throughput, how tokens
 * were grouped into socket reads ("deliveries"), and in probe mode the delay every hop added to each token.
 */

/** Reads closer together than this are one delivery: a burst split by the kernel or TLS records. */
export const DELIVERY_MERGE_MS = 3;

export interface Delivery {
  /** Arrival of the first read in the delivery. */
  at: number;
  /** Arrival of its last read. */
  end: number;
  reads: number;
  /** Decoded body bytes of its reads. */
  bodyBytes: number;
  /** Bytes on the wire (chunk framing, compression). */
  wireBytes: number;
  tokens: number;
  /** Time since the previous delivery ended (the first: since the response head). */
  gapBefore: number;
}

export interface ProbeDelay {
  /** 'same': stamps and arrivals share a clock (the delay is absolute); 'offset': the clocks differ (negative
   * delays seen), so delays are relative to the fastest token. */
  clock: 'same' | 'offset';
  delay: Percentiles;
  min: number;
  /** Per token, ms, in arrival order. */
  perToken: number[];
}

export interface StreamMetrics {
  connectMs: number;
  ttfbMs: number;
  headersMs: number;
  ttftMs: number | null;
  /** Until the body ended (or the probe gave up). */
  totalMs: number;
  doneMs: number | null;
  tokenEvents: number;
  /** completion/output tokens from a usage object, when the stream had one. */
  usageTokens: number | null;
  itl: Percentiles | null;
  tokensPerSecond: number | null;
  deliveries: Delivery[];
  tokensPerDelivery: number | null;
  probe: ProbeDelay | null;
  /** Why probe stamps were present but not used, when they were not. */
  probeRejected: string | null;
  heartbeats: number;
  /** Longest silence (no bytes) after the head, ms. */
  longestSilenceMs: number;
}

export interface MetricsOptions {
  /** The inter-token latency the probe asked the simulator for; stamps that do not follow it are not trusted. */
  expectedItlMs?: number | null;
}

/** Computes the metrics of a recording. */
export function computeMetrics(rec: StreamRecording, tokens: TokenArrival[] = tokenArrivals(rec), options: MetricsOptions = {}): StreamMetrics {
  const itls: number[] = [];
  for (let i = 1; i < tokens.length; i++) itls.push((tokens[i] as TokenArrival).at - (tokens[i - 1] as TokenArrival).at);
  const first = tokens[0];
  const last = tokens[tokens.length - 1];
  const span = first && last ? last.at - first.at : 0;
  const grouped = deliveries(rec, tokens);
  const rejected = stampProblem(tokens, options.expectedItlMs ?? null);

  return {
    connectMs: rec.connectedAt,
    ttfbMs: rec.head.firstByteAt,
    headersMs: rec.head.at,
    ttftMs: first?.at ?? null,
    totalMs: rec.end.at,
    doneMs: rec.doneAt,
    tokenEvents: tokens.length,
    usageTokens: usageTokens(rec),
    itl: percentiles(itls),
    tokensPerSecond: tokens.length >= 2 && span > 0 ? ((tokens.length - 1) * 1000) / span : null,
    deliveries: grouped,
    tokensPerDelivery: grouped.length > 0 ? tokens.length / grouped.length : null,
    probe: rejected === null ? probeDelay(rec, tokens) : null,
    probeRejected: rejected,
    heartbeats: rec.events.filter((e) => e.kind === 'comment').length,
    longestSilenceMs: longestSilence(rec),
  };
}

/** Groups the reads that carried tokens into deliveries. */
export function deliveries(rec: StreamRecording, tokens: readonly TokenArrival[]): Delivery[] {
  const perRead = new Map<number, number>();
  for (const t of tokens) perRead.set(t.read, (perRead.get(t.read) ?? 0) + 1);
  const out: Delivery[] = [];
  let prevEnd = rec.head.at;
  for (const [index, count] of [...perRead.entries()].sort((a, b) => a[0] - b[0])) {
    const read = rec.reads[index];
    if (!read) continue;
    const lastDelivery = out[out.length - 1];
    if (lastDelivery && read.at - lastDelivery.end <= DELIVERY_MERGE_MS) {
      lastDelivery.end = read.at;
      lastDelivery.reads++;
      lastDelivery.bodyBytes += read.bodyBytes;
      lastDelivery.wireBytes += read.wireBytes;
      lastDelivery.tokens += count;
      prevEnd = read.at;
      continue;
    }
    out.push({ at: read.at, end: read.at, reads: 1, bodyBytes: read.bodyBytes, wireBytes: read.wireBytes, tokens: count, gapBefore: Math.max(0, read.at - prevEnd) });
    prevEnd = read.at;
  }
  return out;
}

function probeDelay(rec: StreamRecording, tokens: readonly TokenArrival[]): ProbeDelay | null {
  const stamped = tokens.filter((t) => t.stamp !== null);
  if (stamped.length === 0 || stamped.length < tokens.length / 2) return null;
  const raw = stamped.map((t) => rec.startedAt + t.at - (t.stamp as number));
  const min = Math.min(...raw);
  // A stamp from another machine's clock gives negative (or absurd) delays; the differences still hold.
  const clock = min < -2 || min > 60_000 ? 'offset' : 'same';
  const perToken = clock === 'same' ? raw.map((d) => Math.max(0, d)) : raw.map((d) => d - min);
  return { clock, delay: percentiles(perToken) as Percentiles, min, perToken };
}

/**
 * Stamps must be write times: consecutive stamps about `expectedItlMs` apart. Stamps taken all at once (a simulator
 * that renders its tokens ahead of time) would make every hop look slow, so they are refused.
 */
function stampProblem(tokens: readonly TokenArrival[], expectedItlMs: number | null): string | null {
  if (expectedItlMs === null || expectedItlMs <= 0) return null;
  const stamps = tokens.map((t) => t.stamp).filter((s): s is number => s !== null);
  if (stamps.length < 3) return null;
  const gaps = stamps.slice(1).map((s, i) => s - (stamps[i] as number));
  const sorted = [...gaps].sort((a, b) => a - b);
  const med = sorted[Math.floor(sorted.length / 2)] as number;
  if (med >= expectedItlMs / 2) return null;
  return `probe stamps are ${med.toFixed(1)} ms apart, not the ${expectedItlMs} ms asked for: they are not write times, so delays come from arrival times only`;
}

function usageTokens(rec: StreamRecording): number | null {
  for (let i = rec.events.length - 1; i >= 0; i--) {
    const ev = rec.events[i];
    if (!ev || ev.kind !== 'data' || !ev.data.includes('"usage"')) continue;
    try {
      const json = JSON.parse(ev.data) as Record<string, unknown>;
      const usage = (json['usage'] ?? (json['response'] as Record<string, unknown> | undefined)?.['usage']) as Record<string, unknown> | null | undefined;
      const n = usage?.['completion_tokens'] ?? usage?.['output_tokens'];
      if (typeof n === 'number') return n;
    } catch {
      // Not JSON: the SDK checks report it.
    }
  }
  return null;
}

function longestSilence(rec: StreamRecording): number {
  let prev = rec.head.at;
  let longest = 0;
  for (const r of rec.reads) {
    longest = Math.max(longest, r.at - prev);
    prev = r.at;
  }
  return Math.max(longest, rec.end.at - prev);
}
