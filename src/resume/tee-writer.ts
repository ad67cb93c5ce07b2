import { SluiceError } from '../errors.ts';
import type { RequestKind } from '../openai/request.ts';
import type { StreamWriter } from '../relay/writer.ts';
import { DONE_FRAME, HEARTBEAT_FRAME, dataFrame, namedFrame } from '../sse/encode.ts';
import { errorFrame, ID_MODE_HEARTBEAT, withId } from './frames.ts';
import type { LogWriter } from './log-store.ts';

/** A client writer the tee can hand whole frames to (the SSE writers of src/http/). */
export type FrameWriter = StreamWriter & { writeRaw(frames: Buffer): boolean };

/**
 * The writer of a resumable stream: every event the relay writes goes to the stream's log (one `append` per flush)
 * and, while the client that started the stream is still connected, to that client, with the same frames. Once that
 * client has left (`detach`), events go to the log alone and the relay is never held back by a client, so the
 * generation runs on until a reader reconnects or the grace period ends (src/resume/resumable.ts).
 *
 * It has no `writeRaw`: the relay then parses every upstream read into events, and each is logged as one frame.
 */
export class TeeWriter implements StreamWriter {
  #client: FrameWriter | undefined;
  readonly #log: LogWriter;
  readonly #kind: RequestKind;
  readonly #ids: boolean;
  /** Frames (and heartbeats) for the client, written by the next flush. */
  #queue = '';
  /** Events for the log, appended by the next flush. */
  #batch: string[] = [];
  /** Events logged or queued: the number of the last event. */
  #count = 0;
  #opened = false;
  #ended = false;
  /** The log refused a batch: nothing more is written; `onFull` ends the stream. */
  #full = false;
  readonly #onFull: (err: SluiceError) => void;
  /** Why the stream is being stopped, when the owner stops it (cancel, grace expired): the log's last event. */
  #stopReason: SluiceError | undefined;
  /** The relay's drain callback while the client's buffer is full: called at once if the client leaves. */
  #drain: (() => void) | undefined;
  /** Other clients follow the stream from its log (reconnects): a stuck original client must not hold them back. */
  #readers = false;
  readonly #onDropped: (() => void) | undefined;

  /** Rewrites a Responses event before it is logged and sent (background responses: src/resume/background.ts). */
  readonly #rewrite: ((event: string, json: string, n: number) => string) | undefined;

  /** `client`: the client that started the stream; none for a background response created without a stream. */
  constructor(o: { client: FrameWriter | undefined; log: LogWriter; kind: RequestKind; ids: boolean; onFull: (err: SluiceError) => void; rewrite?: ((event: string, json: string, n: number) => string) | undefined; onDropped?: () => void }) {
    this.#client = o.client;
    this.#rewrite = o.rewrite;
    this.#onDropped = o.onDropped;
    this.#log = o.log;
    this.#kind = o.kind;
    this.#ids = o.ids;
    this.#onFull = o.onFull;
  }

  /** Events so far (the cursor of a client that got them all). */
  get count(): number {
    return this.#count;
  }

  /**
   * The client that started the stream left (or is cut): from now on events go to the log only. Its response is torn
   * down, so a client that only half-closed (a FIN, which counts as leaving: src/http/client-gone.ts) is not left
   * waiting on a response that gets nothing more.
   */
  detach(): void {
    const client = this.#client;
    this.#client = undefined;
    this.#queue = '';
    client?.destroy();
    const d = this.#drain;
    this.#drain = undefined;
    d?.(); // the relay was paused on that client's full buffer: it reads the upstream again
  }

  /**
   * Whether other clients follow the stream from its log. While they do, the client that started it no longer holds
   * the generation back: when its buffer is full (a connection that died without a FIN, as when a phone changes
   * network, fills up and then stalls), it is cut and the generation runs on for the readers.
   */
  readersPresent(present: boolean): void {
    this.#readers = present;
    if (present && this.#drain !== undefined) this.#drop();
  }

  /** Cuts the client that started the stream (stuck while others read): its leaving is reported to the owner. */
  #drop(): void {
    if (this.#client === undefined) return;
    this.detach();
    this.#onDropped?.();
  }

  /** The owner is stopping the stream: `err` is the event its log ends with (instead of a client-side abort). */
  stopping(err: SluiceError): void {
    this.#stopReason = err;
  }

  setHeaders(headers: Readonly<Record<string, string>>): void {
    this.#client?.setHeaders?.(headers);
  }

  open(): void {
    if (this.#opened) return;
    this.#opened = true;
    this.#client?.open();
  }

  get opened(): boolean {
    return this.#opened;
  }

  data(json: string): void {
    this.#event(dataFrame(json));
  }

  named(event: string, json: string): void {
    const r = this.#rewrite;
    this.#event(namedFrame(event, r === undefined ? json : r(event, json, this.#count + 1)));
  }

  done(): void {
    this.#event(DONE_FRAME);
  }

  heartbeat(): void {
    if (this.#client !== undefined) this.#queue += this.#ids ? ID_MODE_HEARTBEAT : HEARTBEAT_FRAME;
  }

  #event(frame: string): void {
    if (this.#full || this.#ended) return;
    this.#batch.push(frame);
    const n = ++this.#count;
    if (this.#client !== undefined) this.#queue += this.#ids ? withId(n, frame) : frame;
  }

  flush(): boolean {
    if (this.#full || this.#ended) return true;
    const batch = this.#batch;
    if (batch.length > 0) {
      this.#batch = [];
      // Logged before the client gets them: a client never holds an event a resume could not find.
      if (!this.#log.append(batch)) {
        this.#full = true;
        this.#count -= batch.length;
        this.#queue = '';
        this.#onFull(new SluiceError('SLUICE_RESUME_LOG_FULL', 'the resumable stream outgrew its log (resume.max_stream_bytes, or resume.max_total_bytes of the gateway); it was stopped'));
        return true;
      }
    }
    const q = this.#queue;
    const client = this.#client;
    if (q === '' || client === undefined) return true;
    this.#queue = '';
    const ok = client.writeRaw(Buffer.from(q));
    if (ok || !this.#readers) return ok;
    this.#drop();
    return true;
  }

  onDrain(cb: () => void): void {
    const client = this.#client;
    if (client === undefined) return void queueMicrotask(cb);
    let called = false;
    const once = (): void => {
      if (called) return;
      called = true;
      if (this.#drain === once) this.#drain = undefined;
      cb();
    };
    this.#drain = once;
    client.onDrain(once);
  }

  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    const last = this.#batch;
    this.#batch = [];
    this.#log.end(last);
    const client = this.#client;
    if (client === undefined) return;
    const q = this.#queue;
    this.#queue = '';
    if (q !== '') client.writeRaw(Buffer.from(q));
    client.end();
  }

  fail(err: SluiceError, inBand: () => void): void {
    if (this.#ended) return;
    const shown = this.#stopReason ?? err;
    if (this.#opened) {
      // The stream's own error event (the protocol's `writeError`), logged and sent like any event.
      this.#full = false;
      inBand();
      this.end();
      return;
    }
    // Before headers the client gets the error as an HTTP status and JSON; the log ends with the error event.
    this.#ended = true;
    this.#log.end([...this.#batch, errorFrame(this.#kind, shown)]);
    this.#batch = [];
    this.#queue = '';
    this.#client?.fail(err, () => {});
  }

  destroy(): void {
    if (this.#ended) return;
    this.#ended = true;
    // The relay cut the client (it stopped reading, or the generation was stopped before it began): the log says so.
    const stop = this.#stopReason;
    const why = stop ?? new SluiceError('SLUICE_CLIENT_STALLED', 'the client stopped reading; the stream was stopped');
    const last = errorFrame(this.#kind, why);
    this.#log.end([...this.#batch, last]);
    this.#batch = [];
    const client = this.#client;
    if (client === undefined) return;
    if (stop !== undefined && this.#opened && !client.closed) {
      // Stopped by its owner (cancel, log full) while its client is still here: that client gets the error event too.
      const q = this.#queue + (this.#ids ? withId(this.#count + 1, last) : last);
      this.#queue = '';
      client.writeRaw(Buffer.from(q));
      client.end();
      return;
    }
    this.#queue = '';
    client.destroy();
  }

  get closed(): boolean {
    return this.#ended || (this.#client?.closed ?? false);
  }
}
