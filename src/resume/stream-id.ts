import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Stream ids: `strm_` and 144 random bits in base64url, so an id cannot be guessed or enumerated. A background
 * response's id is its stream's id, with OpenAI's `resp_` prefix.
 */
export function newStreamId(prefix: 'strm' | 'resp' = 'strm'): string {
  return `${prefix}_${randomBytes(18).toString('base64url')}`;
}

const STREAM_ID = /^(strm|resp)_[A-Za-z0-9_-]{24}$/;

/** Whether `s` has the form of a stream id (anything else is unknown without a lookup). */
export function isStreamId(s: string): boolean {
  return STREAM_ID.test(s);
}

/**
 * Who may resume or cancel a stream: the SHA-256 of the bearer token that started it ('' without one, on a gateway
 * with no keys). Only a hash is stored: a log in Redis never holds a client's key.
 */
export function ownerOf(authorization: string | undefined): string {
  if (authorization === undefined) return '';
  const m = /^Bearer\s+(.+)$/i.exec(authorization.trim());
  const token = m ? (m[1] as string) : authorization.trim();
  return token === '' ? '' : createHash('sha256').update(token).digest('hex');
}

/** Compares two owners in constant time. */
export function sameOwner(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
