import { createHash, randomBytes } from 'node:crypto';

/** Every stored key starts with this, so leaked keys are recognizable (secret scanners, logs). */
export const KEY_PREFIX = 'sk-sluice-';
/** Characters of a key shown by `sluice keys list`: the prefix and 6 random characters, not enough to guess it. */
const SHOWN = KEY_PREFIX.length + 6;

/**
 * A new client key: 32 random bytes (256 bits) in base64url after `sk-sluice-`. With that much entropy a fast hash
 * is the right one to store: nobody can search 2^256 keys, so a slow password hash (scrypt, argon2) would only cost
 * CPU on every request.
 */
export function generateKey(): string {
  return KEY_PREFIX + randomBytes(32).toString('base64url');
}

/** SHA-256 of a key, as stored. */
export function hashKey(key: string): Buffer {
  return createHash('sha256').update(key).digest();
}

/** What `sluice keys list` shows of a key. */
export function shownPrefix(key: string): string {
  return key.slice(0, SHOWN);
}
