import { timingSafeEqual } from 'node:crypto';
import type { StateStore, StoredKey } from '../state/store.ts';
import { hashKey } from './api-key.ts';
import type { KeyChecker } from './key-checker.ts';

/** A stored key as the gateway holds it: its record, with the digest as bytes for the constant-time compare. */
export interface ClientKey {
  readonly record: StoredKey;
  readonly digest: Buffer;
}

/** Who a request is: a stored key (limits and a name in the ledger), or `static` (an `api_keys` key, or no auth). */
export type Principal = ClientKey | 'static';

/**
 * Client keys: the static `api_keys` of the config and the keys in the state store, checked on every HTTP request,
 * WebSocket upgrade and WebSocket generation. Stored keys live in an in-memory map, so a check is one SHA-256 of the
 * presented key and one map lookup, with no I/O. The map is refreshed when the store's key version changes, polled
 * every `refreshMs`, so revoking or changing a key takes effect within that period plus one poll.
 *
 * The map is keyed by the digest's hex, then the whole digest is compared with `timingSafeEqual`. A lookup's timing
 * can only depend on the SHA-256 of what the client sent, which tells an attacker nothing about any stored key.
 */
export class KeyRing {
  readonly #static: KeyChecker;
  readonly #store: StateStore | undefined;
  #keys = new Map<string, ClientKey>();
  /** Some key was ever stored (revoked ones count): from then on auth stays on, even when every key is revoked. */
  #anyStored = false;
  #version = -1;
  #timer: NodeJS.Timeout | undefined;
  #refreshing = false;
  /** Settles when the refresh in progress ends. */
  #inFlight: Promise<void> = Promise.resolve();
  #warned = false;
  readonly #notice: (line: string) => void;

  constructor(staticKeys: KeyChecker, store: StateStore | undefined, notice: (line: string) => void) {
    this.#static = staticKeys;
    this.#store = store;
    this.#notice = notice;
  }

  /** Loads the stored keys, then polls for changes every `refreshMs` (0: never). */
  async start(refreshMs: number): Promise<void> {
    if (!this.#store) return;
    await this.refresh();
    if (refreshMs > 0) {
      this.#timer = setInterval(() => void this.refresh(), refreshMs);
      this.#timer.unref();
    }
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /**
   * Reloads the keys when the store's version moved. A store that fails keeps the cached keys (with one notice). A
   * call while a refresh runs returns at once; with `after`, it waits for that one and refreshes again (the admin
   * API, right after a change of its own, so that this gateway applies it at once).
   */
  async refresh(after = false): Promise<void> {
    const store = this.#store;
    if (!store) return;
    if (this.#refreshing) {
      if (after) await this.#inFlight;
      if (!after || this.#refreshing) return;
    }
    this.#refreshing = true;
    let done!: () => void;
    this.#inFlight = new Promise<void>((r) => (done = r));
    try {
      const v = await store.keysVersion();
      if (v !== this.#version) {
        const all = await store.listKeys();
        const next = new Map<string, ClientKey>();
        for (const record of all) {
          if (record.revoked_at !== null) continue;
          next.set(record.hash, { record, digest: Buffer.from(record.hash, 'hex') });
        }
        this.#keys = next;
        // Once on, stays on: a store that comes back empty (a Redis without persistence that restarted) must not
        // open the gateway to everyone.
        this.#anyStored ||= all.length > 0;
        this.#version = v;
      }
      if (this.#warned) this.#notice(`state store ${store.url} is reachable again; keys refreshed`);
      this.#warned = false;
    } catch (err) {
      if (!this.#warned) this.#notice(`state store ${store.url} failed (${(err as Error).message}); serving the cached keys`);
      this.#warned = true;
    } finally {
      this.#refreshing = false;
      done();
    }
  }

  /** Whether requests must carry a key. */
  get enabled(): boolean {
    return this.#static.enabled || this.#anyStored;
  }

  /**
   * Who an `Authorization: Bearer <key>` header belongs to; undefined when the request must be refused. Without any
   * key configured, everyone is `static`.
   */
  authenticate(authorization: string | undefined, now = Date.now()): Principal | undefined {
    if (!this.enabled) return 'static';
    if (authorization === undefined) return undefined;
    const m = /^Bearer\s+(.+)$/i.exec(authorization.trim());
    return m ? this.authenticateKey(m[1] as string, now) : undefined;
  }

  /** Who a bare key belongs to (a browser's WebSocket subprotocol carries one). */
  authenticateKey(key: string, now = Date.now()): Principal | undefined {
    if (!this.enabled) return 'static';
    const stored = this.#lookup(hashKey(key), now);
    if (stored) return stored;
    return this.#static.enabled && this.#static.checkKey(key) ? 'static' : undefined;
  }

  /** Whether a request may pass (the JSON endpoints that need no principal: /metrics, /ready). */
  check(authorization: string | undefined): boolean {
    return this.authenticate(authorization) !== undefined;
  }

  /**
   * The key as it is now: undefined once it was revoked or expired. A WebSocket authenticated at its upgrade is
   * checked again at each generation with this.
   */
  current(key: ClientKey, now = Date.now()): ClientKey | undefined {
    return this.#lookup(key.digest, now);
  }

  #lookup(digest: Buffer, now: number): ClientKey | undefined {
    const k = this.#keys.get(digest.toString('hex'));
    if (k === undefined || !timingSafeEqual(k.digest, digest)) return undefined;
    const exp = k.record.expires_at;
    return exp !== null && now >= exp ? undefined : k;
  }
}
