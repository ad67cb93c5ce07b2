import { randomBytes } from 'node:crypto';

// A random per-process prefix and a counter: unique across instances without a random draw per request.
const PREFIX = `req_${randomBytes(6).toString('hex')}`;
let counter = 0;

/** A new request id (`req_<12 hex><base-36 counter>`). */
export function newRequestId(): string {
  counter = (counter + 1) % Number.MAX_SAFE_INTEGER;
  return `${PREFIX}${counter.toString(36).padStart(6, '0')}`;
}
