import type { StateStore, UsageRecord } from '../state/store.ts';

/** Records held before a flush is forced, whatever the interval. */
const MAX_BATCH = 1000;
/** Records held at most while the store fails; past it the oldest are dropped (and counted). */
const MAX_PENDING = 100_000;

/**
 * The usage ledger's writer: one record per request, appended to the store in batches off the request path (every
 * `flushMs`, or at MAX_BATCH records), and flushed on `close()`, so a normal shutdown loses nothing. A batch the
 * store refuses is kept and retried with the next one, up to MAX_PENDING records.
 */
export class Ledger {
  readonly #store: StateStore;
  readonly #notice: (line: string) => void;
  #pending: UsageRecord[] = [];
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> | undefined;
  #failed = false;
  #dropped = 0;

  constructor(store: StateStore, flushMs: number, notice: (line: string) => void) {
    this.#store = store;
    this.#notice = notice;
    this.#timer = setInterval(() => void this.flush(), flushMs);
    this.#timer.unref();
  }

  /** Records dropped so far because the store failed for too long (the oldest go first). */
  get dropped(): number {
    return this.#dropped;
  }

  /** Records waiting to be written. */
  get pending(): number {
    return this.#pending.length;
  }

  /** Queues a request's record (an array push: the request's own cost). */
  add(r: UsageRecord): void {
    this.#pending.push(r);
    if (this.#pending.length >= MAX_BATCH) void this.flush();
  }

  /** Writes what is queued; resolves when it is written (or kept for the next try). */
  flush(): Promise<void> {
    if (this.#flushing) return this.#flushing.then(() => this.flush());
    if (this.#pending.length === 0) return Promise.resolve();
    const batch = this.#pending;
    this.#pending = [];
    this.#flushing = this.#store
      .appendUsage(batch)
      .then(
        () => {
          if (this.#failed) this.#notice(`usage ledger: ${this.#store.url} is writable again`);
          this.#failed = false;
        },
        (err: unknown) => {
          if (!this.#failed) this.#notice(`usage ledger: writing to ${this.#store.url} failed (${(err as Error).message}); keeping records to retry`);
          this.#failed = true;
          this.#pending = batch.concat(this.#pending);
          const over = this.#pending.length - MAX_PENDING;
          if (over > 0) {
            this.#pending.splice(0, over);
            this.#dropped += over;
            this.#notice(`usage ledger: ${this.#dropped} records dropped so far while the store fails`);
          }
        },
      )
      .finally(() => {
        this.#flushing = undefined;
      });
    return this.#flushing;
  }

  /** Stops the timer and writes everything queued. */
  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.flush();
  }
}
