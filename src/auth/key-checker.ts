import { createHash, timingSafeEqual } from 'node:crypto';

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

/**
 * Static client keys. Keys are kept as SHA-256 digests and compared in constant time; every key is compared, so
 * timing reveals neither which key matched nor how much of it.
 */
export class KeyChecker {
  readonly #digests: Buffer[];

  constructor(keys: readonly string[]) {
    this.#digests = keys.map(digest);
  }

  get enabled(): boolean {
    return this.#digests.length > 0;
  }

  /** Checks an `Authorization: Bearer <key>` header value. */
  check(authorization: string | undefined): boolean {
    if (!this.enabled) return true;
    if (authorization === undefined) return false;
    const m = /^Bearer\s+(.+)$/i.exec(authorization.trim());
    if (!m) return false;
    return this.checkKey(m[1] as string);
  }

  /** Checks a bare key (a browser's WebSocket subprotocol carries one; see src/ws/handshake.ts). */
  checkKey(key: string): boolean {
    if (!this.enabled) return true;
    const given = digest(key);
    let ok = false;
    for (const d of this.#digests) ok = timingSafeEqual(d, given) || ok;
    return ok;
  }
}
