import { check, type Check } from './check.ts';
import { describeHops } from './hops.ts';
import type { ProbeResult } from './probe-result.ts';
import { SIDE_NAMES } from './sluice-hop.ts';

/**
 * `--compare`: the same probe against two URLs (say the engine directly and the public URL). What differs between
 * them is added by the hops in between: extra delay per token, buffering, broken framing.
 */

export interface Comparison {
  a: string;
  b: string;
  /** A − B, ms; null when either side lacks the number. */
  deltas: {
    ttfbMs: number | null;
    ttftMs: number | null;
    itlP50Ms: number | null;
    itlP99Ms: number | null;
    probeDelayP50Ms: number | null;
    probeDelayP99Ms: number | null;
  };
  /** Hops seen at A but not at B, and the other way round. */
  onlyA: string[];
  onlyB: string[];
  check: Check;
}

const diff = (x: number | null | undefined, y: number | null | undefined): number | null =>
  x === null || x === undefined || y === null || y === undefined ? null : x - y;

/** Compares probe A (the URL under test) with probe B (the --compare URL). */
export function compareProbes(a: ProbeResult, b: ProbeResult): Comparison {
  const ma = a.metrics;
  const mb = b.metrics;
  const deltas = {
    ttfbMs: diff(ma.ttfbMs, mb.ttfbMs),
    ttftMs: diff(ma.ttftMs, mb.ttftMs),
    itlP50Ms: diff(ma.itl?.p50, mb.itl?.p50),
    itlP99Ms: diff(ma.itl?.p99, mb.itl?.p99),
    probeDelayP50Ms: diff(ma.probe?.delay.p50, mb.probe?.delay.p50),
    probeDelayP99Ms: diff(ma.probe?.delay.p99, mb.probe?.delay.p99),
  };
  const labelsA = a.hops.map((h) => h.label);
  const labelsB = b.hops.map((h) => h.label);
  const onlyA = labelsA.filter((l) => !labelsB.includes(l));
  const onlyB = labelsB.filter((l) => !labelsA.includes(l));
  const between = (worse: 'a' | 'b'): string => {
    const only = worse === 'a' ? onlyA : onlyB;
    const [outer, inner] = worse === 'a' ? [a.baseUrl, b.baseUrl] : [b.baseUrl, a.baseUrl];
    return `the hops between ${inner} and ${outer}${only.length > 0 ? ` (${only.join(', ')})` : ''}`;
  };

  const evidence = [
    `A = ${a.baseUrl}: ${describeHops(a.hops)}`,
    `B = ${b.baseUrl}: ${describeHops(b.hops)}`,
    `time to first byte: A ${ms(ma.ttfbMs)}, B ${ms(mb.ttfbMs)} (${signed(deltas.ttfbMs)})`,
    `time to first token: A ${ms(ma.ttftMs)}, B ${ms(mb.ttftMs)} (${signed(deltas.ttftMs)})`,
    `inter-token p50/p99: A ${ms(ma.itl?.p50)}/${ms(ma.itl?.p99)}, B ${ms(mb.itl?.p50)}/${ms(mb.itl?.p99)}`,
    `tokens per read: A ${ma.tokensPerDelivery?.toFixed(2) ?? '—'}, B ${mb.tokensPerDelivery?.toFixed(2) ?? '—'}`,
  ];
  if (ma.probe && mb.probe) {
    evidence.push(
      `probe delay per token p50/p99: A ${ms(ma.probe.delay.p50)}/${ms(ma.probe.delay.p99)}, B ${ms(mb.probe.delay.p50)}/${ms(mb.probe.delay.p99)} — added between them ${signed(deltas.probeDelayP50Ms)} / ${signed(deltas.probeDelayP99Ms)}`,
    );
  }

  const failing = (p: ProbeResult): Check[] => p.checks.filter((c) => c.status === 'fail');
  const ids = (cs: Check[]): Set<string> => new Set(cs.map((c) => c.id));
  const failA = failing(a);
  const failB = failing(b);
  const newInA = failA.filter((c) => !ids(failB).has(c.id));
  const newInB = failB.filter((c) => !ids(failA).has(c.id));
  const shared = failA.filter((c) => ids(failB).has(c.id));
  const base = { id: 'compare', group: 'compare', probe: 'compare', title: 'Where the two URLs differ' } as const;
  let result: Check;
  if (newInA.length > 0 || newInB.length > 0) {
    const worse = newInA.length > 0 ? 'a' : 'b';
    const first = (worse === 'a' ? newInA : newInB)[0] as Check;
    for (const c of [...newInA, ...newInB]) evidence.push(`fails only at ${c === first || newInA.includes(c) ? 'A' : 'B'}: ${c.id} — ${c.summary}`);
    // The worse URL is Sluice and Sluice says its upstream already arrived buffered: of the hops between the two URLs,
    // the one to blame is behind Sluice, not Sluice (issue 18).
    const hop = (worse === 'a' ? a : b).sluiceHop;
    if (hop !== null && hop.buffered && (first.group === 'buffering' || first.group === 'hops')) {
      const behind = `${SIDE_NAMES['engine-side']} (upstream ${hop.upstream ?? '?'}${hop.server !== null ? `, Server: ${hop.server}` : ''})`;
      evidence.push(`Sluice's hop report at ${worse === 'a' ? 'A' : 'B'}: the stream arrived at Sluice already buffered (${hop.reason ?? 'bursts'})`);
      result = check({
        ...base,
        status: 'fail',
        summary: `${first.title.toLowerCase()} breaks ${behind}, among ${between(worse)}: Sluice received the stream already buffered and relayed it as it came; Sluice is not the hop that buffers`,
        evidence,
        fix: first.fix,
        hop: behind,
      });
    } else {
      result = check({ ...base, status: 'fail', summary: `${first.title.toLowerCase()} breaks in ${between(worse)}: ${first.summary}`, evidence, fix: first.fix, hop: between(worse) });
    }
  } else if (shared.length > 0) {
    const first = shared[0] as Check;
    result = check({
      ...base,
      status: 'fail',
      summary: `both URLs fail ${first.id}: the problem is already there at the inner URL (the engine or the hops before it)`,
      evidence,
      fix: first.fix,
    });
  } else {
    const added = deltas.probeDelayP50Ms ?? deltas.itlP50Ms;
    const addedP99 = deltas.probeDelayP99Ms ?? deltas.itlP99Ms;
    const worse = (added ?? 0) >= 0 ? 'a' : 'b';
    const big = Math.abs(added ?? 0) >= 50 || Math.abs(addedP99 ?? 0) >= 200;
    result = check({
      ...base,
      status: big ? 'warn' : 'pass',
      summary: `${between(worse)} add ${ms(Math.abs(added ?? 0))} per token at p50${addedP99 !== null ? ` and ${ms(Math.abs(addedP99))} at p99` : ''}${ma.probe && mb.probe ? ' (measured with probe stamps)' : ' (from arrival gaps)'}`,
      evidence,
      fix: big ? 'look for write coalescing or small buffers on those hops (see the burst evidence of each probe)' : null,
      hop: big ? between(worse) : null,
    });
  }
  return { a: a.baseUrl, b: b.baseUrl, deltas, onlyA, onlyB, check: result };
}

function ms(v: number | null | undefined): string {
  if (v === null || v === undefined) return '—';
  return Math.abs(v) < 10 ? `${v.toFixed(1)} ms` : `${Math.round(v)} ms`;
}

function signed(v: number | null): string {
  if (v === null) return '—';
  return `${v >= 0 ? '+' : '−'}${ms(Math.abs(v))}`;
}
