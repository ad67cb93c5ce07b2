/**
 * A check's verdict. A check fails only for what breaks streaming for a client now (buffering seen, truncation,
 * SDK-breaking framing, an idle stream cut, CORS blocking the read); a missing protective setting on a stream that
 * works is a warning. `skip` is for a check that could not run against this target; it does not change the exit code.
 */

export type CheckStatus = 'pass' | 'warn' | 'fail' | 'skip';

export type CheckGroup = 'buffering' | 'hops' | 'headers' | 'sdk' | 'idle' | 'cors' | 'compare';

export interface Check {
  /** Stable id, e.g. "buffering", "headers.cache-control", "sdk.done". */
  id: string;
  group: CheckGroup;
  /** Which probe it is about ("chat", "completions", "responses", "idle", "cors", "compare"). */
  probe: string;
  title: string;
  status: CheckStatus;
  /** One sentence: what was found. */
  summary: string;
  /** The measurements and bytes behind it. */
  evidence: string[];
  /** The concrete change that fixes it, when not passing. */
  fix: string | null;
  /** The hop held responsible, when one is named. */
  hop: string | null;
}

const RANK: Record<CheckStatus, number> = { skip: 0, pass: 1, warn: 2, fail: 3 };

/** The worst status among checks ('pass' when there are none). */
export function worstStatus(checks: readonly Check[]): CheckStatus {
  let worst: CheckStatus = 'pass';
  for (const c of checks) if (RANK[c.status] > RANK[worst]) worst = c.status;
  return worst;
}

/** Exit code: 0 all pass, 1 warnings only, 2 any failure. */
export function exitCodeFor(checks: readonly Check[]): 0 | 1 | 2 {
  const worst = worstStatus(checks);
  return worst === 'fail' ? 2 : worst === 'warn' ? 1 : 0;
}

/** Builds a check with the optional parts defaulted. */
export function check(
  fields: Pick<Check, 'id' | 'group' | 'probe' | 'title' | 'status' | 'summary'> & Partial<Pick<Check, 'evidence' | 'fix' | 'hop'>>,
): Check {
  return { evidence: [], fix: null, hop: null, ...fields };
}
