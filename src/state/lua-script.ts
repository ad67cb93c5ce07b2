import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';

/**
 * A Lua script run with EVALSHA: one round trip, with only its digest on the wire. A Redis that does not know the
 * script (it restarted, or SCRIPT FLUSH) answers NOSCRIPT, and the script is sent once with EVAL, which caches it
 * again.
 */
export class LuaScript {
  readonly #lua: string;
  readonly sha: string;

  constructor(lua: string) {
    this.#lua = lua;
    this.sha = createHash('sha1').update(lua).digest('hex');
  }

  async run(redis: Redis, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!isNoScript(err)) throw err;
      return this.eval(redis, keys, args);
    }
  }

  /** The script sent whole (after a NOSCRIPT). */
  eval(redis: Redis, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    return redis.eval(this.#lua, keys.length, ...keys, ...args);
  }
}

const isNoScript = (err: unknown): boolean => err instanceof Error && err.message.startsWith('NOSCRIPT');

/** A script call whose answer or error goes to `resolve` or `reject`. */
export interface ScriptCall {
  script: LuaScript;
  keys: readonly string[];
  args: readonly (string | number)[];
  resolve: (v: unknown) => void;
  reject: (err: unknown) => void;
}

/**
 * Sends script calls in one write to the socket (a pipeline; a lone call as a plain EVALSHA): Redis runs them in this
 * order, each as its own script, and the replies usually come back in one read. Each call gets its own answer or
 * error; a NOSCRIPT is retried with EVAL, call by call, in order.
 */
export function runPipelined(redis: Redis, calls: readonly ScriptCall[]): void {
  if (calls.length === 1) {
    const c = calls[0] as ScriptCall;
    c.script.run(redis, c.keys, c.args).then(c.resolve, c.reject);
    return;
  }
  const p = redis.pipeline();
  for (const c of calls) p.evalsha(c.script.sha, c.keys.length, ...c.keys, ...c.args);
  p.exec().then(
    (results) => {
      for (let i = 0; i < calls.length; i++) {
        const c = calls[i] as ScriptCall;
        const [err, value] = results?.[i] ?? [new Error('no answer in the pipeline'), undefined];
        if (err === null) c.resolve(value);
        else if (isNoScript(err)) c.script.eval(redis, c.keys, c.args).then(c.resolve, c.reject);
        else c.reject(err);
      }
    },
    (err: unknown) => {
      for (const c of calls) c.reject(err);
    },
  );
}
