import type { Check, CheckStatus } from './check.ts';
import { describeHops } from './hops.ts';
import type { ProbeResult } from './probe-result.ts';
import { ENDPOINT_PATHS } from './recording.ts';
import type { DoctorReport } from './run-doctor.ts';
import { timelineStrip } from './timeline-strip.ts';

/** The terminal report: metrics and a timeline strip per probe, then every check; colour when asked. */

export interface TextOptions {
  color: boolean;
  /** Show the evidence of passing checks too. */
  verbose?: boolean;
}

const CODES: Record<CheckStatus | 'dim' | 'bold', string> = { pass: '32', warn: '33', fail: '31', skip: '90', dim: '2', bold: '1' };

export function renderText(report: DoctorReport, options: TextOptions): string {
  const paint = (kind: keyof typeof CODES, s: string): string => (options.color ? `\x1b[${CODES[kind]}m${s}\x1b[0m` : s);
  const lines: string[] = [];
  const stamped = report.probes.some((p) => p.probeMode);
  const targetText =
    report.target === 'other' ? '' : ` — ${report.target === 'sluice' ? 'Sluice' : 'Sluice simulator'}: ${stamped ? 'probe mode' : 'no probe stamps arrived (its upstream is not the simulator), arrival times only'}`;
  lines.push(`${paint('bold', 'sluice doctor')} ${report.url}  (model ${report.model}${targetText})`);

  const section = (p: ProbeResult, checks: readonly Check[], title: string): void => {
    lines.push('', paint('bold', title));
    lines.push(`  hops: ${describeHops(p.hops)}`);
    const h = p.sluiceHop;
    if (h !== null) {
      lines.push(
        `  behind Sluice (its hop report): upstream ${h.upstream ?? '?'}${h.server !== null ? ` (Server: ${h.server})` : ''} · first event at ${ms(h.firstEventMs)} · ${h.eventsPerRead?.toFixed(2) ?? '—'} events per read · gaps p50 ${ms(h.gapP50Ms)} / p99 ${ms(h.gapP99Ms)}${h.buffered ? ` · ${paint('fail', 'buffered')}` : ''}`,
      );
    }
    lines.push(`  ${metricsLine(p)}`);
    if (p.metrics.probe) {
      const d = p.metrics.probe.delay;
      lines.push(`  added delay per token (probe stamps${p.metrics.probe.clock === 'offset' ? ', relative' : ''}): p50 ${ms(d.p50)} · p90 ${ms(d.p90)} · p99 ${ms(d.p99)} · max ${ms(d.max)}`);
    }
    if (p.metrics.probeRejected !== null) lines.push(`  ${paint('warn', 'probe stamps not used:')} ${p.metrics.probeRejected}`);
    const strip = timelineStrip(p);
    lines.push(`  arrivals |${strip.bars}| ${ms(strip.spanMs)}`);
    lines.push(`           ${paint('dim', strip.marks)}  ${paint('dim', 'H headers · T first token · D [DONE] · E end · ♥ heartbeat')}`);
    for (const c of checks) lines.push(...renderCheck(c, options, paint));
  };

  for (const p of report.probes) section(p, p.checks, `${p.name}  POST ${ENDPOINT_PATHS[p.recording.endpoint]}`);
  const extra = report.checks.filter(
    (c) => c.group === 'cors' || (c.group === 'idle' && report.idle === null) || (c.group === 'compare' && report.compare === null),
  );
  if (report.idle !== null) section(report.idle, report.idle.checks, 'idle  (slow first token)');
  if (extra.length > 0) {
    lines.push('');
    for (const c of extra) lines.push(...renderCheck(c, options, paint));
  }
  if (report.compare !== null) {
    const cmp = report.compare;
    section(cmp.probe, cmp.probe.checks, `compare  ${cmp.target.baseUrl}`);
    lines.push('');
    lines.push(...renderCheck(cmp.comparison.check, { ...options, verbose: true }, paint));
  }

  const fails = report.checks.filter((c) => c.status === 'fail').length;
  const warns = report.checks.filter((c) => c.status === 'warn').length;
  const verdict = report.status === 'fail' ? 'FAIL' : report.status === 'warn' ? 'WARN' : 'PASS';
  lines.push('', `${paint(report.status === 'skip' ? 'pass' : report.status, paint('bold', verdict))}  ${fails} failure${fails === 1 ? '' : 's'}, ${warns} warning${warns === 1 ? '' : 's'} (exit ${report.exitCode})`);
  return `${lines.join('\n')}\n`;
}

function renderCheck(c: Check, options: TextOptions, paint: (k: keyof typeof CODES, s: string) => string): string[] {
  const tag = paint(c.status, c.status.toUpperCase().padEnd(4));
  const out = [`  ${tag}  ${c.title}: ${c.summary}`];
  if (c.status !== 'pass' || options.verbose) for (const e of c.evidence) out.push(paint('dim', `        · ${e}`));
  if (c.fix && c.status !== 'pass') out.push(`        ${paint('bold', 'fix:')} ${c.fix}`);
  return out;
}

function metricsLine(p: ProbeResult): string {
  const m = p.metrics;
  const parts = [
    `HTTP ${p.recording.head.status}`,
    `TTFB ${ms(m.ttfbMs)}`,
    `TTFT ${m.ttftMs === null ? '—' : ms(m.ttftMs)}`,
    m.itl ? `ITL p50 ${ms(m.itl.p50)} / p90 ${ms(m.itl.p90)} / p99 ${ms(m.itl.p99)}` : 'ITL —',
    `${m.tokensPerSecond === null ? '—' : m.tokensPerSecond.toFixed(1)} tokens/s`,
    `${m.tokenEvents} token events${m.usageTokens !== null ? ` (${m.usageTokens} by usage)` : ''}`,
    `${m.heartbeats} heartbeat${m.heartbeats === 1 ? '' : 's'}`,
  ];
  return parts.join(' · ');
}

function ms(v: number | null): string {
  if (v === null) return '—';
  if (v >= 10_000) return `${(v / 1000).toFixed(1)} s`;
  return v < 10 ? `${v.toFixed(1)} ms` : `${Math.round(v)} ms`;
}
