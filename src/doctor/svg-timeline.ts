import type { ProbeResult } from './probe-result.ts';

/**
 * An SVG timeline of one probe: socket reads as bars (height by size), token arrivals as ticks, and in probe mode the
 * time each token was written by the simulator, joined to its arrival, so a delay shows as a slanted line.
 */

const W = 960;
const LEFT = 86;
const RIGHT = 16;
const WRITTEN_Y = 46;
const ARRIVED_Y = 104;
const READS_BASE = 174;
const H = 206;

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function niceStep(span: number): number {
  const raw = span / 8;
  const pow = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * pow >= raw) return m * pow;
  return 10 * pow;
}

/** The SVG element for one probe. */
export function svgTimeline(p: ProbeResult): string {
  const rec = p.recording;
  const stamps = p.tokens.map((t) => (t.stamp === null ? null : t.stamp - rec.startedAt));
  const span = Math.max(1, rec.end.at, ...stamps.filter((s): s is number => s !== null));
  const x = (t: number): number => LEFT + (Math.max(0, t) / span) * (W - LEFT - RIGHT);
  const f = (n: number): string => n.toFixed(1);
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="100%" role="img" aria-label="timeline of ${escapeXml(p.name)}">`);
  parts.push('<style>text{font:11px sans-serif;fill:#444}.lane{stroke:#ddd}.tick{stroke:#1a7f37;stroke-width:1.5}.w{fill:#0969da}.d{stroke:#bf8700;stroke-opacity:.5}.read{fill:#8250df;fill-opacity:.6}.mark{stroke:#999;stroke-dasharray:3 3}.hb{fill:#cf222e}</style>');
  const step = niceStep(span);
  for (let t = 0; t <= span; t += step) {
    parts.push(`<line class="lane" x1="${f(x(t))}" y1="16" x2="${f(x(t))}" y2="${READS_BASE}"/>`);
    parts.push(`<text x="${f(x(t))}" y="${H - 14}" text-anchor="middle">${t >= 1000 ? `${(t / 1000).toFixed(step >= 1000 ? 0 : 1)} s` : `${Math.round(t)} ms`}</text>`);
  }
  const hasStamps = stamps.some((s) => s !== null);
  if (hasStamps) parts.push(`<text x="4" y="${WRITTEN_Y + 4}">written</text>`);
  parts.push(`<text x="4" y="${ARRIVED_Y + 4}">arrived</text>`, `<text x="4" y="${READS_BASE - 4}">reads</text>`);
  p.tokens.forEach((t, i) => {
    const s = stamps[i];
    if (s !== null && s !== undefined) {
      parts.push(`<line class="d" x1="${f(x(s))}" y1="${WRITTEN_Y}" x2="${f(x(t.at))}" y2="${ARRIVED_Y - 8}"/>`);
      parts.push(`<circle class="w" cx="${f(x(s))}" cy="${WRITTEN_Y}" r="2.5"/>`);
    }
    parts.push(`<line class="tick" x1="${f(x(t.at))}" y1="${ARRIVED_Y - 8}" x2="${f(x(t.at))}" y2="${ARRIVED_Y + 8}"><title>token ${i + 1} at ${t.at.toFixed(1)} ms</title></line>`);
  });
  const maxBytes = Math.max(1, ...rec.reads.map((r) => r.wireBytes));
  for (const r of rec.reads) {
    const h = 4 + 40 * Math.sqrt(r.wireBytes / maxBytes);
    parts.push(`<rect class="read" x="${f(x(r.at) - 1.5)}" y="${f(READS_BASE - h)}" width="3" height="${f(h)}"><title>read at ${r.at.toFixed(1)} ms: ${r.wireBytes} bytes (${r.bodyBytes} body)</title></rect>`);
  }
  for (const e of rec.events) {
    if (e.kind === 'comment') parts.push(`<circle class="hb" cx="${f(x(e.at))}" cy="${ARRIVED_Y + 16}" r="2.5"><title>heartbeat at ${e.at.toFixed(0)} ms</title></circle>`);
  }
  const mark = (t: number | null, label: string, row: number): void => {
    if (t === null) return;
    parts.push(`<line class="mark" x1="${f(x(t))}" y1="12" x2="${f(x(t))}" y2="${READS_BASE}"/>`);
    const nearEnd = x(t) > W - RIGHT - 90;
    parts.push(`<text x="${f(nearEnd ? x(t) - 3 : x(t) + 3)}" y="${11 + row * 11}"${nearEnd ? ' text-anchor="end"' : ''}>${escapeXml(label)}</text>`);
  };
  mark(rec.head.at, 'headers', 0);
  mark(p.tokens[0]?.at ?? null, 'first token', 1);
  mark(rec.doneAt, rec.endpoint === 'responses' ? 'completed' : '[DONE]', 2);
  parts.push('</svg>');
  return parts.join('');
}
