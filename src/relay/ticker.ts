/**
 * One timer for every stream of a gateway. Streams register a `tick(now)` callback; the ticker calls each one every
 * `intervalMs` with a coarse clock. Per-chunk code only stores `ticker.now` (no timer is created, refreshed or
 * cleared per chunk), and 5,000 idle streams cost one interval, not 5,000 timeouts.
 */
export interface Tickable {
  tick(now: number): void;
}

export class Ticker {
  #now = Date.now();
  readonly intervalMs: number;
  #streams = new Set<Tickable>();
  #timer: NodeJS.Timeout | undefined;

  constructor(intervalMs: number) {
    this.intervalMs = intervalMs;
  }

  /**
   * Coarse wall clock (ms), updated every tick; cheap to read on the hot path. While no stream is registered the
   * timer is stopped and the stored value goes stale (for hours on a quiet gateway), so it is read afresh then: a
   * stream that takes its start time from here must never see the time of the last tick before a quiet period.
   */
  get now(): number {
    return this.#timer === undefined ? (this.#now = Date.now()) : this.#now;
  }

  add(stream: Tickable): void {
    this.#streams.add(stream);
    if (this.#timer === undefined) {
      this.#now = Date.now();
      this.#timer = setInterval(() => this.#run(), this.intervalMs);
      this.#timer.unref();
    }
  }

  delete(stream: Tickable): void {
    this.#streams.delete(stream);
    if (this.#streams.size === 0 && this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  get size(): number {
    return this.#streams.size;
  }

  #run(): void {
    const now = (this.#now = Date.now());
    for (const s of this.#streams) s.tick(now);
  }

  /** Stops the timer (the gateway is closing). */
  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#streams.clear();
  }
}
