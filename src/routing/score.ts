/**
 * The scoring of replicas (docs/routing.md, "Scoring"): pure, on fixed figures, so it is tested with snapshots. A
 * lower cost is better; its unit is one request waiting in an engine's queue.
 */

export type Strategy = 'least-loaded' | 'engine-aware' | 'prefix-aware' | 'round-robin';

/** An engine's figures as last scraped, while fresh. */
export interface EngineFigures {
  waiting: number;
  running: number;
  kvUsage: number | undefined;
  /** Sluice's requests in flight to it when the figures were taken. */
  inFlightAtScrape: number;
}

export interface Candidate {
  /** Not cooling down after a failure. */
  healthy: boolean;
  /** Sluice's requests in flight to it now. */
  inFlight: number;
  /** Fresh engine figures; undefined when unknown (no metrics, or stale). */
  engine: EngineFigures | undefined;
  /** Leading prompt blocks it was sent recently (prefix-aware). */
  matched: number;
  /** Rendezvous weight of the request's session key for this replica, in [0,1); 0 without a key. */
  session: number;
}

export interface ScoreParams {
  /** The prompt's whole blocks. */
  totalBlocks: number;
  /** What a whole-prompt match is worth, in queued requests (`routing.prefix.weight`). */
  prefixWeight: number;
  /** Queue length from which a replica is saturated; 0 = never (`routing.saturation.queue_threshold`). */
  queueThreshold: number;
}

export interface Score {
  cost: number;
  /** Its estimated queue reached the threshold (only known figures can say so). */
  saturated: boolean;
  /** The estimated queue: the engine's plus what Sluice sent since the scrape; undefined when unknown. */
  queued: number | undefined;
}

/** A request in the running batch costs this many queued ones: it slows the batch, it does not wait. */
export const RUNNING_WEIGHT = 0.1;
/** A full KV cache costs this many queued requests: the engine is about to queue or preempt. */
export const KV_WEIGHT = 2;
/** KV usage below this costs nothing: the engine is far from preempting, and small differences are noise. */
export const KV_FREE = 0.5;
/** A replica whose figures are unknown costs its in-flight requests (all counted as queued) plus this. */
export const UNKNOWN_PENALTY = 0.5;

/** One replica's cost under a strategy. */
export function score(c: Candidate, strategy: Strategy, p: ScoreParams): Score {
  if (strategy === 'round-robin') return { cost: 0, saturated: false, queued: undefined };
  if (strategy === 'least-loaded') return { cost: c.inFlight, saturated: false, queued: undefined };
  const e = c.engine;
  if (e === undefined) return { cost: c.inFlight + UNKNOWN_PENALTY, saturated: false, queued: undefined };
  // What changed since the scrape, seen from Sluice (so a burst between two scrapes is not all sent to the replica that
  // looked idle): requests sent since join the queue if the engine had one (its batch was full), else its batch;
  // requests finished since leave the queue first, then the batch.
  const delta = c.inFlight - e.inFlightAtScrape;
  let queued: number;
  let running: number;
  if (delta >= 0) {
    queued = e.waiting > 0 ? e.waiting + delta : 0;
    running = e.waiting > 0 ? e.running : e.running + delta;
  } else {
    queued = Math.max(0, e.waiting + delta);
    running = Math.max(0, e.running + Math.min(0, e.waiting + delta));
  }
  let cost = queued + RUNNING_WEIGHT * running + (KV_WEIGHT * Math.max(0, (e.kvUsage ?? 0) - KV_FREE)) / (1 - KV_FREE);
  const saturated = p.queueThreshold > 0 && queued >= p.queueThreshold;
  if (strategy === 'prefix-aware' && !saturated && p.totalBlocks > 0) cost -= (p.prefixWeight * c.matched) / p.totalBlocks;
  return { cost, saturated, queued };
}

/** Costs are compared in hundredths, so float noise never outranks the session or the turn. */
const quantized = (cost: number): number => Math.round(cost * 100);

/**
 * Indices of `candidates` best first: healthy before cooling down, unsaturated before saturated, lower cost, then
 * the session's preferred replica, then rotation from `start` (so equal replicas share the load).
 */
export function rank(candidates: readonly Candidate[], strategy: Strategy, p: ScoreParams, start: number): { order: number[]; scores: Score[] } {
  const scores = candidates.map((c) => score(c, strategy, p));
  const n = candidates.length;
  const order = candidates.map((_, i) => i);
  order.sort((a, b) => {
    const ca = candidates[a] as Candidate;
    const cb = candidates[b] as Candidate;
    const sa = scores[a] as Score;
    const sb = scores[b] as Score;
    if (ca.healthy !== cb.healthy) return ca.healthy ? -1 : 1;
    if (sa.saturated !== sb.saturated) return sa.saturated ? 1 : -1;
    const qa = quantized(sa.cost);
    const qb = quantized(sb.cost);
    if (qa !== qb) return qa - qb;
    if (ca.session !== cb.session) return cb.session - ca.session;
    return ((a - start + n) % n) - ((b - start + n) % n);
  });
  return { order, scores };
}

/** A stable weight in [0,1) for (session key, replica): the highest is the session's replica (rendezvous hashing). */
export function rendezvous(key: string, replica: string): number {
  let h = 0x811c9dc5;
  const s = `${key}\u0000${replica}`;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  return (h >>> 0) / 0x100000000;
}
