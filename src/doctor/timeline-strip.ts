import type { ProbeResult } from './probe-result.ts';

/**
 * A one-line picture of when tokens arrived: the probe's duration split into columns, each showing how many tokens
 * arrived in it. A stream that streams is an even dotted line; a buffered one is empty with a few tall bars.
 */

const LEVELS = ['▁', '▂', '▃', '▅', '▇', '█'];

function glyph(count: number): string {
  if (count === 0) return ' ';
  const i = count === 1 ? 0 : count === 2 ? 1 : count <= 4 ? 2 : count <= 8 ? 3 : count <= 16 ? 4 : 5;
  return LEVELS[i] as string;
}

export interface Strip {
  /** Token arrivals per column. */
  bars: string;
  /** Markers: H headers, T first token, D terminator, ♥ heartbeat, E end. */
  marks: string;
  spanMs: number;
}

/** Renders the strip for a probe, `width` columns wide. */
export function timelineStrip(p: ProbeResult, width = 60): Strip {
  const rec = p.recording;
  const span = Math.max(1, rec.end.at);
  const col = (t: number): number => Math.min(width - 1, Math.max(0, Math.floor((t / span) * width)));
  const counts = new Array<number>(width).fill(0);
  for (const t of p.tokens) counts[col(t.at)] = (counts[col(t.at)] ?? 0) + 1;
  const marks = new Array<string>(width).fill(' ');
  const put = (t: number | null, m: string): void => {
    if (t === null) return;
    const c = col(t);
    if (marks[c] === ' ') marks[c] = m;
  };
  put(rec.head.at, 'H');
  put(p.tokens[0]?.at ?? null, 'T');
  put(rec.doneAt, 'D');
  put(rec.end.at, 'E');
  for (const e of rec.events) if (e.kind === 'comment') put(e.at, '♥');
  return { bars: counts.map(glyph).join(''), marks: marks.join(''), spanMs: span };
}
