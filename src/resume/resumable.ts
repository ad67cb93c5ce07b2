import { clientAbortedError, SluiceError } from '../errors.ts';
import type { RequestKind } from '../openai/request.ts';
import type { ControlSignal, StreamLogStore } from './log-store.ts';
import { newStreamId } from './stream-id.ts';
import { TeeWriter, type FrameWriter } from './tee-writer.ts';
import { backgroundEvent } from './background.ts';

/** What a resumable stream needs of its generation (src/generation/generation.ts). */
export interface Stoppable {
  /** Ends the stream with an error the client sees, aborting the upstream. */
  fail(err: SluiceError, outcome: 'client_aborted'): void;
  /** Aborts at once, whatever stage the generation is in (before its relay exists, too). */
  cancel(): void;
}

export interface ResumableOptions {
  store: StreamLogStore;
  generation: Stoppable;
  client: FrameWriter | undefined;
  kind: RequestKind;
  ids: boolean;
  owner: string;
  model: string;
  /** How long it runs on once nobody reads it; undefined: to its end (a background response). */
  graceMs: number | undefined;
  /** A background response: its id is `resp_…`, and its events carry that id and their own sequence numbers. */
  background?: boolean;
}

/**
 * The owner's side of one resumable stream: its id, its tee writer (log + the client that started it), and when it
 * stops. A stream whose clients have all left keeps generating for `graceMs`, waiting for a reader to reconnect
 * (`GET /v1/streams/{id}`), then aborts upstream; `POST /v1/streams/{id}/cancel` stops it at once. Readers anywhere
 * reach it through the store's control signals, so the same code serves a Redis store's readers on other instances.
 */
export class ResumableStream {
  readonly id: string;
  readonly writer: TeeWriter;
  readonly #gen: Stoppable;
  readonly #graceMs: number | undefined;
  /** The client that started the stream is still connected. */
  #clientHere = true;
  /** Readers following the stream (the store counts them). */
  #readers = 0;
  #grace: NodeJS.Timeout | undefined;
  #over = false;

  constructor(o: ResumableOptions) {
    const background = o.background === true;
    this.id = newStreamId(background ? 'resp' : 'strm');
    this.#gen = o.generation;
    this.#graceMs = o.graceMs;
    this.#clientHere = o.client !== undefined;
    const meta = { id: this.id, owner: o.owner, kind: o.kind, ids: o.ids, createdAt: Date.now(), model: o.model, background };
    const log = o.store.create(meta, (s) => this.#control(s));
    this.writer = new TeeWriter({
      client: o.client,
      log,
      kind: o.kind,
      ids: o.ids,
      onFull: (err) => this.#stop(err),
      rewrite: background ? backgroundEvent(this.id) : undefined,
      onDropped: () => this.clientLeft(),
    });
  }

  /** The client that started the stream went away: the generation goes on, for a reconnect within the grace period. */
  clientLeft(): void {
    if (!this.#clientHere) return;
    this.#clientHere = false;
    if (!this.writer.opened) {
      // It left before the response's head, so it never learned the stream's id: nobody can resume it. Abort now,
      // as for any stream.
      this.writer.stopping(clientAbortedError());
      this.#gen.cancel();
      return;
    }
    this.writer.detach();
    this.#watch();
  }

  /** The generation is over (its log ended): no timer outlives it. */
  finished(): void {
    this.#over = true;
    this.#clearGrace();
  }

  #control(s: ControlSignal): void {
    if (this.#over) return;
    if (s.type === 'cancel') {
      this.#stop(new SluiceError('SLUICE_STREAM_CANCELLED', 'the stream was cancelled (POST /v1/streams/{id}/cancel)'));
      return;
    }
    this.#readers = s.count;
    this.writer.readersPresent(s.count > 0);
    this.#watch();
  }

  /** Starts the grace period when nobody is left to read the stream, and stops it when someone is. */
  #watch(): void {
    if (this.#over || this.#graceMs === undefined) return;
    if (this.#clientHere || this.#readers > 0) return this.#clearGrace();
    if (this.#grace !== undefined) return;
    this.#grace = setTimeout(() => {
      this.#grace = undefined;
      this.#stop(new SluiceError('SLUICE_RESUME_GRACE_EXPIRED', `no client reconnected within ${this.#graceMs} ms (resume.grace_ms); the generation was stopped`));
    }, this.#graceMs);
    this.#grace.unref();
  }

  #clearGrace(): void {
    if (this.#grace !== undefined) clearTimeout(this.#grace);
    this.#grace = undefined;
  }

  /** Ends the generation now: the upstream is aborted and the log ends with `err`. */
  #stop(err: SluiceError): void {
    if (this.#over) return;
    this.writer.stopping(err);
    this.#gen.fail(err, 'client_aborted');
    // Before its relay exists (still admitting), `fail` has nothing to end yet: `cancel` stops it when it gets there.
    this.#gen.cancel();
  }
}
