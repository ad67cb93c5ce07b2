/** Warnings about a failing store, at most one per this period (the first one at once). */
const WARN_EVERY_MS = 10_000;

/**
 * Whether the state store answers, as the gateway's parts see it: the Redis connection's own events and every failed
 * command report here. Feeds the `sluice_state_store_up` and `sluice_state_store_errors_total` metrics, the outage
 * grace of the Redis limiter (docs/keys.md, "The store being down"), and one warning line per 10 s while it fails.
 */
export class StoreHealth {
  readonly #url: string;
  #up = true;
  /** `Date.now()` of the first failure of the current outage. */
  #downSince: number | undefined;
  #errors = 0;
  #lastWarn = -Infinity;
  #suppressed = 0;

  constructor(url: string) {
    this.#url = url;
  }

  /** Where warnings go: nowhere until the gateway hands its logger over (`sluice keys` and `usage` print errors). */
  notice: (line: string) => void = () => {};

  get up(): boolean {
    return this.#up;
  }

  /** Errors since start (failed commands and lost connections). */
  get errors(): number {
    return this.#errors;
  }

  /** Milliseconds since the outage began; 0 while up. */
  downFor(now = Date.now()): number {
    return this.#downSince === undefined ? 0 : now - this.#downSince;
  }

  /** Something failed: the store counts as down from now (or from the outage's first failure). */
  failed(err: unknown, what: string, now = Date.now()): void {
    this.#errors++;
    this.#up = false;
    this.#downSince ??= now;
    if (now - this.#lastWarn < WARN_EVERY_MS) {
      this.#suppressed++;
      return;
    }
    const more = this.#suppressed > 0 ? ` (${this.#suppressed} more errors since the last warning)` : '';
    this.#lastWarn = now;
    this.#suppressed = 0;
    this.notice(`state store ${this.#url}: ${what} failed (${err instanceof Error ? err.message : String(err)}); down for ${Math.round(this.downFor(now) / 100) / 10} s${more}`);
  }

  /** The store answered again. */
  recovered(now = Date.now()): void {
    if (this.#up) return;
    const was = this.downFor(now);
    this.#up = true;
    this.#downSince = undefined;
    this.#lastWarn = -Infinity;
    this.#suppressed = 0;
    this.notice(`state store ${this.#url} is reachable again after ${Math.round(was / 100) / 10} s`);
  }
}
