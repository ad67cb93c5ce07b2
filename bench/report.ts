import type { PhaseResult, ProfileName } from './phase.ts';
import type { Summary } from './stats.ts';
import type { SyscallCounts } from './syscalls.ts';

/**
 * Turns phase results into the benchmark table: one row per figure, a column per target, Sluice/nginx, and the
 * issue's goal with whether Sluice meets it.
 */

export const TARGETS = ['direct', 'nginx', 'sluice', 'sluice-b', 'node-relay', 'node-http', 'node-raw'] as const;
export type TargetName = (typeof TARGETS)[number];
/** What runs without `--targets`; the `node-*` reference proxies (bench/floor.ts) only when asked for. */
export const DEFAULT_TARGETS: readonly TargetName[] = ['direct', 'nginx', 'sluice'];
/** The `node-*` targets' modes in bench/floor.ts. */
export const FLOOR_MODES: Partial<Record<TargetName, string>> = { 'node-relay': 'relay', 'node-http': 'http', 'node-raw': 'raw' };

/**
 * The order the targets run in, in round `round` (from 0). Each round starts the rotation at another target, so that
 * a slow drift of the machine favours none; with three targets or more, odd rounds also run it backwards, since a
 * rotation alone keeps every target right after the same neighbour (sluice before sluice-b in every round biased
 * their comparison by about 10%: docs/performance.md, "Round 2"). With two, reversing a rotation undoes it, so they
 * only alternate: before that, `--targets sluice,sluice-b` ran sluice first in every round (finding 13).
 */
export function roundOrder<T>(targets: readonly T[], round: number): T[] {
  const rotated = targets.map((_, i) => targets[(i + round) % targets.length] as T);
  return targets.length > 2 && round % 2 === 1 ? rotated.reverse() : rotated;
}

export interface ProfileOutcome {
  profile: ProfileName;
  description: string;
  results: Partial<Record<TargetName, PhaseResult>>;
  /** Abort propagation (upstream close − client close), per target. */
  aborts: Partial<Record<TargetName, Summary & { unmatched: number }>>;
}

export interface Row {
  profile: ProfileName;
  metric: string;
  unit: string;
  /** Per target. When `relative`, the proxies' values are the shift over direct and direct's is the baseline. */
  values: Partial<Record<TargetName, number>>;
  relative: boolean;
  /** Sluice/nginx; null when it means nothing (a side missing, or nginx at or below zero). */
  ratio: number | null;
  goal: string | null;
  /** Whether Sluice meets the goal; null when there is no goal or no Sluice figure. */
  met: boolean | null;
  /** How rounds combine: the median, or the sum (counts of failures: one in any round counts). */
  combine: 'median' | 'sum';
  /** Whether Sluice/nginx means something for this figure. */
  comparable: boolean;
  /** The goal's test (not serialized). */
  check?: Goal['check'];
}

type RowOptions = { relative?: boolean; goal?: Goal; proxiesOnly?: boolean; sum?: boolean; noRatio?: boolean };
type Goal = { text: string; check: (sluice: number, nginx: number | undefined) => boolean | null };

const atMostNginx: Goal = { text: '≤ nginx', check: (s, n) => (n === undefined ? null : s <= n) };
const atMost = (limit: number, unit: string): Goal => ({ text: `≤ ${limit} ${unit}`, check: (s) => s <= limit });
const zero: Goal = { text: '0', check: (s) => s === 0 };

function row(
  profile: ProfileName,
  metric: string,
  unit: string,
  get: (r: PhaseResult, t: TargetName) => number | undefined,
  results: Partial<Record<TargetName, PhaseResult>>,
  opts: RowOptions = {},
): Row {
  const values: Partial<Record<TargetName, number>> = {};
  for (const t of TARGETS) {
    const r = results[t];
    if (r === undefined || (opts.proxiesOnly && t === 'direct')) continue;
    // NaN (no samples) arrives as null through IPC/JSON.
    const v: unknown = get(r, t);
    if (typeof v === 'number' && Number.isFinite(v)) values[t] = v;
  }
  const relative = opts.relative === true && values.direct !== undefined;
  if (relative) {
    const base = values.direct as number;
    for (const t of TARGETS) if (t !== 'direct' && values[t] !== undefined) values[t] = (values[t] as number) - base;
  }
  const r: Row = { profile, metric, unit, values, relative, ratio: null, goal: opts.goal?.text ?? null, met: null, combine: opts.sum ? 'sum' : 'median', comparable: !opts.noRatio };
  if (opts.goal) r.check = opts.goal.check;
  return judged(r);
}

/** Fills in Sluice/nginx and whether Sluice meets the goal. */
function judged(r: Row): Row {
  const s = r.values.sluice;
  const n = r.values.nginx;
  r.ratio = r.comparable && s !== undefined && n !== undefined && s >= 0 && n > 0 ? s / n : null;
  r.met = r.check && s !== undefined ? r.check(s, n) : null;
  return r;
}

const median = (xs: number[]): number => {
  const a = [...xs].sort((x, y) => x - y);
  const m = a.length >> 1;
  return a.length % 2 ? (a[m] as number) : ((a[m - 1] as number) + (a[m] as number)) / 2;
};

/**
 * Combines the rows of several rounds of one profile (same figures in the same order): per target the median (or
 * the sum, for failure counts) of the values, each round's proxies measured against that round's direct.
 */
export function mergeRounds(rounds: Row[][]): Row[] {
  const first = rounds[0] ?? [];
  return first.map((proto, i) => {
    const values: Partial<Record<TargetName, number>> = {};
    for (const t of TARGETS) {
      const xs = rounds.map((rows) => rows[i]?.values[t]).filter((v): v is number => v !== undefined);
      if (xs.length > 0) values[t] = proto.combine === 'sum' ? xs.reduce((a, b) => a + b, 0) : median(xs);
    }
    return judged({ ...proto, values });
  });
}

/**
 * What the rest of the machine used during the window: all CPU time (/proc/stat) minus the upstream's, the proxy's
 * and the load generator's, as % of one core. Anything above a few % means the figures are noisy.
 */
export function backgroundCpuPercent(r: PhaseResult): number {
  const c = r.cpuMs;
  const ours = (c['proxy'] ?? 0) + (c['upstream'] ?? 0) + (c['load'] ?? 0);
  return Math.max(0, (((c['machine'] ?? NaN) - ours) / r.windowMs) * 100);
}

const errorsOf = (r: PhaseResult): number => r.errors.socket + r.errors.status + r.errors.frame;
const perThousand = (cpu: number | undefined, count: number): number | undefined =>
  cpu === undefined || count === 0 ? undefined : (cpu / count) * 1000;

/** The rows of one profile. */
export function rowsFor(o: ProfileOutcome): Row[] {
  const R = o.results;
  const p = o.profile;
  const rows: Row[] = [];
  type Get = (r: PhaseResult, t: TargetName) => number | undefined;
  const add = (metric: string, unit: string, get: Get, opts: RowOptions = {}): void => {
    rows.push(row(p, metric, unit, get, R, opts));
  };
  const cpuPerK = (r: PhaseResult): number | undefined => perThousand(r.cpuMs['proxy'], r.chunks);
  const rate = (r: PhaseResult, n: number): number => (n / r.windowMs) * 1000;
  const syscallRows = (count: (r: PhaseResult) => number, per: string): void => {
    const ratio = (pick: (c: SyscallCounts) => number) => (r: PhaseResult) => (r.syscalls && count(r) > 0 ? pick(r.syscalls) / count(r) : undefined);
    add(`proxy syscalls per ${per}`, '', ratio((c) => c.total), { proxiesOnly: true });
    add(`  of which writes`, '', ratio((c) => c.writes), { proxiesOnly: true });
    add(`  of which reads`, '', ratio((c) => c.reads), { proxiesOnly: true });
  };
  const abortRow = (label: string, pick: (s: Summary) => number, goal?: Goal): void => {
    add(label, 'ms', (_r, t) => (o.aborts[t] ? pick(o.aborts[t]) : undefined), goal ? { goal } : {});
  };

  if (p === 'latency' || p === 'throughput') {
    add('chunks delivered per second', '/s', (r) => rate(r, r.chunks));
    add('added delay per chunk p50', 'ms', (r) => r.delay.p50, { relative: true });
    add('added delay per chunk p99', 'ms', (r) => r.delay.p99, { relative: true, ...(p === 'latency' ? { goal: atMostNginx } : {}) });
    // One sample: a ratio of two maxima says nothing.
    add('added delay per chunk max', 'ms', (r) => r.delay.max, { relative: true, noRatio: true });
    if (p === 'latency') add('added delay p99, mid-stream tokens only', 'ms', (r) => r.delayMid?.p99, { relative: true });
    add('proxy CPU per 1,000 chunks', 'ms', cpuPerK, { proxiesOnly: true, goal: atMostNginx });
    add('  of which in the kernel', 'ms', (r) => perThousand(r.cpuMs['proxy.sys'], r.chunks), { proxiesOnly: true });
    syscallRows((r) => r.chunks, 'chunk');
  }
  if (p === 'latency') {
    add('time to first byte p50', 'ms', (r) => r.ttfb.p50, { relative: true });
    add('time to first byte p99', 'ms', (r) => r.ttfb.p99, { relative: true, goal: atMost(2, 'ms over direct') });
    abortRow('abort propagation p50', (s) => s.p50);
    abortRow('abort propagation p99', (s) => s.p99, atMost(10, 'ms'));
  }
  if (p === 'idle') {
    add('streams held open', '', (r) => r.rss?.streams ?? undefined, { proxiesOnly: true, noRatio: true });
    add('memory per open stream', 'KiB', (r) => (r.rss ? (r.rss.openKiB - r.rss.baseKiB) / r.rss.streams : undefined), {
      proxiesOnly: true,
      goal: atMost(32, 'KiB'),
    });
    add('added delay per chunk p99', 'ms', (r) => r.delay.p99, { relative: true });
    add('proxy CPU while holding them (% of a core)', '', (r) => ((r.cpuMs['proxy'] ?? NaN) / r.windowMs) * 100, { proxiesOnly: true });
    abortRow('abort propagation p50, all at once', (s) => s.p50);
    abortRow('abort propagation p99, all at once', (s) => s.p99);
  }
  if (p === 'churn') {
    add('requests completed per second', '/s', (r) => rate(r, r.total.count));
    add('proxy CPU per 1,000 requests', 'ms', (r) => perThousand(r.cpuMs['proxy'], r.total.count), { proxiesOnly: true });
    add('  of which in the kernel', 'ms', (r) => perThousand(r.cpuMs['proxy.sys'], r.total.count), { proxiesOnly: true });
    syscallRows((r) => r.total.count, 'request');
    add('time to first byte p50', 'ms', (r) => r.ttfb.p50, { relative: true });
    add('time to first byte p99', 'ms', (r) => r.ttfb.p99, { relative: true });
    add('request duration p99', 'ms', (r) => r.total.p99, { relative: true });
    add('requests skipped (target saturated)', '', (r) => r.skipped, { sum: true, noRatio: true });
  }
  if (p === 'wave') {
    add('added delay per chunk p50, streams already open', 'ms', (r) => r.delay.p50, { relative: true });
    add('added delay per chunk p99, streams already open', 'ms', (r) => r.delay.p99, { relative: true });
    add('added delay per chunk max, streams already open', 'ms', (r) => r.delay.max, { relative: true, noRatio: true });
    add('time to first byte p50, the waves', 'ms', (r) => r.ttfb.p50, { relative: true });
    add('time to first byte p99, the waves', 'ms', (r) => r.ttfb.p99, { relative: true });
    add('proxy CPU per 1,000 requests (waves and chunks)', 'ms', (r) => perThousand(r.cpuMs['proxy'], r.total.count), { proxiesOnly: true });
  }
  add('errors', '', errorsOf, { goal: zero, sum: true });
  add('truncated streams', '', (r) => r.errors.truncated, { goal: zero, sum: true });
  add('upstream streams left open', '', (r) => r.upstreamLeft, { goal: zero, sum: true });
  add('CPU of other processes (% of a core)', '', backgroundCpuPercent, { noRatio: true });
  return rows;
}

function fmt(v: number | undefined, signed: boolean): string {
  if (v === undefined) return '—';
  const a = Math.abs(v);
  const s = Number.isInteger(v) || a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
  return signed && v >= 0 ? `+${s}` : s;
}

/** One profile's part of the table. */
export interface Section {
  title: string;
  rows: Row[];
}

/** The table as fixed-width text. */
export function formatTable(sectionList: Section[], shown: readonly TargetName[]): string {
  const header = ['figure', ...shown.map((t) => (t === 'sluice' ? 'Sluice' : t === 'sluice-b' ? 'Sluice B' : t)), 'Sluice/nginx', 'goal (Sluice)', 'met'];
  const lines: string[][] = [];
  const sections: { title: string; from: number }[] = [];
  for (const sec of sectionList) {
    sections.push({ title: sec.title, from: lines.length });
    for (const r of sec.rows) {
      lines.push([
        r.unit ? `${r.metric} (${r.unit})` : r.metric,
        ...shown.map((t) => fmt(r.values[t], r.relative && t !== 'direct')),
        r.ratio === null ? '' : `${r.ratio.toFixed(2)}×`,
        r.goal ?? '',
        r.met === null ? '' : r.met ? 'yes' : 'NO',
      ]);
    }
  }
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? '').length)));
  const render = (cells: string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  const out: string[] = [render(header), widths.map((w) => '-'.repeat(w)).join('  ')];
  let s = 0;
  lines.forEach((l, i) => {
    const sec = sections[s];
    if (sec && sec.from === i) {
      out.push(`[${sec.title}]`);
      s++;
    }
    out.push(render(l));
  });
  return out.join('\n');
}
