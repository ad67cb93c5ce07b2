import type { Check } from './check.ts';
import { describeHops } from './hops.ts';
import type { ProbeResult } from './probe-result.ts';
import { ENDPOINT_PATHS } from './recording.ts';
import type { DoctorReport } from './run-doctor.ts';
import { escapeXml, svgTimeline } from './svg-timeline.ts';

/** `--html FILE`: one self-contained page (no scripts, no external files) with an SVG timeline per probe. */

const COLORS: Record<Check['status'], string> = { pass: '#1a7f37', warn: '#9a6700', fail: '#cf222e', skip: '#6e7781' };

function checkRows(checks: readonly Check[]): string {
  return checks
    .map((c) => {
      const details = [
        ...c.evidence.map((e) => `<li>${escapeXml(e)}</li>`),
        c.fix && c.status !== 'pass' ? `<li class="fix"><b>fix:</b> ${escapeXml(c.fix)}</li>` : '',
      ].join('');
      return `<tr><td><span class="badge" style="background:${COLORS[c.status]}">${c.status.toUpperCase()}</span></td><td><b>${escapeXml(c.title)}</b><br>${escapeXml(c.summary)}${details ? `<ul>${details}</ul>` : ''}</td></tr>`;
    })
    .join('');
}

function num(v: number | null, digits = 0): string {
  return v === null ? '—' : v.toFixed(digits);
}

function probeSection(p: ProbeResult, title: string): string {
  const m = p.metrics;
  const rows: Array<[string, string]> = [
    ['HTTP', `${p.recording.head.status} (HTTP/${p.recording.head.httpVersion})`],
    ['hops', describeHops(p.hops)],
    ['time to first byte', `${num(m.ttfbMs)} ms`],
    ['time to first token', `${num(m.ttftMs)} ms`],
    ['inter-token latency p50 / p90 / p99', m.itl ? `${num(m.itl.p50, 1)} / ${num(m.itl.p90, 1)} / ${num(m.itl.p99, 1)} ms` : '—'],
    ['tokens per second', num(m.tokensPerSecond, 1)],
    ['token events / reads carrying them', `${m.tokenEvents} / ${m.deliveries.length}`],
    ['heartbeats', String(m.heartbeats)],
  ];
  if (m.probe) rows.push(['added delay per token p50 / p90 / p99 / max (probe)', `${num(m.probe.delay.p50, 1)} / ${num(m.probe.delay.p90, 1)} / ${num(m.probe.delay.p99, 1)} / ${num(m.probe.delay.max, 1)} ms`]);
  const table = rows.map(([k, v]) => `<tr><th>${escapeXml(k)}</th><td>${escapeXml(v)}</td></tr>`).join('');
  return `<section><h2>${escapeXml(title)}</h2><table class="m">${table}</table><figure>${svgTimeline(p)}<figcaption>Reads (bars, height by size), token arrivals (green ticks)${m.probe ? ', the simulator\'s write time of each token (blue dots, joined to the arrival)' : ''}, heartbeats (red dots).</figcaption></figure>${p.checks.length > 0 ? `<table class="c">${checkRows(p.checks)}</table>` : ''}</section>`;
}

export function renderHtml(report: DoctorReport): string {
  const sections: string[] = report.probes.map((p) => probeSection(p, `${p.name} — POST ${ENDPOINT_PATHS[p.recording.endpoint]}`));
  if (report.idle !== null) sections.push(probeSection(report.idle, 'idle — slow first token'));
  const other = report.checks.filter((c) => c.group === 'cors' || c.group === 'compare' || (c.group === 'idle' && report.idle === null));
  if (report.compare !== null) sections.push(probeSection(report.compare.probe, `compare — ${report.compare.target.baseUrl}`));
  if (other.length > 0) sections.push(`<section><h2>More checks</h2><table class="c">${checkRows(other)}</table></section>`);
  const fails = report.checks.filter((c) => c.status === 'fail').length;
  const warns = report.checks.filter((c) => c.status === 'warn').length;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sluice doctor — ${escapeXml(report.url)}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#1f2328}
h1{font-size:20px}h2{font-size:16px;margin-top:2em;border-bottom:1px solid #d0d7de}
.badge{color:#fff;border-radius:4px;padding:1px 6px;font-size:12px;font-weight:600}
table{border-collapse:collapse;width:100%}td,th{vertical-align:top;padding:4px 8px;text-align:left}
table.m th{font-weight:normal;color:#57606a;width:45%}table.c tr{border-top:1px solid #eaeef2}
ul{margin:4px 0;padding-left:1.2em;color:#57606a}li.fix{color:#1f2328}figure{margin:1em 0}figcaption{color:#57606a;font-size:12px}
</style></head><body>
<h1>sluice doctor — ${escapeXml(report.url)}</h1>
<p><span class="badge" style="background:${COLORS[report.status]}">${report.status.toUpperCase()}</span> ${fails} failure(s), ${warns} warning(s) · model ${escapeXml(report.model)} · ${report.probes.some((p) => p.probeMode) ? 'probe mode (Sluice simulator stamps)' : 'arrival-time analysis'} · ${escapeXml(report.startedAt)}</p>
${sections.join('\n')}
</body></html>
`;
}
