import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { SluiceError } from '../errors.ts';
import { connectRedis, parseRedisUrl } from '../state/redis-connection.ts';
import { errorFrame } from './frames.ts';
import type { ControlSignal, LogBatch, LogStoreLimits, LogWriter, StreamInfo, StreamLogStore, StreamMeta } from './log-store.ts';

/**
 * The resumable streams of every instance on one Redis (`state.url` is `redis://…`): a client may resume on any
 * instance or worker. src/resume/log-store.ts has the contract; this is how it is kept.
 *
 * Keys, for a stream `<id>`:
 * - `sluice:stream:<id>`: a Redis stream. Each batch (one flush of the relay) is one entry `0-<index of its last
 *   event>` with fields `first <index of its first event>` then `f <frame>` per event. The end is the entry `1-0`
 *   (after every `0-N`): `first`, the last events (`[DONE]` or an error event) and `end <events in all>`.
 * - `sluice:stream:<id>:meta`: a hash: `m` (the StreamMeta as JSON), `inst` (the owner instance), `state`
 *   (`live`/`ended`), `count`.
 * - `sluice:stream:<id>:readers`: a hash, readers per instance.
 * - `sluice:instance:<inst>`: the instance's lease (`PX`, renewed every third of it). It says both that the owner of
 *   a live stream is still generating (a reader of a stream whose owner's lease lapsed gets SLUICE_RESUME_OWNER_LOST
 *   instead of waiting for ever) and that the instance's readers still count (a crashed instance's are dropped when
 *   the next reader attaches).
 * - `sluice:instance:<inst>:control`: the channel an instance SUBSCRIBEs to (one per instance, not per stream): cancel
 *   and reader counts for the streams it owns, as `<id> cancel` or `<id> readers <n>`.
 * Live keys expire `ttl_ms` after their last write (refreshed every lease renewal while the owner lives); ended ones
 * `ttl_ms` after the end.
 *
 * Three connections per instance: commands (writes are pipelined in order on it, and reads of the meta go behind them,
 * so an instance reads its own writes), one `XREAD BLOCK` loop serving every waiting reader of the instance, and the
 * subscriber. The bounds (`max_stream_bytes`, `max_total_bytes`) are counted locally over the streams this instance
 * owns. Writes waiting for Redis are bounded too (`pendingMaxBytes`): past it an append is refused as a full log.
 *
 * A write that fails (Redis down or not answering within its command timeout) does not stop the stream: the client
 * reading it directly gets it whole, but it is no longer resumable. Nothing more is logged for it but its end, and a
 * reader that finds a gap in the log (or cannot reach Redis) ends with SLUICE_RESUME_LOG_LOST.
 */

export interface RedisLogStoreOptions {
  /** The instance's lease (ms): how soon other instances learn that it died. */
  leaseMs?: number;
  /** Bytes of writes waiting for Redis at most; past it appends are refused (a full log). */
  pendingMaxBytes?: number;
  /** How long one XREAD blocks (ms); below the connection's command timeout. */
  blockMs?: number;
}

const STREAM = (id: string): string => `sluice:stream:${id}`;
const META = (id: string): string => `sluice:stream:${id}:meta`;
const READERS = (id: string): string => `sluice:stream:${id}:readers`;
const LEASE_PREFIX = 'sluice:instance:';
const CONTROL = (inst: string): string => `${LEASE_PREFIX}${inst}:control`;

/** KEYS: meta, readers. ARGV: lease prefix, this instance, max readers, ttl ms, publish (1/0), stream id, delta. */
const READERS_SCRIPT = `
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local fields = redis.call('HGETALL', KEYS[2])
local total = 0
local mine = 0
for i = 1, #fields, 2 do
  if fields[i] == ARGV[2] or redis.call('EXISTS', ARGV[1] .. fields[i]) == 1 then
    local n = tonumber(fields[i + 1])
    total = total + n
    if fields[i] == ARGV[2] then mine = n end
  else
    redis.call('HDEL', KEYS[2], fields[i])
  end
end
local delta = tonumber(ARGV[7])
if delta > 0 and total >= tonumber(ARGV[3]) then return -2 end
if delta == 0 then return total end
if delta < 0 and mine <= 0 then return total end
redis.call('HINCRBY', KEYS[2], ARGV[2], delta)
redis.call('PEXPIRE', KEYS[2], ARGV[4])
total = total + delta
local st = redis.call('HMGET', KEYS[1], 'state', 'inst')
if ARGV[5] == '1' and st[1] == 'live' then
  redis.call('PUBLISH', ARGV[1] .. st[2] .. ':control', ARGV[6] .. ' readers ' .. total)
end
return total
`;

/** KEYS: meta. ARGV: lease prefix, stream id. 1 when live (and the cancel was published), else 0; -1 unknown. */
const CANCEL_SCRIPT = `
local st = redis.call('HMGET', KEYS[1], 'state', 'inst')
if not st[1] then return -1 end
if st[1] ~= 'live' then return 0 end
redis.call('PUBLISH', ARGV[1] .. st[2] .. ':control', ARGV[2] .. ' cancel')
return 1
`;

interface Owned {
  meta: StreamMeta;
  control: (signal: ControlSignal) => void;
  /** Readers last reported to the owner: while some are, each renewal recounts them (another instance may have died). */
  readers: number;
  /** Events written (or sent to be written). */
  count: number;
  bytes: number;
  ended: boolean;
  endedAt: number;
  /** A write failed: the log has a hole; only its end is written. */
  broken: boolean;
  /** The end written for a broken log (SLUICE_RESUME_LOG_LOST), so that its readers stop waiting. */
  lostMarked: boolean;
  expiry: NodeJS.Timeout | undefined;
}

interface Waiter {
  id: string;
  from: number;
  /** The owner instance (to check its lease while nothing comes). */
  inst: string;
  kind: StreamMeta['kind'];
  resolve: (b: LogBatch | undefined) => void;
  onAbort: () => void;
  signal: AbortSignal;
}

/** One entry of the stream: events `first`…, and whether it is the end (with the count in all). */
interface Entry {
  first: number;
  frames: string[];
  end: number | undefined;
}

export class RedisLogStore implements StreamLogStore {
  readonly #limits: LogStoreLimits;
  readonly #cmd: Redis;
  readonly #block: Redis;
  readonly #sub: Redis;
  readonly #inst = randomBytes(12).toString('base64url');
  readonly #leaseMs: number;
  readonly #pendingMax: number;
  readonly #blockMs: number;
  readonly #owned = new Map<string, Owned>();
  #total = 0;
  #pending = 0;
  readonly #waiters = new Set<Waiter>();
  #closed = false;
  #renewal: NodeJS.Timeout | undefined;
  /** The blocking connection's client id (CLIENT UNBLOCK wakes the loop when a new stream needs following). */
  #blockId: number | undefined;
  /** The XREAD loop runs (it stops when no reader waits). */
  #loop: Promise<void> | undefined;
  /** Streams in the XREAD now. */
  #following = new Set<string>();
  /** The API of streams looked up here (the framing of a reader's error when Redis cannot even say it); bounded. */
  readonly #kinds = new Map<string, StreamMeta['kind']>();
  /** When each followed stream's owner was last checked. */
  readonly #checked = new Map<string, number>();

  private constructor(limits: LogStoreLimits, cmd: Redis, block: Redis, sub: Redis, o: RedisLogStoreOptions) {
    this.#limits = limits;
    this.#cmd = cmd;
    this.#block = block;
    this.#sub = sub;
    this.#leaseMs = o.leaseMs ?? 5_000;
    this.#pendingMax = o.pendingMaxBytes ?? Math.min(limits.maxTotalBytes, 8 * 1024 * 1024);
    this.#blockMs = o.blockMs ?? 500;
  }

  /** Connects (three connections) and takes the instance's lease; throws as `connectRedis` does. */
  static async open(url: string, limits: LogStoreLimits, o: RedisLogStoreOptions = {}): Promise<RedisLogStore> {
    const target = parseRedisUrl(url);
    const conns: Redis[] = [];
    try {
      for (const name of ['sluice-resume', 'sluice-resume-read', 'sluice-resume-sub']) conns.push(await connectRedis(target, name));
    } catch (err) {
      for (const c of conns) c.disconnect();
      throw err;
    }
    const [cmd, block, sub] = conns as [Redis, Redis, Redis];
    const store = new RedisLogStore(limits, cmd, block, sub, o);
    try {
      await store.#start();
    } catch (err) {
      for (const c of conns) c.disconnect();
      throw err;
    }
    return store;
  }

  /** This instance's id (its lease and control channel). */
  get instance(): string {
    return this.#inst;
  }

  /** Bytes of writes sent to Redis and not answered yet. */
  get pendingBytes(): number {
    return this.#pending;
  }

  /** Bytes of the logs this instance owns. */
  get totalBytes(): number {
    return this.#total;
  }

  async #start(): Promise<void> {
    await this.#cmd.set(LEASE_PREFIX + this.#inst, '1', 'PX', this.#leaseMs);
    this.#sub.on('message', (_channel: string, message: string) => this.#onControl(message));
    await this.#sub.subscribe(CONTROL(this.#inst));
    this.#blockId = Number(await this.#block.client('ID'));
    this.#block.on('ready', () => {
      this.#block.client('ID').then((v) => (this.#blockId = Number(v)), () => {});
    });
    this.#renewal = setInterval(() => this.#renew(), Math.max(50, Math.floor(this.#leaseMs / 3)));
    this.#renewal.unref();
  }

  #renew(): void {
    const p = this.#cmd.pipeline();
    p.set(LEASE_PREFIX + this.#inst, '1', 'PX', this.#leaseMs);
    for (const o of this.#owned.values()) {
      if (o.broken && !o.lostMarked) this.#markLost(o);
      if (o.ended) continue;
      p.pexpire(STREAM(o.meta.id), this.#limits.ttlMs).pexpire(META(o.meta.id), this.#limits.ttlMs).pexpire(READERS(o.meta.id), this.#limits.ttlMs);
      // Readers on an instance that died stop counting: the owner learns it here, as its grace clock needs to.
      if (o.readers > 0) this.#readers(o.meta.id, 0).catch(() => {});
    }
    p.exec().catch(() => {});
  }

  #onControl(message: string): void {
    const [id, type, n] = message.split(' ');
    const o = this.#owned.get(id ?? '');
    if (o === undefined || o.ended) return;
    if (type === 'cancel') o.control({ type: 'cancel' });
    else if (type === 'readers') this.#tellReaders(o, Number(n));
  }

  #tellReaders(o: Owned, n: number): void {
    if (o.ended || this.#owned.get(o.meta.id) !== o) return;
    o.readers = n;
    o.control({ type: 'readers', count: n });
  }

  create(meta: StreamMeta, control: (signal: ControlSignal) => void): LogWriter {
    if (!this.#makeRoom(Math.min(this.#limits.maxStreamBytes, 64 * 1024))) {
      throw new SluiceError('SLUICE_RESUME_LOG_FULL', `the gateway holds ${this.#limits.maxTotalBytes} bytes of resumable streams (resume.max_total_bytes); retry later or send the request without X-Sluice-Resume`);
    }
    const o: Owned = { meta, control, readers: 0, count: 0, bytes: 0, ended: false, endedAt: 0, broken: false, lostMarked: false, expiry: undefined };
    this.#owned.set(meta.id, o);
    const p = this.#cmd.pipeline();
    p.del(STREAM(meta.id), READERS(meta.id));
    p.hset(META(meta.id), 'm', JSON.stringify(meta), 'inst', this.#inst, 'state', 'live', 'count', '0');
    p.pexpire(META(meta.id), this.#limits.ttlMs);
    this.#send(o, p, 0);
    return {
      append: (events) => this.#append(o, events),
      end: (last) => this.#end(o, last),
    };
  }

  /** Sends a pipeline; a failure breaks the stream's log (it is no longer resumable, the stream goes on). */
  #send(o: Owned | undefined, p: ReturnType<Redis['pipeline']>, bytes: number): void {
    this.#pending += bytes;
    const failed = (): void => {
      if (o === undefined || o.broken) return;
      o.broken = true;
      this.#markLost(o);
    };
    p.exec()
      .then((results) => {
        if (results === null || results.some(([err]) => err !== null)) failed();
      }, failed)
      .finally(() => {
        this.#pending -= bytes;
      });
  }

  #append(o: Owned, events: readonly string[]): boolean {
    if (o.ended || events.length === 0) return true;
    if (this.#owned.get(o.meta.id) !== o) return false;
    let size = 0;
    for (const f of events) size += Buffer.byteLength(f);
    if (o.bytes + size > this.#limits.maxStreamBytes) return false;
    if (this.#total + size > this.#limits.maxTotalBytes && !this.#makeRoom(size)) return false;
    if (this.#pending + size > this.#pendingMax) return false;
    const first = o.count + 1;
    o.count += events.length;
    o.bytes += size;
    this.#total += size;
    if (o.broken) return true; // the log has a hole: only the end is written
    const args: string[] = ['first', String(first)];
    for (const f of events) args.push('f', f);
    const p = this.#cmd.pipeline();
    p.xadd(STREAM(o.meta.id), `0-${o.count}`, ...args);
    p.hset(META(o.meta.id), 'count', String(o.count));
    p.pexpire(STREAM(o.meta.id), this.#limits.ttlMs);
    this.#send(o, p, size);
    return true;
  }

  /**
   * Ends a broken log in Redis at once (tried again each lease renewal while Redis is away): its readers get
   * SLUICE_RESUME_LOG_LOST now rather than when the generation ends, and nobody else waits for it. The stream itself
   * goes on for the client that reads it directly.
   */
  #markLost(o: Owned): void {
    if (o.lostMarked || this.#owned.get(o.meta.id) !== o) return;
    const id = o.meta.id;
    const frame = errorFrame(o.meta.kind, new SluiceError('SLUICE_RESUME_LOG_LOST', 'a write to the log of this stream failed (its store, Redis, was unreachable); the stream cannot be resumed'));
    const p = this.#cmd.multi();
    p.xadd(STREAM(id), '1-0', 'first', String(o.count + 1), 'f', frame, 'end', String(o.count + 1));
    p.hset(META(id), 'state', 'ended', 'count', String(o.count + 1));
    p.pexpire(STREAM(id), this.#limits.ttlMs).pexpire(META(id), this.#limits.ttlMs);
    p.exec().then(
      (r) => {
        // Written, or the end was there already (XADD 1-0 refused): either way the log is closed.
        if (r !== null) o.lostMarked = true;
      },
      () => {},
    );
  }

  #end(o: Owned, last: readonly string[]): void {
    if (o.ended || this.#owned.get(o.meta.id) !== o) return;
    o.ended = true;
    o.endedAt = Date.now();
    if (o.broken) {
      // Its log was closed with SLUICE_RESUME_LOG_LOST (or will be, once Redis answers): nothing more is written.
      this.#markLost(o);
      o.expiry = setTimeout(() => this.#forget(o), this.#limits.ttlMs);
      o.expiry.unref();
      return;
    }
    let size = 0;
    for (const f of last) size += Buffer.byteLength(f);
    const first = o.count + 1;
    o.count += last.length;
    o.bytes += size;
    this.#total += size;
    const args: string[] = ['first', String(first)];
    for (const f of last) args.push('f', f);
    args.push('end', String(o.count));
    const id = o.meta.id;
    const p = this.#cmd.multi();
    p.xadd(STREAM(id), '1-0', ...args);
    p.hset(META(id), 'state', 'ended', 'count', String(o.count));
    p.pexpire(STREAM(id), this.#limits.ttlMs).pexpire(META(id), this.#limits.ttlMs).pexpire(READERS(id), this.#limits.ttlMs);
    this.#send(o, p, size);
    o.expiry = setTimeout(() => this.#forget(o), this.#limits.ttlMs);
    o.expiry.unref();
  }

  /** Drops finished logs this instance owns, oldest first, until `size` more bytes fit; whether they do. */
  #makeRoom(size: number): boolean {
    const max = this.#limits.maxTotalBytes;
    if (this.#total + size <= max) return true;
    const finished = [...this.#owned.values()].filter((o) => o.ended).sort((a, b) => a.endedAt - b.endedAt);
    for (const o of finished) {
      this.#forget(o);
      this.#cmd.del(STREAM(o.meta.id), META(o.meta.id), READERS(o.meta.id)).catch(() => {});
      if (this.#total + size <= max) return true;
    }
    return false;
  }

  /** Stops counting a log (expired or dropped). */
  #forget(o: Owned): void {
    if (this.#owned.get(o.meta.id) !== o) return;
    this.#owned.delete(o.meta.id);
    if (o.expiry) clearTimeout(o.expiry);
    this.#total -= o.bytes;
  }

  async info(id: string): Promise<StreamInfo | undefined> {
    const h = await this.#cmdCall(() => this.#cmd.hmget(META(id), 'm', 'state', 'count'));
    const [m, state, count] = h;
    if (m === null || m === undefined) return undefined;
    const meta = JSON.parse(m) as StreamMeta;
    if (this.#kinds.size >= 10_000) this.#kinds.clear();
    this.#kinds.set(id, meta.kind);
    return { meta, count: Number(count ?? 0), ended: state === 'ended' };
  }

  /** A command whose failure is the store being unreachable: SLUICE_RESUME_LOG_LOST (503). */
  async #cmdCall<T>(f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (err) {
      throw new SluiceError('SLUICE_RESUME_LOG_LOST', `the resumable streams' store (Redis) did not answer: ${(err as Error).message}`);
    }
  }

  async snapshot(id: string): Promise<LogBatch | undefined> {
    const [raw, info] = await this.#cmdCall(() => Promise.all([this.#cmd.xrange(STREAM(id), '-', '+'), this.info(id)]));
    if (info === undefined) return undefined;
    const entries = raw.map(([, fields]) => parseEntry(fields));
    return this.#batch(entries, 0, info.meta.kind) ?? { events: [], count: info.count, ended: info.ended };
  }

  /**
   * The events after `from` in these entries (in order), or undefined when none is after it. A gap (a batch that was
   * never written) ends the read with SLUICE_RESUME_LOG_LOST.
   */
  #batch(entries: Entry[], from: number, kind: StreamMeta['kind']): LogBatch | undefined {
    const events: string[] = [];
    let next = from;
    for (const e of entries) {
      const last = e.first + e.frames.length - 1;
      if (e.first > next + 1) return lost(kind, next, 'the log of this stream has a gap (its store failed a write)');
      for (let i = Math.max(0, next + 1 - e.first); i < e.frames.length; i++) events.push(e.frames[i] as string);
      next = Math.max(next, last);
      if (e.end !== undefined) return { events, count: e.end, ended: true };
    }
    return events.length === 0 ? undefined : { events, count: next, ended: false };
  }

  async read(id: string, from: number, signal: AbortSignal): Promise<LogBatch | undefined> {
    if (signal.aborted || this.#closed) return undefined;
    let meta: (string | null)[];
    let raw: [string, string[]][][] | null;
    try {
      // Behind this instance's own writes on the same connection: a reader here sees what was appended here.
      [meta, raw] = await Promise.all([
        this.#cmd.hmget(META(id), 'm', 'inst', 'state'),
        this.#cmd.xread('STREAMS', STREAM(id), `0-${from}`) as Promise<[string, [string, string[]][]][] | null>,
      ]) as [(string | null)[], [string, string[]][][] | null];
    } catch {
      return lost(this.#kinds.get(id) ?? 'chat', from, 'the store of resumable streams (Redis) cannot be reached');
    }
    const [m, inst] = meta;
    if (m === null || m === undefined) return undefined;
    const kind = (JSON.parse(m) as StreamMeta).kind;
    const entries = streamEntries(raw as unknown as XReadReply | null);
    const b = this.#batch(entries, from, kind);
    if (b !== undefined) return b;
    if (signal.aborted || this.#closed) return undefined;
    return new Promise<LogBatch | undefined>((resolve) => {
      const w: Waiter = {
        id,
        from,
        inst: inst ?? '',
        kind,
        signal,
        resolve: (v) => {
          this.#waiters.delete(w);
          signal.removeEventListener('abort', w.onAbort);
          resolve(v);
        },
        onAbort: () => w.resolve(undefined),
      };
      this.#waiters.add(w);
      signal.addEventListener('abort', w.onAbort, { once: true });
      this.#kick(id);
    });
  }

  /** A waiter was added: starts the loop, or wakes it when the stream is not in the XREAD now. */
  #kick(id: string): void {
    if (this.#closed) return;
    if (this.#loop === undefined) {
      this.#loop = this.#run();
      return;
    }
    if (!this.#following.has(id) && this.#blockId !== undefined) {
      this.#cmd.client('UNBLOCK', this.#blockId).catch(() => {});
    }
  }

  /** The instance's one XREAD BLOCK loop: serves every waiting reader, ends when none is left. */
  async #run(): Promise<void> {
    let failures = 0;
    while (!this.#closed && this.#waiters.size > 0) {
      const from = new Map<string, number>();
      for (const w of this.#waiters) from.set(w.id, Math.min(from.get(w.id) ?? Infinity, w.from));
      this.#following = new Set(from.keys());
      const keys = [...from.keys()];
      let reply: XReadReply | null;
      try {
        reply = (await this.#block.xread('BLOCK', this.#blockMs, 'STREAMS', ...keys.map(STREAM), ...keys.map((k) => `0-${from.get(k)}`))) as XReadReply | null;
        failures = 0;
      } catch {
        // Redis is down or stuck: every waiting reader ends with a clear error rather than waiting.
        if (this.#closed) break;
        if (++failures >= 2) {
          for (const w of [...this.#waiters]) w.resolve(lost(w.kind, w.from, 'the store of resumable streams (Redis) cannot be reached'));
          failures = 0;
        }
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      const got = new Map<string, Entry[]>();
      for (const [key, list] of reply ?? []) got.set(key.slice('sluice:stream:'.length), list.map(([, f]) => parseEntry(f)));
      for (const w of [...this.#waiters]) {
        const entries = got.get(w.id);
        if (entries === undefined) continue;
        const b = this.#batch(entries, w.from, w.kind);
        if (b !== undefined) w.resolve(b);
      }
      await this.#checkOwners(keys, got);
    }
    // Synchronously after the last check of the waiters: a reader added from now on starts a new loop.
    this.#following = new Set();
    this.#loop = undefined;
  }

  /** Streams that got nothing: gone (expired) or their owner's lease lapsed? Checked once per lease third. */
  async #checkOwners(keys: string[], got: Map<string, Entry[]>): Promise<void> {
    const now = Date.now();
    const due = keys.filter((k) => !got.has(k) && now - (this.#checked.get(k) ?? 0) >= this.#leaseMs / 3);
    if (due.length === 0) return;
    const insts = new Map<string, string>();
    for (const w of this.#waiters) insts.set(w.id, w.inst);
    const p = this.#cmd.pipeline();
    for (const k of due) p.hget(META(k), 'state').exists(LEASE_PREFIX + (insts.get(k) ?? ''));
    let res: [Error | null, unknown][] | null;
    try {
      res = await p.exec();
    } catch {
      return; // the XREAD loop reports an unreachable Redis
    }
    if (res === null) return;
    for (const [i, k] of due.entries()) {
      this.#checked.set(k, now);
      const state = res[2 * i]?.[1] as string | null | undefined;
      const alive = res[2 * i + 1]?.[1] === 1;
      const ws = [...this.#waiters].filter((w) => w.id === k);
      if (state === null) for (const w of ws) w.resolve(undefined);
      else if (state === 'live' && !alive) {
        for (const w of ws) w.resolve({ events: [errorFrame(w.kind, new SluiceError('SLUICE_RESUME_OWNER_LOST', 'the gateway instance generating this stream stopped (its lease lapsed); the stream ends here'))], count: w.from + 1, ended: true });
      }
    }
    for (const k of [...this.#checked.keys()]) if (!keys.includes(k)) this.#checked.delete(k);
  }

  async signal(id: string, signal: ControlSignal): Promise<boolean> {
    const o = this.#owned.get(id);
    if (o !== undefined) {
      if (o.ended) return false;
      o.control(signal);
      return true;
    }
    if (signal.type !== 'cancel') return false;
    const r = await this.#cmdCall(() => this.#cmd.eval(CANCEL_SCRIPT, 1, META(id), LEASE_PREFIX, id));
    return r === 1;
  }

  async #readers(id: string, delta: 1 | 0 | -1): Promise<number> {
    const o = this.#owned.get(id);
    const n = Number(
      await this.#cmdCall(() => this.#cmd.eval(READERS_SCRIPT, 2, META(id), READERS(id), LEASE_PREFIX, this.#inst, this.#limits.maxReaders, this.#limits.ttlMs, o === undefined ? '1' : '0', id, delta)),
    );
    // The owner is this instance: told here, in order, rather than through its own subscription.
    if (n >= 0 && o !== undefined && (delta !== 0 || n !== o.readers)) this.#tellReaders(o, n);
    return n;
  }

  async attachReader(id: string): Promise<'ok' | 'full' | 'unknown'> {
    const n = await this.#readers(id, 1);
    return n === -1 ? 'unknown' : n === -2 ? 'full' : 'ok';
  }

  async detachReader(id: string): Promise<void> {
    try {
      await this.#readers(id, -1);
    } catch {
      // Redis unreachable: this instance's count lapses with its lease or the stream's keys.
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#renewal);
    for (const w of [...this.#waiters]) w.resolve(undefined);
    for (const o of [...this.#owned.values()]) this.#forget(o);
    // Readers elsewhere of the streams it still owned learn at once that nobody generates them any more.
    await this.#cmd.del(LEASE_PREFIX + this.#inst).catch(() => {});
    for (const c of [this.#block, this.#sub, this.#cmd]) c.disconnect();
    await this.#loop;
  }
}

type XReadReply = [string, [string, string[]][]][];

function streamEntries(reply: XReadReply | null): Entry[] {
  const first = reply?.[0];
  return first === undefined ? [] : first[1].map(([, f]) => parseEntry(f));
}

function parseEntry(fields: string[]): Entry {
  const e: Entry = { first: 0, frames: [], end: undefined };
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const k = fields[i];
    const v = fields[i + 1] as string;
    if (k === 'f') e.frames.push(v);
    else if (k === 'first') e.first = Number(v);
    else if (k === 'end') e.end = Number(v);
  }
  return e;
}

/** The end of a read that cannot go on: one error event after the reader's cursor. */
function lost(kind: StreamMeta['kind'], from: number, why: string): LogBatch {
  return { events: [errorFrame(kind, new SluiceError('SLUICE_RESUME_LOG_LOST', `${why}; the stream cannot be resumed from here`))], count: from + 1, ended: true };
}
