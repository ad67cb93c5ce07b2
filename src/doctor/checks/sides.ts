import { check, type Check } from '../check.ts';
import type { StreamRecording } from '../recording.ts';
import { engineSideFix, SIDE_NAMES, splitHops, type SluiceHop } from '../sluice-hop.ts';
import type { StreamMetrics } from '../stream-metrics.ts';

/**
 * `hops.sides`: with Sluice's hop report, where the time and the bursts the client sees come from: "between the
 * client and Sluice" or "between Sluice and the engine". Fails only when Sluice's upstream arrived buffered, which the
 * client cannot escape whatever the hops in front do.
 */
export function checkSides(rec: StreamRecording, metrics: StreamMetrics, hop: SluiceHop, clientBursty: boolean): Check {
  const split = splitHops(hop, metrics, clientBursty);
  const base = { id: 'hops.sides', group: 'hops', probe: rec.endpoint, title: 'Both sides of Sluice' } as const;
  const behind = `${hop.upstream ?? 'its upstream'}${hop.server !== null ? ` (Server: ${hop.server})` : ''}`;
  const evidence = [
    `time to first token ${ms(split.ttftMs)}: ${ms(split.engineSideMs)} ${SIDE_NAMES['engine-side']} (the engine included; Sluice's upstream answered its head at ${ms(hop.headersMs)}), ${ms(split.clientSideMs)} ${SIDE_NAMES['client-side']} (connecting, the hops in front of Sluice, Sluice itself)`,
    `at Sluice, from ${behind}: ${hop.events} events in ${hop.reads} reads (${perRead(split.upstreamPerRead)} per read, up to ${hop.maxEventsPerRead}), gaps between reads p50 ${ms(hop.gapP50Ms)} / p99 ${ms(hop.gapP99Ms)}, bursts up to ${hop.burstBytesMax} bytes`,
    `at the client: ${metrics.tokenEvents} token events, ${perRead(split.clientPerRead)} per read`,
  ];
  if (hop.via !== null) evidence.push(`the upstream's Via: ${hop.via}`);
  if (split.burstsFrom === 'engine-side') {
    return check({
      ...base,
      status: 'fail',
      summary: `the stream arrives at Sluice already buffered (${hop.reason ?? 'bursts'}): the buffering hop is ${SIDE_NAMES['engine-side']}, not Sluice`,
      evidence,
      fix: engineSideFix(hop),
      hop: `${SIDE_NAMES['engine-side']} (${behind})`,
    });
  }
  const where = split.burstsFrom === 'client-side' ? `; Sluice received it event by event, so the bursts come from ${SIDE_NAMES['client-side']}` : '';
  return check({
    ...base,
    status: 'pass',
    summary: `first token after ${ms(split.ttftMs)}: ${ms(split.engineSideMs)} ${SIDE_NAMES['engine-side']}, ${ms(split.clientSideMs)} ${SIDE_NAMES['client-side']}${where}`,
    evidence,
    hop: split.burstsFrom === 'client-side' ? SIDE_NAMES['client-side'] : null,
  });
}

function ms(v: number | null): string {
  if (v === null) return '—';
  return v < 10 ? `${v.toFixed(1)} ms` : `${Math.round(v)} ms`;
}

function perRead(v: number | null): string {
  return v === null ? '—' : v.toFixed(2);
}
