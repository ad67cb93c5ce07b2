/**
 * How an upstream's stream arrives at Sluice: events per read, gaps between reads, bytes per burst (issue 18). A hop
 * between Sluice and the engine that buffers (nginx's `proxy_buffering`, a proxy that corks or flushes on a timer)
 * shows here as many events per read with long gaps between the reads, or reads in quick bursts (gap p50 near zero)
 * separated by a flush period (gap p99). Without this, the doctor can only see the client's side of Sluice and blames
 * Sluice for what arrived at it already buffered.
 *
 * Cheap enough to leave on: one `ArrivalTrace` per attached upstream body, and per read a handful of integer
 * operations and a bucket search over a dozen bounds (no allocation, no per-byte work). Per upstream, finished traces
 * are folded into fixed histograms (a bounded sketch: a few dozen counters, never arrays of samples).
 */

/** Upper bounds of the gap buckets, ms (the last bucket is everything above). */
export const GAP_BOUNDS_MS: readonly number[] = [1, 3, 10, 25, 50, 100, 200, 400, 800, 1600, 3200];
/** Upper bounds of the events-per-read buckets. */
export const EVENTS_BOUNDS: readonly number[] = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64];
/** Upper bounds of the bytes-per-burst buckets. */
export const BYTES_BOUNDS: readonly number[] = [256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536];

/** Reads closer together than this are one burst (the doctor groups a client's reads the same way). */
export const BURST_MERGE_MS = 3;

/** A stream needs this many events before its arrival pattern means anything. */
const MIN_EVENTS = 8;
/** Signature A: at least this many events per read on average, with the median gap between reads at least … */
const MANY_PER_READ = 3;
const LONG_GAP_MS = 50;
/** Signature B: the median gap at most `NEAR_ZERO_MS` (bursts split over reads) and the p99 gap at least a flush. */
const NEAR_ZERO_MS = BURST_MERGE_MS;
const FLUSH_GAP_MS = 100;

/** Index of the bucket for `v` (first bound ≥ v; the overflow bucket past the last). */
function bucket(bounds: readonly number[], v: number): number {
  let i = 0;
  const n = bounds.length;
  while (i < n && v > (bounds[i] as number)) i++;
  return i;
}

function inc(counts: Uint32Array, i: number): void {
  counts[i] = (counts[i] as number) + 1;
}

/**
 * The value at quantile `q` of a histogram: the upper bound of the bucket it falls in (the overflow bucket: `max`).
 * null when the histogram is empty. The histogram is the `bounds.length + 1` counts of `counts` from `at`.
 */
export function quantile(counts: Uint32Array, bounds: readonly number[], q: number, max: number, at = 0): number | null {
  const n = bounds.length + 1;
  let total = 0;
  for (let i = 0; i < n; i++) total += counts[at + i] as number;
  if (total === 0) return null;
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (let i = 0; i < n; i++) {
    seen += counts[at + i] as number;
    if (seen >= rank) return i < bounds.length ? Math.min(bounds[i] as number, max) : max;
  }
  return max;
}

/** The same figures for one stream or for every stream of an upstream. */
export interface ArrivalSummary {
  reads: number;
  events: number;
  bytes: number;
  /** Mean events per read that carried bytes. */
  eventsPerRead: number | null;
  maxEventsPerRead: number;
  /** Gaps between reads after the first one, ms (bucket upper bounds). */
  gapP50Ms: number | null;
  gapP99Ms: number | null;
  maxGapMs: number;
  bursts: number;
  /** Bytes per burst (reads less than 3 ms apart), bucket upper bounds. */
  burstBytesP50: number | null;
  burstBytesMax: number;
}

const GAPS_AT = 0;
const PER_READ_AT = GAP_BOUNDS_MS.length + 1;
const BURST_AT = PER_READ_AT + EVENTS_BOUNDS.length + 1;
const COUNTS = BURST_AT + BYTES_BOUNDS.length + 1;

/**
 * Histograms and counters shared by a trace and an upstream's aggregate. The three histograms share one array (gaps,
 * then events per read, then bytes per burst): a read touches one backing store, and a stream holds one.
 */
class Sketch {
  readonly counts = new Uint32Array(COUNTS);
  reads = 0;
  events = 0;
  bytes = 0;
  bursts = 0;
  maxEventsPerRead = 0;
  maxGapMs = 0;
  maxBurstBytes = 0;

  summary(): ArrivalSummary {
    return {
      reads: this.reads,
      events: this.events,
      bytes: this.bytes,
      eventsPerRead: this.reads === 0 ? null : Math.round((this.events / this.reads) * 100) / 100,
      maxEventsPerRead: this.maxEventsPerRead,
      gapP50Ms: quantile(this.counts, GAP_BOUNDS_MS, 0.5, Math.round(this.maxGapMs), GAPS_AT),
      gapP99Ms: quantile(this.counts, GAP_BOUNDS_MS, 0.99, Math.round(this.maxGapMs), GAPS_AT),
      maxGapMs: Math.round(this.maxGapMs),
      bursts: this.bursts,
      burstBytesP50: quantile(this.counts, BYTES_BOUNDS, 0.5, this.maxBurstBytes, BURST_AT),
      burstBytesMax: this.maxBurstBytes,
    };
  }

  add(o: Sketch): void {
    const c = this.counts;
    for (let i = 0; i < COUNTS; i++) c[i] = (c[i] as number) + (o.counts[i] as number);
    this.reads += o.reads;
    this.events += o.events;
    this.bytes += o.bytes;
    this.bursts += o.bursts;
    this.maxEventsPerRead = Math.max(this.maxEventsPerRead, o.maxEventsPerRead);
    this.maxGapMs = Math.max(this.maxGapMs, o.maxGapMs);
    this.maxBurstBytes = Math.max(this.maxBurstBytes, o.maxBurstBytes);
  }
}

/** Whether a stream's arrival shows a buffering hop, and in words why. */
export interface BufferingVerdict {
  buffered: boolean;
  /** e.g. "27 events per read, reads 400 ms apart (p50), bursts of 4096 bytes"; null when not buffered. */
  reason: string | null;
}

/** Judges one stream's summary (docs/metrics.md, "Upstream arrival"). */
export function bufferingVerdict(s: ArrivalSummary): BufferingVerdict {
  if (s.events < MIN_EVENTS || s.eventsPerRead === null || s.gapP50Ms === null || s.gapP99Ms === null) return { buffered: false, reason: null };
  const perBurst = s.bursts > 0 ? s.events / s.bursts : 0;
  const bursty = `bursts of ${s.burstBytesP50 ?? 0} bytes (p50), up to ${s.burstBytesMax}`;
  if (s.eventsPerRead >= MANY_PER_READ && s.gapP50Ms >= LONG_GAP_MS) {
    return { buffered: true, reason: `${s.eventsPerRead} events per read, reads ${s.gapP50Ms} ms apart (p50), ${bursty}` };
  }
  if (s.gapP50Ms <= NEAR_ZERO_MS && s.gapP99Ms >= FLUSH_GAP_MS && perBurst >= MANY_PER_READ) {
    return { buffered: true, reason: `reads in quick bursts of ${perBurst.toFixed(1)} events (gap p50 <= ${s.gapP50Ms} ms) every ~${s.gapP99Ms} ms (gap p99), ${bursty}` };
  }
  return { buffered: false, reason: null };
}

/**
 * One upstream body as Sluice reads it. The relay calls `read` once per upstream read (before its events) and adds
 * the read's events to `events`; the generation stamps the upstream's response head. Times are `performance.now()`.
 */
export class ArrivalTrace {
  readonly #s = new Sketch();
  /** When the upstream request left, and when its response head arrived. */
  readonly dispatchedAt: number;
  headersAt = -1;
  firstReadAt = -1;
  /** The first read that carried an event (known once the next read starts or the trace settles). */
  firstEventAt = -1;
  /** Events of every read so far: the relay adds a read's events as it parses or passes them. */
  events = 0;
  /** The upstream's `Server` and `Via`, sanitized (see `headerText`). */
  server: string | null = null;
  via: string | null = null;
  #lastReadAt = -1;
  /** Events counted when the current read started. */
  #eventsAtRead = 0;
  #burstBytes = 0;
  #open = false;

  constructor(dispatchedAt: number) {
    this.dispatchedAt = dispatchedAt;
  }

  /** One upstream read of `bytes` at `now`: closes the previous read's accounting. Runs per read: no allocation. */
  read(now: number, bytes: number): void {
    const s = this.#s;
    if (this.#open) this.#closeRead();
    if (this.#lastReadAt < 0) this.firstReadAt = now;
    else {
      const gap = now - this.#lastReadAt;
      inc(s.counts, GAPS_AT + bucket(GAP_BOUNDS_MS, gap));
      if (gap > s.maxGapMs) s.maxGapMs = gap;
      if (gap >= BURST_MERGE_MS) this.#closeBurst();
    }
    this.#lastReadAt = now;
    this.#open = true;
    s.reads++;
    s.bytes += bytes;
    this.#burstBytes += bytes;
  }

  #closeRead(): void {
    const s = this.#s;
    const n = this.events - this.#eventsAtRead;
    this.#eventsAtRead = this.events;
    if (n > 0 && this.firstEventAt < 0) this.firstEventAt = this.#lastReadAt;
    inc(s.counts, PER_READ_AT + bucket(EVENTS_BOUNDS, n));
    if (n > s.maxEventsPerRead) s.maxEventsPerRead = n;
    this.#open = false;
  }

  #closeBurst(): void {
    const s = this.#s;
    const b = this.#burstBytes;
    if (b === 0) return;
    inc(s.counts, BURST_AT + bucket(BYTES_BOUNDS, b));
    if (b > s.maxBurstBytes) s.maxBurstBytes = b;
    s.bursts++;
    this.#burstBytes = 0;
  }

  /** When the last read arrived; -1 before any. */
  get lastReadAt(): number {
    return this.#lastReadAt;
  }

  /** Closes the last read and burst (idempotent; a later `read` goes on counting). */
  settle(): ArrivalSummary {
    if (this.#open) this.#closeRead();
    this.#closeBurst();
    this.#s.events = this.events;
    return this.#s.summary();
  }

  /** @internal the histograms, for an upstream's aggregate. */
  get sketch(): Sketch {
    return this.#s;
  }
}

/** How often an upstream's buffering is logged at most. */
export const WARN_INTERVAL_MS = 5 * 60_000;

/** What `/ready` shows of an upstream's arrivals. */
export interface ArrivalDetail extends ArrivalSummary {
  streams: number;
  buffered_streams: number;
  /** The last stream that showed the pattern was this upstream's latest judged stream. */
  buffering: boolean;
  /** The last buffered stream: when, why, and the upstream's `Server` then. */
  last_buffered: { at: string; reason: string; server: string | null } | null;
}

/**
 * Every stream of one upstream, folded: the histograms of all reads, how many streams were buffered, the latest
 * verdict, and the rate limit of the log warning.
 */
export class UpstreamArrivals {
  readonly #s = new Sketch();
  streams = 0;
  bufferedStreams = 0;
  /** The latest stream with enough events to judge was buffered. */
  buffering = false;
  #last: ArrivalDetail['last_buffered'] = null;
  #warnedAt = -Infinity;

  /**
   * Folds a finished stream in. Returns its verdict, with `warn` true when a log line is due (at most once per
   * `WARN_INTERVAL_MS` per upstream).
   */
  add(trace: ArrivalTrace, nowMs: number = Date.now()): BufferingVerdict & { summary: ArrivalSummary; warn: boolean } {
    const summary = trace.settle();
    this.#s.add(trace.sketch);
    this.streams++;
    const verdict = bufferingVerdict(summary);
    let warn = false;
    if (summary.events >= MIN_EVENTS) this.buffering = verdict.buffered;
    if (verdict.buffered) {
      this.bufferedStreams++;
      this.#last = { at: new Date(nowMs).toISOString(), reason: verdict.reason as string, server: trace.server };
      if (nowMs - this.#warnedAt >= WARN_INTERVAL_MS) {
        this.#warnedAt = nowMs;
        warn = true;
      }
    }
    return { ...verdict, summary, warn };
  }

  /** Mean events per read over every stream, null before any read. */
  mean(): number | null {
    const s = this.#s;
    return s.reads === 0 ? null : s.events / s.reads;
  }

  detail(): ArrivalDetail {
    return { streams: this.streams, buffered_streams: this.bufferedStreams, buffering: this.buffering, last_buffered: this.#last, ...this.#s.summary() };
  }
}

const MAX_HEADER_TEXT = 80;

/**
 * A header value an upstream chose, made safe to echo (hop report, logs, `/ready`): printable ASCII only (anything
 * else becomes `?`), at most 80 characters. A hostile upstream's `Server` cannot forge lines or fill a report.
 */
export function headerText(value: string | string[] | undefined): string | null {
  if (value === undefined) return null;
  const v = Array.isArray(value) ? value.join(', ') : value;
  const clean = v.replace(/[^\x20-\x7e]/g, '?').trim();
  if (clean === '') return null;
  return clean.length > MAX_HEADER_TEXT ? `${clean.slice(0, MAX_HEADER_TEXT - 3)}...` : clean;
}
