import { createHash, timingSafeEqual } from 'node:crypto';

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

/**
 * The operator's key (`admin_key`): it opens `/admin/` and, when client keys exist, `/console`. It is never a client
 * key and a client key never opens it: the two are checked by different objects against different digests.
 * Compared in constant time on the SHA-256 digests, so the timing says nothing about the key's length or content.
 */
export class AdminKey {
  readonly #digest: Buffer | null;

  constructor(key: string | undefined) {
    this.#digest = key === undefined ? null : digest(key);
  }

  /** False when no `admin_key` is configured: the admin API does not exist then. */
  get enabled(): boolean {
    return this.#digest !== null;
  }

  /** Checks an `Authorization: Bearer <key>` header value; always false when no admin key is configured. */
  check(authorization: string | undefined): boolean {
    if (this.#digest === null || authorization === undefined) return false;
    const m = /^Bearer\s+(.+)$/i.exec(authorization.trim());
    if (!m) return false;
    return timingSafeEqual(this.#digest, digest(m[1] as string));
  }
}
