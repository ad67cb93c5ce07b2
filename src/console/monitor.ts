import type { GenerationMonitor } from '../generation/context.ts';
import type { RequestLogEntry } from '../generation/request-log.ts';

/** How long the time-to-first-token figures and per-key usage look back. */
export const WINDOW_MS = 5 * 60_000;
/** TTFT samples kept (all upstreams together): at a few hundred requests a second, the last seconds of the window. */
const MAX_TTFT_SAMPLES = 4096;
/** Model names come from clients (a refused request's unknown model too): kept this long at most. */
const MAX_TEXT = 200;

/** A request as the console shows it: the log line's fields, with when it started and which stored key sent it. */
export interface ConsoleRequest {
  id: string;
  method: string;
  path: string;
  model: string | null;
  upstream: string | null;
  /** The stored key's name (never the key); null for a static key or no auth. */
  key: string | null;
  stream: boolean;
  /** Epoch ms. */
  started_at: number;
  /** Still running: `in_flight`; else the log line's outcome (`completed`, `upstream_error`, `truncated`, …). */
  outcome: string;
  status: number;
  error_code: string | null;
  ttft_ms: number | null;
  tokens_in: number | null;
  tokens_out: number | null;
  tokens_source: 'reported' | 'counted' | null;
  duration_ms: number | null;
  /** Mid-stream failovers (docs/failover.md), ms after the request's arrival; absent when there were none. */
  events?: Array<{ at_ms: number; type: 'failover'; from: string; to: string | null; reason: string }>;
}

/** A generation in flight, or finished (its log line complete): turned into a ConsoleRequest only when asked for. */
interface Running {
  entry: RequestLogEntry;
  key: string | null;
  startedAt: number;
}

interface TtftSample {
  at: number;
  upstream: string;
  ms: number;
}

const cap = (s: string | undefined): string | null => (s === undefined ? null : s.length > MAX_TEXT ? `${s.slice(0, MAX_TEXT)}…` : s);

/**
 * What the console's live view knows about requests: the generations in flight, a bounded ring of the last finished
 * ones, and time-to-first-token samples per upstream over the last minutes. Fed once at each generation's start and
 * end (never per chunk); memory is bounded by `recent` records and MAX_TTFT_SAMPLES samples, whatever clients send.
 */
export class ConsoleMonitor implements GenerationMonitor {
  readonly #running = new Map<RequestLogEntry, Running>();
  readonly #recent: Ring<Running>;
  readonly #ttft = new Ring<TtftSample>(MAX_TTFT_SAMPLES);
  readonly #listeners = new Set<() => void>();
  readonly #now: () => number;

  constructor(recent: number, now: () => number = Date.now) {
    this.#recent = new Ring(recent);
    this.#now = now;
  }

  started(entry: RequestLogEntry, key: string | null): void {
    this.#running.set(entry, { entry, key, startedAt: this.#now() });
    this.#changed();
  }

  ended(entry: RequestLogEntry, key: string | null): void {
    const run = this.#running.get(entry);
    this.#running.delete(entry);
    const now = this.#now();
    // The log line is final once the generation ended: kept as it is, read when the console asks.
    this.#recent.push(run ?? { entry, key, startedAt: now - entry.duration_ms });
    if (entry.outcome === 'completed' && entry.stream && entry.ttft_ms !== undefined && entry.upstream !== undefined) {
      this.#ttft.push({ at: now, upstream: entry.upstream, ms: entry.ttft_ms });
    }
    this.#changed();
  }

  /** Generations in flight, oldest first, at most `limit`. */
  inFlight(limit: number): ConsoleRequest[] {
    const out: ConsoleRequest[] = [];
    for (const r of this.#running.values()) {
      if (out.length >= limit) break;
      out.push(toRequest(r.entry, r.key, r.startedAt, 'in_flight'));
    }
    return out;
  }

  get inFlightCount(): number {
    return this.#running.size;
  }

  /** Finished requests, newest first, at most `limit`. */
  recent(limit: number): ConsoleRequest[] {
    const out: ConsoleRequest[] = [];
    for (let i = this.#recent.size - 1; i >= 0 && out.length < limit; i--) out.push(finished(this.#recent.at(i)));
    return out;
  }

  /** One request by id: in flight, or among the recent ones (the latest when a client reused an id). */
  find(id: string): ConsoleRequest | undefined {
    for (const r of this.#running.values()) if (r.entry.id === id) return toRequest(r.entry, r.key, r.startedAt, 'in_flight');
    for (let i = this.#recent.size - 1; i >= 0; i--) if (this.#recent.at(i).entry.id === id) return finished(this.#recent.at(i));
    return undefined;
  }

  /** Time to first token of completed streams per upstream over the window: p50 and p99 (nearest rank), ms. */
  ttft(): Map<string, { p50: number; p99: number; count: number }> {
    const since = this.#now() - WINDOW_MS;
    const by = new Map<string, number[]>();
    for (let i = 0; i < this.#ttft.size; i++) {
      const s = this.#ttft.at(i);
      if (s.at < since) continue;
      let list = by.get(s.upstream);
      if (list === undefined) by.set(s.upstream, (list = []));
      list.push(s.ms);
    }
    const out = new Map<string, { p50: number; p99: number; count: number }>();
    for (const [u, list] of by) {
      list.sort((a, b) => a - b);
      out.set(u, { p50: rank(list, 0.5), p99: rank(list, 0.99), count: list.length });
    }
    return out;
  }

  /** Requests and tokens per stored key among the recent requests of the window (keys with a name only). */
  keyUsage(): Array<{ key: string; requests: number; tokens_in: number; tokens_out: number }> {
    const since = this.#now() - WINDOW_MS;
    const by = new Map<string, { key: string; requests: number; tokens_in: number; tokens_out: number }>();
    for (let i = 0; i < this.#recent.size; i++) {
      const r = finished(this.#recent.at(i));
      if (r.key === null || r.started_at < since) continue;
      let u = by.get(r.key);
      if (u === undefined) by.set(r.key, (u = { key: r.key, requests: 0, tokens_in: 0, tokens_out: 0 }));
      u.requests++;
      u.tokens_in += r.tokens_in ?? 0;
      u.tokens_out += r.tokens_out ?? 0;
    }
    return [...by.values()].sort((a, b) => b.requests - a.requests);
  }

  /** Calls `fn` after every start and end; returns the unsubscribe function. */
  onChange(fn: () => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  #changed(): void {
    for (const fn of this.#listeners) fn();
  }
}

/**
 * The last `capacity` items pushed, oldest first by index. A push when full overwrites the oldest in place: an
 * array's `splice(0, 1)` moved every kept item on each finished request (4,096 TTFT samples: 4% of a request's CPU).
 */
class Ring<T> {
  readonly #items: T[] = [];
  readonly #capacity: number;
  #start = 0;

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  get size(): number {
    return this.#items.length;
  }

  push(item: T): void {
    if (this.#items.length < this.#capacity) {
      this.#items.push(item);
      return;
    }
    this.#items[this.#start] = item;
    this.#start = (this.#start + 1) % this.#capacity;
  }

  /** The i-th oldest kept item, 0 ≤ i < size. */
  at(i: number): T {
    return this.#items[(this.#start + i) % this.#items.length] as T;
  }
}

function rank(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? 0;
}

const finished = (r: Running): ConsoleRequest => toRequest(r.entry, r.key, r.startedAt, r.entry.outcome);

function toRequest(e: RequestLogEntry, key: string | null, startedAt: number, outcome: string): ConsoleRequest {
  const running = outcome === 'in_flight';
  return {
    id: e.id,
    method: e.method,
    path: e.path,
    model: cap(e.model),
    upstream: e.upstream ?? null,
    key: cap(key ?? undefined),
    stream: e.stream,
    started_at: startedAt,
    outcome,
    status: e.status,
    error_code: e.error_code ?? null,
    ttft_ms: running ? null : (e.ttft_ms ?? null),
    tokens_in: running ? null : (e.tokens_in ?? null),
    tokens_out: running ? null : (e.tokens_out ?? null),
    tokens_source: running ? null : (e.tokens_source ?? null),
    duration_ms: running ? null : e.duration_ms,
    ...(e.failovers === undefined ? {} : { events: e.failovers.map((f) => ({ at_ms: f.at_ms ?? 0, type: 'failover' as const, from: f.from, to: f.to ?? null, reason: f.reason })) }),
  };
}
