import { SluiceError } from '../errors.ts';
import type { KeyLimits } from '../state/store.ts';
import { resetDuration } from './reset-duration.ts';

/** Both per-minute limits are sliding windows of this length: no more than the limit in any 60 s. */
export const WINDOW_MS = 60_000;

interface TokenEntry {
  t: number;
  amount: number;
  /** Still inside the window (counted in `sum`). */
  live: boolean;
}

/** The record of one key's recent admissions, oldest first. Each queue is an array with a moving head. */
class KeyWindow {
  readonly reqs: number[] = [];
  reqHead = 0;
  readonly toks: TokenEntry[] = [];
  tokHead = 0;
  tokSum = 0;
  inFlight = 0;

  expire(now: number): void {
    const from = now - WINDOW_MS;
    while (this.reqHead < this.reqs.length && (this.reqs[this.reqHead] as number) <= from) this.reqHead++;
    while (this.tokHead < this.toks.length) {
      const e = this.toks[this.tokHead] as TokenEntry;
      if (e.t > from) break;
      e.live = false;
      this.tokSum -= e.amount;
      this.tokHead++;
    }
    // Drops the expired part now and then, so memory follows the window's content, not the key's history.
    if (this.reqHead > 256 && this.reqHead * 2 > this.reqs.length) {
      this.reqs.splice(0, this.reqHead);
      this.reqHead = 0;
    }
    if (this.tokHead > 256 && this.tokHead * 2 > this.toks.length) {
      this.toks.splice(0, this.tokHead);
      this.tokHead = 0;
    }
  }

  get requests(): number {
    return this.reqs.length - this.reqHead;
  }
}

/** An admitted request's hold on its key: settle it once, when the request has ended, with the tokens it used. */
export interface Reservation {
  /** Replaces the reserved tokens by `tokens` (still in the window) and frees the concurrency slot. Idempotent. */
  settle(tokens: number): void;
}

export interface Admitted {
  /** OpenAI's `x-ratelimit-*` headers for the limits the key has. */
  headers: Record<string, string>;
  reservation: Reservation;
}

/**
 * What admission asks of a limiter: this process's own (`Limiter`, synchronous: no promise, no microtask on the
 * request's path) or the Redis one shared by every instance (src/limits/redis-limiter.ts, one script call). Either
 * returns the headers and the reservation, or throws the SluiceError to answer (429, or 503 when the store is down
 * for too long).
 */
export interface RateLimiter {
  admit(name: string, limits: KeyLimits, estimate: number): Admitted | Promise<Admitted>;
  /** Stops timers (the Redis limiter renews its concurrency leases). */
  close?(): void;
}

/**
 * Per-key limits in this process: requests and tokens per minute over sliding 60 s windows, and requests in flight.
 * Tokens are reserved at admission (an estimate: docs/keys.md) and settled with the real usage when the request
 * ends, aborted streams included. An admission is a few array operations on the key's own window: no I/O, no
 * allocation beyond its entries.
 */
export class Limiter implements RateLimiter {
  readonly #windows = new Map<string, KeyWindow>();

  /**
   * Admits a request of key `name` with `limits`, reserving `estimate` tokens (capped at the key's tpm, so a large
   * request waits for an empty window instead of being refused for ever), or throws the 429 to answer.
   */
  admit(name: string, limits: KeyLimits, estimate: number, now = performance.now()): Admitted {
    const { rpm, tpm, concurrency } = limits;
    let w = this.#windows.get(name);
    if (w === undefined) this.#windows.set(name, (w = new KeyWindow()));
    w.expire(now);
    const reserve = tpm === null ? 0 : Math.min(Math.max(0, Math.ceil(estimate)), tpm);
    let waitMs = 0;
    const why: string[] = [];
    if (concurrency !== null && w.inFlight >= concurrency) {
      why.push(`${concurrency} concurrent requests`);
      // A slot frees when some request ends, which nothing here can foresee: a second is a polite retry.
      waitMs = Math.max(waitMs, 1000);
    }
    if (rpm !== null && w.requests >= rpm) {
      why.push(`${rpm} requests per minute`);
      waitMs = Math.max(waitMs, (w.reqs[w.reqHead] as number) + WINDOW_MS - now);
    }
    if (tpm !== null && w.tokSum + reserve > tpm) {
      why.push(`${tpm} tokens per minute (this request reserves ${reserve})`);
      waitMs = Math.max(waitMs, tokenWait(w, tpm, reserve, now));
    }
    if (why.length > 0) {
      throw rateLimitedError(name, why, rateHeaders(w, limits, now), waitMs);
    }
    if (rpm !== null) w.reqs.push(now);
    let entry: TokenEntry | undefined;
    if (tpm !== null) {
      entry = { t: now, amount: reserve, live: true };
      w.toks.push(entry);
      w.tokSum += reserve;
    }
    w.inFlight++;
    const win = w;
    let settled = false;
    return {
      headers: rateHeaders(w, limits, now),
      reservation: {
        settle(tokens: number): void {
          if (settled) return;
          settled = true;
          win.inFlight--;
          if (entry?.live) {
            const real = Math.max(0, Math.ceil(tokens));
            win.tokSum += real - entry.amount;
            entry.amount = real;
          }
        },
      },
    };
  }
}

/** The 429 for a request over its key's limits: `why` lists them, `waitMs` is when it would fit. */
export function rateLimitedError(name: string, why: readonly string[], headers: Record<string, string>, waitMs: number): SluiceError {
  const ms = Math.max(1, Math.ceil(waitMs));
  headers['retry-after'] = String(Math.ceil(ms / 1000));
  headers['retry-after-ms'] = String(ms);
  return new SluiceError('SLUICE_RATE_LIMITED', `Rate limit reached for key '${name}': ${why.join(', ')}. Please try again in ${resetDuration(ms)}.`, {
    wireCode: 'rate_limit_exceeded',
    headers,
  });
}

/** How long until enough of the window's tokens expire for `reserve` more to fit under `tpm`. */
function tokenWait(w: KeyWindow, tpm: number, reserve: number, now: number): number {
  let sum = w.tokSum;
  for (let i = w.tokHead; i < w.toks.length; i++) {
    const e = w.toks[i] as TokenEntry;
    sum -= e.amount;
    if (sum + reserve <= tpm) return e.t + WINDOW_MS - now;
  }
  return WINDOW_MS;
}

/**
 * OpenAI's headers for the limits a key has. `remaining` is what the window allows now; `reset` is the time until the
 * window is back to its initial state (its newest entry expires), as OpenAI documents the header.
 */
function rateHeaders(w: KeyWindow, l: KeyLimits, now: number): Record<string, string> {
  const h: Record<string, string> = {};
  if (l.rpm !== null) {
    const n = w.requests;
    h['x-ratelimit-limit-requests'] = String(l.rpm);
    h['x-ratelimit-remaining-requests'] = String(Math.max(0, l.rpm - n));
    h['x-ratelimit-reset-requests'] = resetDuration(n === 0 ? 0 : untilExpiry(w.reqs[w.reqs.length - 1] as number, now));
  }
  if (l.tpm !== null) {
    const n = w.toks.length - w.tokHead;
    h['x-ratelimit-limit-tokens'] = String(l.tpm);
    h['x-ratelimit-remaining-tokens'] = String(Math.max(0, l.tpm - w.tokSum));
    h['x-ratelimit-reset-tokens'] = resetDuration(n === 0 ? 0 : untilExpiry((w.toks[w.toks.length - 1] as TokenEntry).t, now));
  }
  return h;
}

/** Time until an entry made at `t` leaves the window: never more than the window itself, even when `t` was stamped a
 * moment after `now` was read (seen as `1m0.001s` under load). */
function untilExpiry(t: number, now: number): number {
  return Math.max(0, Math.min(WINDOW_MS, t + WINDOW_MS - now));
}
