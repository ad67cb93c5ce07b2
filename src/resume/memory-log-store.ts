import { SluiceError } from '../errors.ts';
import type { ControlSignal, LogBatch, LogStoreLimits, LogWriter, StreamInfo, StreamLogStore, StreamMeta } from './log-store.ts';

interface Entry {
  meta: StreamMeta;
  events: string[];
  bytes: number;
  ended: boolean;
  /** `Date.now()` when it ended; finished logs are dropped oldest first when room is needed. */
  endedAt: number;
  readers: number;
  control: (signal: ControlSignal) => void;
  /** Readers waiting for the next events. */
  waiters: Set<() => void>;
  expiry: NodeJS.Timeout | undefined;
}

/**
 * The resumable streams of one instance, in memory (src/resume/log-store.ts has the contract): each stream's events as
 * SSE frames, bounded per stream and in total (counted in UTF-8 bytes of the frames), finished logs kept for `ttlMs`.
 */
export class MemoryLogStore implements StreamLogStore {
  readonly #limits: LogStoreLimits;
  readonly #streams = new Map<string, Entry>();
  #total = 0;

  constructor(limits: LogStoreLimits) {
    this.#limits = limits;
  }

  /** Bytes held by every log (for tests and metrics). */
  get totalBytes(): number {
    return this.#total;
  }

  /** Logs held, live and finished. */
  get size(): number {
    return this.#streams.size;
  }

  create(meta: StreamMeta, control: (signal: ControlSignal) => void): LogWriter {
    // A new stream needs room to grow: some of its own bound (64 KiB at most), after dropping finished logs.
    if (!this.#makeRoom(Math.min(this.#limits.maxStreamBytes, 64 * 1024))) {
      throw new SluiceError('SLUICE_RESUME_LOG_FULL', `the gateway holds ${this.#limits.maxTotalBytes} bytes of resumable streams (resume.max_total_bytes); retry later or send the request without X-Sluice-Resume`);
    }
    const e: Entry = { meta, events: [], bytes: 0, ended: false, endedAt: 0, readers: 0, control, waiters: new Set(), expiry: undefined };
    this.#streams.set(meta.id, e);
    return {
      append: (events) => this.#append(e, events, false),
      end: (last) => {
        if (e.ended) return;
        this.#append(e, last, true);
        e.ended = true;
        e.endedAt = Date.now();
        this.#wake(e);
        e.expiry = setTimeout(() => this.#drop(e), this.#limits.ttlMs);
        e.expiry.unref();
      },
    };
  }

  #append(e: Entry, events: readonly string[], force: boolean): boolean {
    if (e.ended || events.length === 0) return true;
    if (this.#streams.get(e.meta.id) !== e) return false; // dropped meanwhile (closing)
    let size = 0;
    for (const f of events) size += Buffer.byteLength(f);
    if (!force) {
      if (e.bytes + size > this.#limits.maxStreamBytes) return false;
      if (this.#total + size > this.#limits.maxTotalBytes && !this.#makeRoom(size)) return false;
    }
    for (const f of events) e.events.push(f);
    e.bytes += size;
    this.#total += size;
    this.#wake(e);
    return true;
  }

  /** Drops finished logs, oldest first, until `size` more bytes fit; whether they do. */
  #makeRoom(size: number): boolean {
    const max = this.#limits.maxTotalBytes;
    if (this.#total + size <= max) return true;
    const finished = [...this.#streams.values()].filter((e) => e.ended).sort((a, b) => a.endedAt - b.endedAt);
    for (const e of finished) {
      this.#drop(e);
      if (this.#total + size <= max) return true;
    }
    return false;
  }

  #drop(e: Entry): void {
    if (this.#streams.get(e.meta.id) !== e) return;
    this.#streams.delete(e.meta.id);
    if (e.expiry) clearTimeout(e.expiry);
    this.#total -= e.bytes;
    e.events = [];
    e.bytes = 0;
    this.#wake(e); // readers waiting on it find it gone
  }

  #wake(e: Entry): void {
    if (e.waiters.size === 0) return;
    const ws = [...e.waiters];
    e.waiters.clear();
    for (const w of ws) w();
  }

  async info(id: string): Promise<StreamInfo | undefined> {
    const e = this.#streams.get(id);
    return e === undefined ? undefined : { meta: e.meta, count: e.events.length, ended: e.ended };
  }

  async read(id: string, from: number, signal: AbortSignal): Promise<LogBatch | undefined> {
    for (;;) {
      const e = this.#streams.get(id);
      if (e === undefined || signal.aborted) return undefined;
      if (e.events.length > from || e.ended) {
        return { events: from < e.events.length ? e.events.slice(from) : [], count: e.events.length, ended: e.ended };
      }
      await new Promise<void>((resolve) => {
        const done = (): void => {
          signal.removeEventListener('abort', done);
          e.waiters.delete(done);
          resolve();
        };
        e.waiters.add(done);
        signal.addEventListener('abort', done, { once: true });
      });
    }
  }

  async snapshot(id: string): Promise<LogBatch | undefined> {
    const e = this.#streams.get(id);
    return e === undefined ? undefined : { events: e.events.slice(), count: e.events.length, ended: e.ended };
  }

  async signal(id: string, signal: ControlSignal): Promise<boolean> {
    const e = this.#streams.get(id);
    if (e === undefined || e.ended) return false;
    e.control(signal);
    return true;
  }

  async attachReader(id: string): Promise<'ok' | 'full' | 'unknown'> {
    const e = this.#streams.get(id);
    if (e === undefined) return 'unknown';
    if (e.readers >= this.#limits.maxReaders) return 'full';
    e.readers++;
    if (!e.ended) e.control({ type: 'readers', count: e.readers });
    return 'ok';
  }

  async detachReader(id: string): Promise<void> {
    const e = this.#streams.get(id);
    if (e === undefined || e.readers === 0) return;
    e.readers--;
    if (!e.ended) e.control({ type: 'readers', count: e.readers });
  }

  async close(): Promise<void> {
    for (const e of [...this.#streams.values()]) this.#drop(e);
  }
}
