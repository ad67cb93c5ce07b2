/**
 * Where resumable streams' events are kept (docs/resume.md). One interface, two backends: in memory on one instance
 * (src/resume/memory-log-store.ts) and Redis when `state.url` is `redis://…` (src/resume/redis-log-store.ts), so a
 * client may resume on another instance. The instance that owns a generation writes its log; any instance reads and
 * follows it live.
 *
 * The cursor is a count of events: event 1 is the first `data:` (or Responses `event:` + `data:`) frame the client
 * received, and `after = N` asks for events N+1 onwards. Events are stored as their complete SSE frames without `id:`
 * lines (readers add them when asked), so a replay is byte for byte what the live client got.
 *
 * How the Redis backend maps onto it (src/resume/redis-log-store.ts has the details):
 * - `create`: `HSET sluice:stream:<id>:meta` (meta, owner instance, state=live) with `PEXPIRE`; the bounds are
 *   counted by the owning instance over the streams it owns.
 * - `LogWriter.append`: one `XADD sluice:stream:<id> 0-<index of its last event> first <index> f <frame> …` per batch
 *   (one flush of the relay); `end`: the entry `1-0` (after every `0-N`) with the last events and `end <count>`, and
 *   `state=ended`, in one MULTI, then `PEXPIRE` of the keys to `ttl_ms`.
 * - `read(id, from)`: `XREAD STREAMS sluice:stream:<id> 0-<from>` returns the batches whose last event is after
 *   `from`; the first is sliced. Nothing yet: the instance's one `XREAD BLOCK` loop waits for it, re-checking that the
 *   stream exists and that its owner's lease holds (a dead owner's readers end with SLUICE_RESUME_OWNER_LOST).
 * - `snapshot`: `XRANGE sluice:stream:<id> - +` and the meta hash.
 * - `signal`: `PUBLISH sluice:instance:<owner>:control` (cancel, reader counts); each instance subscribes to its own.
 * - `attachReader` / `detachReader`: a count per instance in `sluice:stream:<id>:readers`, published to the owner;
 *   an instance whose lease (`sluice:instance:<id>`, `PX`) lapsed no longer counts.
 *
 * `create` and `append` are synchronous on purpose: the relay never waits for a round trip. A Redis backend checks
 * the bounds against counters of its own (each instance bounds the streams it owns), queues its commands in order on
 * one connection (pipelined), and reports writes it cannot queue (too many wait for Redis) as a full log. A write that
 * fails later ends only the stream's resumability (readers get SLUICE_RESUME_LOG_LOST), never the stream itself.
 * Readers already tolerate a cursor ahead of what the store holds (the events were sent before they were stored):
 * they wait for those events. A blocking read
 * needs a connection of its own, so a Redis backend serves its waiting readers from one `XREAD BLOCK` loop per
 * instance rather than one connection each.
 */

import type { RequestKind } from '../openai/request.ts';

/** What is known of a stream besides its events. */
export interface StreamMeta {
  /** `strm_` (or `resp_` for a background response) + 144 random bits, base64url (src/resume/stream-id.ts). */
  id: string;
  /** SHA-256 (hex) of the bearer token that started the stream; '' when the gateway has no keys. */
  owner: string;
  /** The API whose stream it is: the framing of the error event a reader may need. */
  kind: RequestKind;
  /** The client asked for `id:` lines (`X-Sluice-Resume: ids`). */
  ids: boolean;
  /** `Date.now()` at its start. */
  createdAt: number;
  /** The model asked for (a background response's object names it before the engine answered). */
  model: string;
  /** A Responses API background response (`background: true`): its id is the response's id. */
  background: boolean;
}

/** A stream as a reader sees it now. */
export interface StreamInfo {
  meta: StreamMeta;
  /** Events logged so far. */
  count: number;
  /** The generation is over: its last event (`[DONE]`, an error event) is logged. */
  ended: boolean;
}

/** Events after a cursor. */
export interface LogBatch {
  /** The frames of events `from + 1`, `from + 2`, …. */
  events: readonly string[];
  /** Events logged in all (at the time of the read). */
  count: number;
  ended: boolean;
}

/** A message to the instance that owns a live stream. */
export type ControlSignal = { type: 'cancel' } | { type: 'readers'; count: number };

/** The owner's handle on its stream's log. */
export interface LogWriter {
  /**
   * Appends one flush's events. false when the stream's or the instance's bound would be exceeded: nothing is
   * appended, and the owner ends the stream with SLUICE_RESUME_LOG_FULL.
   */
  append(events: readonly string[]): boolean;
  /** The stream is over; `last` (its final events: `[DONE]` or the error event) is kept even past the bounds. */
  end(last: readonly string[]): void;
}

export interface StreamLogStore {
  /**
   * Starts a stream's log; `control` receives the signals meant for its owner (this instance). Throws
   * SLUICE_RESUME_LOG_FULL when the instance's bound is used up even after dropping finished logs.
   */
  create(meta: StreamMeta, control: (signal: ControlSignal) => void): LogWriter;
  /** The stream now; undefined when unknown or expired. */
  info(id: string): Promise<StreamInfo | undefined>;
  /**
   * The events after `from`: at once when there are some (or the stream has ended), else when the next ones are
   * logged. undefined when the stream is unknown or expired, or `signal` aborted the wait.
   */
  read(id: string, from: number, signal: AbortSignal): Promise<LogBatch | undefined>;
  /** Every event logged so far, without waiting (a background response's object is read from them). */
  snapshot(id: string): Promise<LogBatch | undefined>;
  /** Sends a signal to the stream's owner; false when the stream is unknown or already ended. */
  signal(id: string, signal: ControlSignal): Promise<boolean>;
  /** A reader starts following the stream: 'full' when `max_readers` follow it already. */
  attachReader(id: string): Promise<'ok' | 'full' | 'unknown'>;
  detachReader(id: string): Promise<void>;
  /** Drops every log and timer (the gateway is closing). */
  close(): Promise<void>;
}

/** The bounds and lifetimes of a store (the `resume.*` config keys). */
export interface LogStoreLimits {
  maxStreamBytes: number;
  maxTotalBytes: number;
  maxReaders: number;
  ttlMs: number;
}
