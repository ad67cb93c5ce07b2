import type { SluiceError } from '../errors.ts';
import type { StreamWriter } from '../relay/writer.ts';
import type { ArrivalTrace } from '../upstream/arrival-stats.ts';
import { bufferingVerdict } from '../upstream/arrival-stats.ts';

/**
 * The hop report (issue 18): a client that sends `X-Sluice-Hop-Report: 1` gets, at the end of a completed stream, one
 * SSE comment line saying what Sluice saw from its upstream for this stream:
 *
 *   : sluice-hop {"v":1,"upstream":"gpu1:8000","server":"nginx/1.22.1",…}
 *
 * `sluice doctor` sends the header and splits the delay it measures into "between the client and Sluice" and "between
 * Sluice and the engine". A comment passes every proxy and every SDK ignores it (both OpenAI SDKs skip comment
 * lines); Sluice writes no `id:` lines by default, so openai-python's crash on a comment after an `id:` line cannot
 * happen. It goes *before* `data: [DONE]` (DESIGN.md: the response ends at once after `[DONE]`, and old SDKs and
 * clients that stop reading at `[DONE]` must lose nothing), and right after a Responses stream's terminal event.
 *
 * What it tells, and what it never does: timings, read and event counts, the upstream's configured name (what
 * `/ready` shows any caller; `host:port` unless `name` is set) and its `Server` and `Via` headers, sanitized and
 * bounded. Never the upstream's URL, credentials or keys. Only a client that may make the request at all (past the
 * gateway's keys) can ask for it.
 */

export const HOP_REPORT_HEADER = 'x-sluice-hop-report';
export const HOP_REPORT_PREFIX = 'sluice-hop ';

/** Whether a request asks for the hop report. */
export function wantsHopReport(value: string | string[] | undefined): boolean {
  return value === '1' || value === 'true';
}

const ms = (v: number): number => Math.round(v * 10) / 10;

/** The report's JSON, times in ms since the request arrived at Sluice (`startedPerf`). */
export function hopReport(trace: ArrivalTrace, startedPerf: number, upstream: string): Record<string, unknown> {
  const s = trace.settle();
  const v = bufferingVerdict(s);
  const at = (t: number): number | null => (t < 0 ? null : ms(t - startedPerf));
  return {
    v: 1,
    upstream,
    server: trace.server,
    via: trace.via,
    dispatch_ms: at(trace.dispatchedAt),
    headers_ms: at(trace.headersAt),
    first_event_ms: at(trace.firstEventAt),
    last_read_ms: at(trace.lastReadAt),
    reads: s.reads,
    events: s.events,
    events_per_read: s.eventsPerRead,
    max_events_per_read: s.maxEventsPerRead,
    gap_p50_ms: s.gapP50Ms,
    gap_p99_ms: s.gapP99Ms,
    max_gap_ms: s.maxGapMs,
    bursts: s.bursts,
    burst_bytes_p50: s.burstBytesP50,
    burst_bytes_max: s.burstBytesMax,
    buffered: v.buffered,
    reason: v.reason,
  };
}

const TERMINAL = new Set(['response.completed', 'response.failed', 'response.incomplete']);

/**
 * A stream writer that adds the hop report once: before `[DONE]` on chat/completions, after the terminal event of a
 * Responses stream. Wraps only writers that can write a comment (SSE over HTTP/1.1 and HTTP/2).
 */
export class HopReportWriter implements StreamWriter {
  readonly #w: StreamWriter & { comment(text: string): void };
  readonly #report: () => string;
  #sent = false;
  readonly setHeaders?: (headers: Readonly<Record<string, string>>) => void;
  readonly writeRaw?: (frames: Buffer) => boolean;

  constructor(inner: StreamWriter & { comment(text: string): void }, report: () => string) {
    this.#w = inner;
    this.#report = report;
    if (inner.setHeaders) this.setHeaders = (h) => inner.setHeaders?.(h);
    if (inner.writeRaw) this.writeRaw = (f) => (inner.writeRaw as (frames: Buffer) => boolean)(f);
  }

  #send(): void {
    if (this.#sent) return;
    this.#sent = true;
    this.#w.comment(`${HOP_REPORT_PREFIX}${this.#report()}`);
  }

  open(): void {
    this.#w.open();
  }
  get opened(): boolean {
    return this.#w.opened;
  }
  data(json: string): void {
    this.#w.data(json);
  }
  named(event: string, json: string): void {
    this.#w.named(event, json);
    if (TERMINAL.has(event)) this.#send();
  }
  heartbeat(): void {
    this.#w.heartbeat();
  }
  done(): void {
    this.#send();
    this.#w.done();
  }
  flush(): boolean {
    return this.#w.flush();
  }
  onDrain(cb: () => void): void {
    this.#w.onDrain(cb);
  }
  end(): void {
    this.#w.end();
  }
  fail(err: SluiceError, inBand: () => void): void {
    this.#w.fail(err, inBand);
  }
  destroy(): void {
    this.#w.destroy();
  }
  get closed(): boolean {
    return this.#w.closed;
  }
}
