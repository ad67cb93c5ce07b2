/**
 * Sample collection and summary statistics for the benchmark. Pure: no I/O, no clocks.
 */

export interface Summary {
  count: number;
  p50: number;
  p99: number;
  max: number;
  mean: number;
}

export const EMPTY_SUMMARY: Summary = { count: 0, p50: NaN, p99: NaN, max: NaN, mean: NaN };

/**
 * Nearest-rank percentile of an ascending array: the smallest sample with at least p% of the samples at or below
 * it. NaN when there are no samples.
 */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  const rank = Math.min(n, Math.max(1, Math.ceil((p / 100) * n)));
  return sorted[rank - 1] as number;
}

/** A growable array of float samples (a Float64Array underneath, so 10⁶ samples stay cheap). */
export class Samples {
  #buf: Float64Array;
  #n = 0;

  constructor(initial = 1024) {
    this.#buf = new Float64Array(Math.max(16, initial));
  }

  get length(): number {
    return this.#n;
  }

  push(v: number): void {
    if (this.#n === this.#buf.length) {
      const next = new Float64Array(this.#buf.length * 2);
      next.set(this.#buf);
      this.#buf = next;
    }
    this.#buf[this.#n++] = v;
  }

  /** p50, p99, max and mean of the samples so far. */
  summary(): Summary {
    return summarize(this.#buf.subarray(0, this.#n));
  }
}

/** Summarizes samples (the input is not modified). */
export function summarize(samples: ArrayLike<number>): Summary {
  const n = samples.length;
  if (n === 0) return EMPTY_SUMMARY;
  const sorted = Float64Array.from(samples).sort();
  let sum = 0;
  for (let i = 0; i < n; i++) sum += sorted[i] as number;
  return { count: n, p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted[n - 1] as number, mean: sum / n };
}

/**
 * Joins client-side close times with upstream-side close times by stream id and returns the delays (upstream close
 * − client close, ms), plus how many client closes the upstream never reported.
 */
export function joinCloses(
  client: ReadonlyArray<readonly [string, number]>,
  upstream: ReadonlyArray<readonly [string, number]>,
): { delays: number[]; unmatched: number } {
  const seen = new Map<string, number>();
  for (const [id, t] of upstream) if (!seen.has(id)) seen.set(id, t);
  const delays: number[] = [];
  let unmatched = 0;
  for (const [id, t] of client) {
    const u = seen.get(id);
    if (u === undefined) unmatched++;
    else delays.push(u - t);
  }
  return { delays, unmatched };
}
