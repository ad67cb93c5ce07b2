import type { ProbeResult } from './probe-result.ts';
import type { SluiceHop } from './sluice-hop.ts';
import type { DoctorReport } from './run-doctor.ts';

/**
 * The `--json` form of a report: stable field names for CI, every check with its evidence, the metrics and the raw
 * timeline (reads, tokens, heartbeats) of each probe. Times are milliseconds since the probe started.
 */

export interface JsonProbe {
  name: string;
  url: string;
  endpoint: string;
  probeMode: boolean;
  /** Sluice's hop report (what it saw from its upstream), when the target is Sluice. */
  sluiceHop: SluiceHop | null;
  status: number;
  httpVersion: string;
  headers: Array<[string, string]>;
  metrics: Record<string, unknown>;
  timeline: {
    connectedAt: number;
    firstByteAt: number;
    headersAt: number;
    doneAt: number | null;
    end: { at: number; reason: string; detail: string | null };
    /** [at, wireBytes, bodyBytes] */
    reads: Array<[number, number, number]>;
    /** [at, readIndex, probeDelayMs | null] */
    tokens: Array<[number, number, number | null]>;
    heartbeats: number[];
  };
}

const r1 = (n: number): number => Math.round(n * 10) / 10;

export function probeToJson(p: ProbeResult): JsonProbe {
  const rec = p.recording;
  const m = p.metrics;
  const delays = m.probe?.perToken ?? null;
  let stamped = 0;
  return {
    name: p.name,
    url: rec.url,
    endpoint: rec.endpoint,
    probeMode: p.probeMode,
    sluiceHop: p.sluiceHop,
    status: rec.head.status,
    httpVersion: rec.head.httpVersion,
    headers: rec.head.headers,
    metrics: {
      connectMs: r1(m.connectMs),
      ttfbMs: r1(m.ttfbMs),
      headersMs: r1(m.headersMs),
      ttftMs: m.ttftMs === null ? null : r1(m.ttftMs),
      totalMs: r1(m.totalMs),
      tokenEvents: m.tokenEvents,
      usageTokens: m.usageTokens,
      itlMs: m.itl,
      tokensPerSecond: m.tokensPerSecond === null ? null : r1(m.tokensPerSecond),
      tokensPerRead: m.tokensPerDelivery === null ? null : Math.round(m.tokensPerDelivery * 100) / 100,
      deliveries: m.deliveries.length,
      probeDelayMs: m.probe === null ? null : { clock: m.probe.clock, ...m.probe.delay },
      probeRejected: m.probeRejected,
      loopLagMs: rec.loopLag,
      heartbeats: m.heartbeats,
      longestSilenceMs: r1(m.longestSilenceMs),
    },
    timeline: {
      connectedAt: r1(rec.connectedAt),
      firstByteAt: r1(rec.head.firstByteAt),
      headersAt: r1(rec.head.at),
      doneAt: rec.doneAt === null ? null : r1(rec.doneAt),
      end: { at: r1(rec.end.at), reason: rec.end.reason, detail: rec.end.detail },
      reads: rec.reads.map((r) => [r1(r.at), r.wireBytes, r.bodyBytes]),
      tokens: p.tokens.map((t) => {
        const d = delays !== null && t.stamp !== null ? (delays[stamped++] ?? null) : null;
        return [r1(t.at), t.read, d === null ? null : Math.round(d * 100) / 100];
      }),
      heartbeats: rec.events.filter((e) => e.kind === 'comment').map((e) => r1(e.at)),
    },
  };
}

/** The whole report as plain JSON data. */
export function reportToJson(report: DoctorReport): Record<string, unknown> {
  return {
    tool: 'sluice doctor',
    url: report.url,
    model: report.model,
    target: report.target,
    startedAt: report.startedAt,
    status: report.status,
    exitCode: report.exitCode,
    checks: report.checks,
    probes: report.probes.map(probeToJson),
    idle: report.idle === null ? null : probeToJson(report.idle),
    compare:
      report.compare === null
        ? null
        : {
            url: report.compare.target.baseUrl,
            target: report.compare.target.kind,
            deltas: report.compare.comparison.deltas,
            onlyHere: report.compare.comparison.onlyA,
            onlyThere: report.compare.comparison.onlyB,
            probe: probeToJson(report.compare.probe),
            checks: report.compare.probe.checks,
          },
  };
}
