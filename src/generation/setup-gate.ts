/**
 * Fairness under a wave of new requests (issue 16; docs/performance.md, "Set-up in slices"). When hundreds of
 * requests arrive in one read of the event loop, Node runs each one's set-up (admission, routing, the relay, the
 * upstream request) right after its read, and undici writes all their upstream requests in the next check phase: the
 * chunks of the streams already open wait behind all of it. The gate lets set-ups run for at most `sliceMs` per turn
 * of the event loop; the rest wait, in arrival order, for the next turn, after the loop has polled for I/O again.
 *
 * With no burst a set-up passes at once (`enter()` returns undefined: no promise, no tick). A waiting set-up is
 * resumed even if its client left meanwhile: the generation sees the cancellation right after and ends cheaply.
 */
export class SetupGate {
  readonly #sliceMs: number;
  readonly #waiting: Array<() => void> = [];
  /** When the current slice began; NaN when no slice is open. */
  #sliceStart = Number.NaN;
  readonly #now: () => number;

  constructor(sliceMs: number, now: () => number = () => performance.now()) {
    this.#sliceMs = sliceMs;
    this.#now = now;
  }

  /** Set-ups waiting for a later turn. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /** undefined: go on now. A promise: wait for it (it never rejects). */
  enter(): Promise<void> | undefined {
    if (this.#waiting.length === 0) {
      const now = this.#now();
      if (Number.isNaN(this.#sliceStart)) this.#open(now);
      if (now - this.#sliceStart < this.#sliceMs) return undefined;
    }
    return new Promise<void>((resolve) => this.#waiting.push(resolve));
  }

  #open(now: number): void {
    this.#sliceStart = now;
    // The slice ends with this turn of the loop: the check phase comes after the poll phase's reads.
    setImmediate(this.#turn);
  }

  readonly #turn = (): void => {
    this.#sliceStart = Number.NaN;
    if (this.#waiting.length === 0) return;
    this.#open(this.#now());
    this.#next();
  };

  /**
   * Resumes the next waiting set-up, then comes back as a microtask queued behind it, so the time it took counts
   * against the slice before the one after it is resumed.
   */
  readonly #next = (): void => {
    const resume = this.#waiting[0];
    if (resume === undefined || this.#now() - this.#sliceStart >= this.#sliceMs) return;
    this.#waiting.shift();
    resume();
    queueMicrotask(this.#next);
  };
}
