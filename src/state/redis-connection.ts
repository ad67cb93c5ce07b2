import { Redis } from 'ioredis';
import { StateUrlError } from './store.ts';

/**
 * How long a connection attempt may take before it counts as failed (and ioredis retries on its schedule).
 * Loopback or a LAN answers in a millisecond; this is for a host that drops packets.
 */
export const CONNECT_TIMEOUT_MS = 2_000;
/**
 * How long one command may wait for its answer. A Redis that stops answering (paused, swapping, a network partition
 * that does not reset the connection) fails the command after this instead of holding a request: the admission path
 * then falls back to local limits (docs/keys.md, "The store being down").
 */
export const COMMAND_TIMEOUT_MS = 1_000;

/** A Redis URL as options: `redis://[user:password@]HOST[:PORT][/DB]`, or `rediss://` for TLS. */
export interface RedisTarget {
  options: { host: string; port: number; db: number; username?: string; password?: string; tls?: { servername: string } };
  /** The URL without its credentials, to print and log. */
  display: string;
}

/** Parses a `redis://` or `rediss://` URL; the password goes into the options, never into `display`. */
export function parseRedisUrl(url: string): RedisTarget {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new StateUrlError(`state.url: not a valid URL (expected redis://HOST:PORT[/DB] or rediss://…)`);
  }
  const tls = u.protocol === 'rediss:';
  if (!tls && u.protocol !== 'redis:') throw new StateUrlError(`state.url: expected redis:// or rediss://`);
  if (u.hostname === '') throw new StateUrlError(`state.url: no host after ${u.protocol}//`);
  const port = u.port === '' ? 6379 : Number(u.port);
  const dbText = u.pathname.replace(/^\//, '');
  if (dbText !== '' && !/^\d{1,2}$/.test(dbText)) throw new StateUrlError(`state.url: the path must be a database number (/0 to /15), not '/${dbText}'`);
  if (u.search !== '' || u.hash !== '') throw new StateUrlError(`state.url: no query or fragment expected in a Redis URL`);
  const db = dbText === '' ? 0 : Number(dbText);
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  const options: RedisTarget['options'] = {
    host,
    port,
    db,
    ...(u.username !== '' ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password !== '' ? { password: decodeURIComponent(u.password) } : {}),
    ...(tls ? { tls: { servername: host } } : {}),
  };
  return { options, display: `${u.protocol}//${u.host}${db === 0 ? '' : `/${db}`}` };
}

/**
 * A connection to the Redis of `state.url`, for the state store and anything else that keeps state there (resumable
 * streams, issue 15): every user gets the same bounded behaviour.
 *
 * - No command waits for a connection: the offline queue is off, so while Redis is unreachable a command fails at
 *   once, and a command sent gets `COMMAND_TIMEOUT_MS` to be answered. Nothing on a request's path can hang on Redis.
 * - One try per command (`maxRetriesPerRequest: 0`): the callers decide what a failure means (fall back, retry later).
 * - Reconnects for ever, backing off to 1 s between attempts, so the store comes back on its own when Redis does.
 *
 * Resolves once connected; rejects (and gives up) when the first connection fails, so a wrong URL stops start-up.
 */
export async function connectRedis(target: RedisTarget, name = 'sluice'): Promise<Redis> {
  const redis = new Redis({
    ...target.options,
    connectionName: name,
    lazyConnect: true,
    enableOfflineQueue: false,
    connectTimeout: CONNECT_TIMEOUT_MS,
    commandTimeout: COMMAND_TIMEOUT_MS,
    maxRetriesPerRequest: 0,
    retryStrategy: (attempt) => Math.min(attempt * 100, 1_000),
    // Errors reach callers through their commands; the connection's own 'error' events would otherwise be printed by
    // ioredis as unhandled. Users of the connection listen to 'ready' and 'close' to know where it stands.
    showFriendlyErrorStack: false,
  });
  let last: Error | undefined;
  let refused: ((err: Error) => void) | undefined;
  redis.on('error', (err: Error) => {
    last = err;
    // An answer from Redis itself (a wrong password, a database it does not have) will not change on retry.
    if (err.name === 'ReplyError') refused?.(err);
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      redis.connect(),
      new Promise<never>((_, reject) => {
        refused = reject;
        timer = setTimeout(() => reject(last ?? new Error(`no connection within ${CONNECT_TIMEOUT_MS * 2} ms`)), CONNECT_TIMEOUT_MS * 2);
      }),
    ]);
  } catch (err) {
    redis.disconnect();
    throw new StateUrlError(`state.url ${target.display}: cannot connect (${(last ?? (err as Error)).message})`);
  } finally {
    clearTimeout(timer);
    refused = undefined;
  }
  return redis;
}
