import type { ProbeResult } from './probe-result.ts';
import { escapeXml, timelineMarkup } from '../timeline/timeline.js';
import type { TimelineInput, TimelineMark } from '../timeline/timeline.js';

export { escapeXml };

/**
 * One probe as the shared stream timeline (src/timeline/, the same picture the console draws): socket reads as bars
 * (height by size), token arrivals as ticks, heartbeats as dots, and in probe mode the time each token was written by
 * the simulator, joined to its arrival, so a delay shows as a slanted line.
 */
export function probeTimeline(p: ProbeResult): TimelineInput {
  const rec = p.recording;
  const written: Array<{ at: number; arrived: number }> = [];
  for (const t of p.tokens) if (t.stamp !== null) written.push({ at: t.stamp - rec.startedAt, arrived: t.at });
  const marks: TimelineMark[] = [{ at: rec.head.at, label: 'headers', key: 'headers', row: 0 }];
  const first = p.tokens[0];
  if (first !== undefined) marks.push({ at: first.at, label: 'first token', key: 'first-token', row: 1 });
  if (rec.doneAt !== null) marks.push({ at: rec.doneAt, label: rec.endpoint === 'responses' ? 'completed' : '[DONE]', key: 'done', row: 2 });
  return {
    label: `timeline of ${p.name}`,
    end: rec.end.at,
    ticks: p.tokens.map((t, i) => ({ at: t.at, title: `token ${i + 1} at ${t.at.toFixed(1)} ms` })),
    written,
    reads: rec.reads.map((r) => ({ at: r.at, bytes: r.wireBytes, title: `read at ${r.at.toFixed(1)} ms: ${r.wireBytes} bytes (${r.bodyBytes} body)` })),
    heartbeats: rec.events.filter((e) => e.kind === 'comment').map((e) => ({ at: e.at })),
    marks,
  };
}

/** The SVG element for one probe. */
export function svgTimeline(p: ProbeResult): string {
  return timelineMarkup(probeTimeline(p), { width: 960 });
}
